package refs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/stm"
)

// Atom is Clojure's atom across processes: a reference changed on its own,
// outside transactions, each change one atomic compare-and-set on its
// backend (the driver's one-phase commit: one Lua script on Redis, one
// Multi on ZooKeeper), with no locks. Its versions, watches, validator and
// meta work as a Ref's. Atoms are not read inside a Dosync: Deref reads
// the newest value.
type Atom[T any] struct {
	r   *Ref[T]
	one backend.OnePhase
	// last is the newest version this handle knows, so that a swap from
	// an uncontended handle is one round trip: a stale one only fails the
	// compare-and-set, and the atom is read again.
	last atomic.Pointer[atomVersion]
}

type atomVersion struct {
	point clock.Point
	data  []byte
}

// AtomWatchFn is called after each change of an atom.
type AtomWatchFn[T any] func(key string, a *Atom[T], old, new T)

// ErrNoCAS: the backend cannot hold atoms (it has no one-step commit).
var ErrNoCAS = errors.New("refs: backend has no atomic compare-and-set (backend.OnePhase)")

// NewAtom returns a handle on the atom name, creating it with initial if
// the name holds nothing. An existing atom is joined, never reset; a name
// that holds another kind of reference is ErrType.
func NewAtom[T any](ctx context.Context, s *stm.STM, name string, initial T, opts ...Option) (*Atom[T], error) {
	r, err := create(ctx, runtimeOf(s), backend.KindAtom, name, initial, opts)
	if err != nil {
		return nil, err
	}
	one, ok := r.drv.(backend.OnePhase)
	if !ok {
		return nil, fmt.Errorf("refs: new atom %q on %s: %w", name, r.drv.ID(), ErrNoCAS)
	}
	return &Atom[T]{r: r, one: one}, nil
}

// Name returns the atom's name.
func (a *Atom[T]) Name() string { return a.r.name }

func (a *Atom[T]) String() string { return fmt.Sprintf("atom %q on %s", a.r.name, a.r.drv.ID()) }

// read reads the newest version (one round trip) and remembers it.
func (a *Atom[T]) read(ctx context.Context) (*atomVersion, error) {
	if err := a.r.s.Err(); err != nil {
		return nil, err
	}
	res, err := a.r.drv.Read(ctx, backend.ReadRequest{Current: true, Names: []string{a.r.name}})
	if err != nil {
		return nil, a.r.s.Note(fmt.Errorf("refs: read %s: %w", a, err))
	}
	it := res.Items[0]
	if !it.Found {
		return nil, fmt.Errorf("refs: read %s: %w", a, ErrNotFound)
	}
	if it.Kind != backend.KindAtom {
		return nil, fmt.Errorf("refs: read %s: %w: the name holds a %s", a, ErrType, it.Kind)
	}
	v := &atomVersion{point: it.Newest.Point, data: it.Newest.Value}
	a.remember(v)
	return v, nil
}

// remember keeps v if it is newer than what the handle knows.
func (a *Atom[T]) remember(v *atomVersion) {
	for {
		old := a.last.Load()
		if old != nil && old.point >= v.point {
			return
		}
		if a.last.CompareAndSwap(old, v) {
			return
		}
	}
}

// errChanged: the compare-and-set met a newer version (or certainly did
// not apply).
var errChanged = engine.ErrChanged

// cas sets the atom to data if its newest version is still at point
// (any point when blind): one one-phase commit. An unknown outcome is
// settled by aborting the commit's id: a tombstone if it did not apply.
func (a *Atom[T]) cas(ctx context.Context, point clock.Point, blind bool, data []byte) (clock.Point, error) {
	rp := point
	if blind {
		rp = ^clock.Point(0)
	}
	cp, err := a.r.s.CompareAndSet(ctx, a.r.drv, a.one, a.r.name, a.String(), rp, data)
	if err == nil {
		a.remember(&atomVersion{point: cp, data: data})
	}
	return cp, err
}

// Swap sets the atom to f of its value and returns the new value. f may
// run several times (each time the atom changed under it) and must be free
// of side effects; a validator rejecting the value ends the swap with
// ErrValidation and changes nothing.
func (a *Atom[T]) Swap(ctx context.Context, f func(T) T) (T, error) {
	var zero T
	if f == nil {
		return zero, fmt.Errorf("refs: swap %s: %w", a, stm.ErrNilFunc)
	}
	cur := a.last.Load()
	for attempt := 0; ; attempt++ {
		if cur == nil {
			var err error
			if cur, err = a.read(ctx); err != nil {
				return zero, err
			}
		}
		v, err := a.r.decode(cur.data, fmt.Sprintf("at point %d", cur.point))
		if err != nil {
			return zero, err
		}
		nv := f(v)
		data, err := a.check(nv)
		if err != nil {
			return zero, err
		}
		_, err = a.cas(ctx, cur.point, false, data)
		if err == nil {
			return nv, nil
		}
		if !errors.Is(err, errChanged) {
			return zero, err
		}
		cur = nil
		if attempt > 0 {
			if err := a.r.s.Backoff(ctx, attempt); err != nil {
				return zero, err
			}
		}
	}
}

// check validates and encodes a new value.
func (a *Atom[T]) check(v T) ([]byte, error) {
	a.r.mu.Lock()
	validator := a.r.validator
	a.r.mu.Unlock()
	if validator != nil {
		if err := validator(v); err != nil {
			return nil, fmt.Errorf("refs: %s: %w: %w", a, ErrValidation, err)
		}
	}
	data, err := a.r.encode(v)
	if err != nil {
		return nil, fmt.Errorf("refs: %s: %w", a, err)
	}
	return data, nil
}

// Reset sets the atom to v whatever it holds.
func (a *Atom[T]) Reset(ctx context.Context, v T) error {
	data, err := a.check(v)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		_, err := a.cas(ctx, 0, true, data)
		if !errors.Is(err, errChanged) {
			return err
		}
		if err := a.r.s.Backoff(ctx, attempt); err != nil {
			return err
		}
	}
}

// CompareAndSet sets the atom to new if it holds old, comparing encoded
// values, and reports whether it did.
func (a *Atom[T]) CompareAndSet(ctx context.Context, old, new T) (bool, error) {
	want, err := a.r.encode(old)
	if err != nil {
		return false, fmt.Errorf("refs: compare-and-set %s: %w", a, err)
	}
	data, err := a.check(new)
	if err != nil {
		return false, err
	}
	for attempt := 0; ; attempt++ {
		cur, err := a.read(ctx)
		if err != nil {
			return false, err
		}
		if !bytes.Equal(cur.data, want) {
			return false, nil
		}
		_, err = a.cas(ctx, cur.point, false, data)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, errChanged) {
			return false, err
		}
		if err := a.r.s.Backoff(ctx, attempt); err != nil {
			return false, err
		}
	}
}

// Deref returns the atom's newest value.
func (a *Atom[T]) Deref(ctx context.Context) (T, error) {
	cur, err := a.read(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	return a.r.decode(cur.data, fmt.Sprintf("at point %d", cur.point))
}

// History returns the kept versions, newest first.
func (a *Atom[T]) History(ctx context.Context) ([]Version[T], error) { return a.r.History(ctx) }

// SetValidator sets (nil: removes) the function every new value must pass.
func (a *Atom[T]) SetValidator(f func(T) error) { a.r.SetValidator(f) }

// AddWatch calls fn after each change of the atom, as Ref.AddWatch does.
func (a *Atom[T]) AddWatch(key string, fn AtomWatchFn[T], opts ...WatchOption) {
	a.r.AddWatch(key, func(k string, _ *Ref[T], old, new T) { fn(k, a, old, new) }, opts...)
}

// RemoveWatch removes the watch added under key.
func (a *Atom[T]) RemoveWatch(key string) { a.r.RemoveWatch(key) }

// Meta returns the atom's meta map.
func (a *Atom[T]) Meta(ctx context.Context) (map[string]any, error) { return a.r.Meta(ctx) }

// ResetMeta replaces the atom's meta map.
func (a *Atom[T]) ResetMeta(ctx context.Context, m map[string]any) error {
	return a.r.ResetMeta(ctx, m)
}

// AlterMeta sets the atom's meta map to f of it, atomically.
func (a *Atom[T]) AlterMeta(ctx context.Context, f func(map[string]any) map[string]any) (map[string]any, error) {
	return a.r.AlterMeta(ctx, f)
}
