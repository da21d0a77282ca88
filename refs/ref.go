package refs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// Version is one kept value of a ref.
type Version[T any] struct {
	Point clock.Point // commit point; 0 for the initial value
	Value T
	Txn   string    // the writing transaction's id ("" for the initial value)
	Time  time.Time // commit time as the committer's clock saw it
}

// Ref is a handle on a transactional reference holding a T. Handles are
// cheap; validators and watches belong to the handle (functions are not
// shared between processes), the value to everyone.
type Ref[T any] struct {
	s     *engine.Runtime
	drv   backend.Driver
	name  string
	kind  backend.Kind // KindRef, or the kind of the Atom, Promise or Delay it serves
	key   engine.Key
	codec Codec
	// ints: whether T is an int in the default codec, encoded and
	// decoded by hand (fastint.go).
	ints intKind

	mu        sync.Mutex
	validator func(T) error
	w         *watcher[T]

	// view, when set, is how watches see a stored value: a promise or a
	// delay stores an envelope, of which only its final state may hold a
	// T (ok), so versions a watcher missed before it hide no change a
	// watch would see. Without it a stored value is a T in the handle's
	// codec.
	view func(r *Ref[T], data []byte) (v T, ok bool, err error)
}

// New returns a handle on the ref name, creating it with initial if it does
// not exist. An existing ref is joined, never reset; a name that holds
// another kind of reference is ErrType.
func New[T any](ctx context.Context, s *stm.STM, name string, initial T, opts ...Option) (*Ref[T], error) {
	return create(ctx, runtimeOf(s), backend.KindRef, name, initial, opts)
}

// create makes a handle on a reference of kind, creating it with initial
// if the name holds nothing.
func create[T any](ctx context.Context, s *engine.Runtime, kind backend.Kind, name string, initial T, opts []Option) (*Ref[T], error) {
	r, c, err := handle[T](s, name, opts)
	if err != nil {
		return nil, err
	}
	r.kind = kind
	if r.validator != nil {
		if verr := r.validator(initial); verr != nil {
			// Only a value this call would store must be valid: joining
			// a ref that exists never looks at initial.
			exists, err := r.exists(ctx)
			if err != nil {
				return nil, fmt.Errorf("refs: new %q: %w", name, err)
			}
			if !exists {
				return nil, fmt.Errorf("refs: new %q: %w: %w", name, ErrValidation, verr)
			}
		}
	}
	data, err := r.encode(initial)
	if err != nil {
		return nil, fmt.Errorf("refs: new %q: %w", name, err)
	}
	if err := r.createStored(ctx, c, data); err != nil {
		return nil, err
	}
	return r, nil
}

// exists reports whether the name holds a reference (of any kind).
func (r *Ref[T]) exists(ctx context.Context) (bool, error) {
	res, err := r.drv.Read(ctx, backend.ReadRequest{Current: true, Names: []string{r.name}})
	if err != nil {
		return false, err
	}
	return res.Items[0].Found, nil
}

// createStored creates the handle's reference, of the handle's kind, with
// data (already encoded) as its initial value, if the name holds nothing;
// a name holding another kind is ErrType.
func (r *Ref[T]) createStored(ctx context.Context, c *config, data []byte) error {
	s, name, kind := r.s, r.name, r.kind
	if c.retryErrors && kind != backend.KindDelay {
		return fmt.Errorf("%w: RetryErrors is for delays, not a %s", ErrOption, kind)
	}
	min, max := s.HistoryBounds()
	if c.minHistory != nil {
		min = *c.minHistory
	}
	if c.maxHistory != nil {
		max = *c.maxHistory
	}
	if err := history.Check(min, max); err != nil {
		return fmt.Errorf("refs: new %q: %w", name, err)
	}
	res, err := r.drv.Create(ctx, backend.CreateRequest{Name: name, Kind: kind, Value: data, MinHistory: min, MaxHistory: max})
	if err != nil {
		return s.Note(fmt.Errorf("refs: new %q: %w", name, err))
	}
	if res.Kind != kind {
		return fmt.Errorf("refs: new %s %q: %w: the name holds a %s", kind, name, ErrType, res.Kind)
	}
	return nil
}

// handle checks the arguments shared by every reference type's constructor
// and builds the handle.
func handle[T any](s *engine.Runtime, name string, opts []Option) (*Ref[T], *config, error) {
	if s == nil {
		return nil, nil, fmt.Errorf("%w: nil STM", ErrOption)
	}
	if err := s.Err(); err != nil {
		return nil, nil, err
	}
	if err := CheckName(name); err != nil {
		return nil, nil, err
	}
	c := &config{codec: Msgpack}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, nil, err
		}
	}
	v, err := validatorFor[T](c)
	if err != nil {
		return nil, nil, err
	}
	drv := s.Coordinator()
	if c.on != nil {
		drv = c.on
		s.Register(drv)
	}
	r := &Ref[T]{s: s, drv: drv, name: name, kind: backend.KindRef, key: engine.Key{Drv: drv, Name: name}, codec: c.codec, ints: intCodec[T](c.codec), validator: v}
	return r, c, nil
}

// Prefetchable is a reference whose value a transaction can read ahead:
// every reference type of this package.
type Prefetchable interface {
	txKey() engine.Key
}

func (r *Ref[T]) txKey() engine.Key { return r.key }

// Prefetch reads the given references in tx ahead of their Get, in one
// round trip per backend (together with the read point when tx has not
// drawn it yet). On a server backend a transfer that prefetches both
// accounts costs 2 round trips instead of 3. Purely an optimisation.
func Prefetch(tx *txn.Tx, rs ...Prefetchable) {
	if tx == nil {
		panic(fmt.Errorf("refs: prefetch with a nil Tx: %w", txn.ErrOutsideTx))
	}
	keys := make([]engine.Key, len(rs))
	for i, r := range rs {
		keys[i] = r.txKey()
	}
	engine.Preload(tx, keys...)
}

// Name returns the ref's name.
func (r *Ref[T]) Name() string { return r.name }

// Backend returns the backend the ref lives in.
func (r *Ref[T]) Backend() backend.Driver { return r.drv }

func (r *Ref[T]) String() string { return fmt.Sprintf("ref %q on %s", r.name, r.drv.ID()) }

func (r *Ref[T]) encode(v T) ([]byte, error) {
	var data []byte
	if r.ints != noInts {
		data = appendKind(make([]byte, 0, 9), r.ints, intFrom(v))
	} else {
		var err error
		if data, err = r.codec.Marshal(v); err != nil {
			return nil, fmt.Errorf("%w %T: %w", ErrEncode, v, err)
		}
	}
	if limit := r.maxValueSize(); len(data) > limit {
		return nil, fmt.Errorf("%w: %d bytes encoded, the limit is %d", ErrTooLarge, len(data), limit)
	}
	return data, nil
}

// maxValueSize is the STM's limit, or the backend's if that is lower.
func (r *Ref[T]) maxValueSize() int {
	limit := r.s.MaxValueSize()
	if l, ok := r.drv.(backend.ValueLimit); ok && l.MaxValueSize() < limit {
		limit = l.MaxValueSize()
	}
	return limit
}

// decode decodes a stored value. A value larger than the reader's limit
// (maxValueSize) is refused before it is decoded: ErrTooLarge. Bytes that
// do not decode are ErrCorrupt or ErrType (decodeError).
func (r *Ref[T]) decode(data []byte, at string) (T, error) {
	if limit := r.maxValueSize(); len(data) > limit {
		var zero T
		return zero, r.tooLarge(at, len(data), limit)
	}
	if r.ints != noInts {
		if n, ok := readInt(data); ok {
			return intTo[T](n), nil
		}
	}
	var v T
	if err := r.codec.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("refs: decode %q %s as %T: %w: %w", r.name, at, v, decodeError(r.codec, data, err), err)
	}
	return v, nil
}

// decodeVersion decodes one version of a history, which the driver may
// have left out for its size (Version.Omitted).
func (r *Ref[T]) decodeVersion(v backend.Version) (T, error) {
	at := fmt.Sprintf("at point %d", v.Point)
	if v.Omitted > 0 {
		var zero T
		return zero, r.tooLarge(at, v.Omitted, r.maxValueSize())
	}
	return r.decode(v.Value, at)
}

func (r *Ref[T]) tooLarge(at string, size, limit int) error {
	return fmt.Errorf("refs: read %q %s: %w: the stored value is %d bytes, more than the limit of %d (stm.WithMaxValueSize, or the backend's): refused unread",
		r.name, at, ErrTooLarge, size, limit)
}

// live refuses a nil Tx: it stands for no transaction at all, so using it
// is what using a Tx outside its Dosync is (a panic with ErrOutsideTx,
// as every Tx method panics when misused), not a nil-pointer dereference.
func (r *Ref[T]) live(tx *txn.Tx, verb string) {
	if tx == nil {
		panic(fmt.Errorf("refs: %s %q with a nil Tx: %w", verb, r.name, txn.ErrOutsideTx))
	}
}

// validate returns the commit-time check of a value written through this
// handle, or nil.
func (r *Ref[T]) validate() func([]byte) error {
	r.mu.Lock()
	f := r.validator
	r.mu.Unlock()
	if f == nil {
		return nil
	}
	return func(data []byte) error {
		v, err := r.decode(data, "before commit")
		if err != nil {
			return err
		}
		if err := f(v); err != nil {
			return fmt.Errorf("refs: %q: %w: %w", r.name, ErrValidation, err)
		}
		return nil
	}
}

// SetValidator replaces the handle's validator (nil removes it). It applies
// to values committed from now on.
func (r *Ref[T]) SetValidator(f func(T) error) {
	r.mu.Lock()
	r.validator = f
	r.mu.Unlock()
}

// Get returns the ref's value in tx: the transaction's own write, or the
// newest value committed at or before its read point. A value that does
// not decode ends the Dosync with ErrCorrupt or ErrType, one larger than
// the STM's MaxValueSize with ErrTooLarge; nothing is written. A nil tx
// panics with an error wrapping txn.ErrOutsideTx, as Set, Alter, Commute
// and Ensure do.
func (r *Ref[T]) Get(tx *txn.Tx) T {
	r.live(tx, "get")
	v, err := r.decode(engine.Read(tx, r.key), "in transaction")
	if err != nil {
		engine.Abort(tx, err)
	}
	return v
}

// Set sets the ref's value in tx (ref-set).
func (r *Ref[T]) Set(tx *txn.Tx, v T) {
	r.live(tx, "set")
	data, err := r.encode(v)
	if err != nil {
		engine.Abort(tx, fmt.Errorf("refs: set %q: %w", r.name, err))
	}
	engine.Write(tx, r.key, data, r.validate())
}

// Alter sets the ref to f of its value in tx and returns the new value.
func (r *Ref[T]) Alter(tx *txn.Tx, f func(T) T) T {
	r.live(tx, "alter")
	// The ref's local turn before its read: another transaction of this
	// process writing it commits first, and this one reads its value.
	engine.Claim(tx, r.key)
	v := f(r.Get(tx))
	r.Set(tx, v)
	return v
}

// Commute applies f to the ref's value in tx and returns the result. At
// commit f runs again on the newest committed value, so a commute never
// conflicts with another; f must be commutative and free of side effects.
func (r *Ref[T]) Commute(tx *txn.Tx, f func(T) T) T {
	r.live(tx, "commute")
	out := engine.Commute(tx, r.key, func(old []byte) ([]byte, error) {
		v, err := r.decode(old, "for commute")
		if err != nil {
			return nil, err
		}
		data, err := r.encode(f(v))
		if err != nil {
			return nil, fmt.Errorf("refs: commute %q: %w", r.name, err)
		}
		return data, nil
	}, r.validate())
	v, err := r.decode(out, "after commute")
	if err != nil {
		engine.Abort(tx, err)
	}
	return v
}

// Ensure protects the ref from other transactions' writes until tx
// commits, ruling out write skew, and returns its value.
func (r *Ref[T]) Ensure(tx *txn.Tx) T {
	r.live(tx, "ensure")
	v, err := r.decode(engine.Ensure(tx, r.key), "in transaction")
	if err != nil {
		engine.Abort(tx, err)
	}
	return v
}

// Deref returns the newest committed value. It never joins a transaction
// ctx carries: inside a transaction use Get.
func (r *Ref[T]) Deref(ctx context.Context) (T, error) {
	var v T
	err := r.s.Isolated(ctx, func(tx *txn.Tx) error {
		v = r.Get(tx)
		return nil
	})
	return v, err
}

// History returns the kept versions, newest first (at least the newest).
//
// A version that cannot be read (ErrCorrupt, ErrType, or ErrTooLarge for
// a value larger than the STM's MaxValueSize, which is not decoded) does
// not hide the others: History then returns every version that can be
// read, with a non-nil error that names the point of each one left out
// (errors.Join of one error per version). A caller that only wants a
// complete history checks the error alone.
func (r *Ref[T]) History(ctx context.Context) ([]Version[T], error) {
	vr, err := r.versions(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Version[T], 0, len(vr.Versions))
	var bad []error
	for _, v := range vr.Versions {
		val, err := r.decodeVersion(v)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		out = append(out, Version[T]{Point: v.Point, Value: val, Txn: v.Txn, Time: v.Time})
	}
	return out, errors.Join(bad...)
}

// At returns the value as of point p: the newest version at or before p.
// It is ErrHistoryTrimmed when the kept history no longer reaches p, and an
// error when p is newer than the current point.
func (r *Ref[T]) At(ctx context.Context, p clock.Point) (T, error) {
	var zero T
	now, err := r.s.ReadPoint(ctx)
	if err != nil {
		return zero, err
	}
	if p > now {
		return zero, fmt.Errorf("refs: %q at %d: that point is after the current point %d", r.name, p, now)
	}
	vr, err := r.versions(ctx)
	if err != nil {
		return zero, err
	}
	v, res := history.Pick(vr.Versions, p)
	if res == history.Fault {
		return zero, fmt.Errorf("refs: %q at %d: %w (oldest kept: %d)", r.name, p, ErrHistoryTrimmed, vr.Versions[len(vr.Versions)-1].Point)
	}
	return r.decodeVersion(v)
}

// versions reads the ref's kept history by the read rule (engine.View): a
// committed transaction whose intent is still on it is rolled forward
// first, so the newest committed value is always there.
func (r *Ref[T]) versions(ctx context.Context) (vr backend.VersionsResult, err error) {
	if err := r.s.Err(); err != nil {
		return backend.VersionsResult{}, err
	}
	defer func() { err = r.s.Note(err) }()
	view, err := r.s.Env().Resolver.View(ctx, r.drv, r.name, engine.ViewOptions{MaxValue: r.maxValueSize(), Kind: r.kind})
	if err != nil {
		return view.VersionsResult, fmt.Errorf("refs: history of %q: %w", r.name, err)
	}
	if vr := view.VersionsResult; vr.Kind != r.kind && vr.Kind != "" {
		return vr, fmt.Errorf("refs: history of %q: %w: it holds a %s", r.name, ErrType, vr.Kind)
	}
	return view.VersionsResult, nil
}

// runtimeOf is s's engine, nil for a nil s (which the constructors refuse
// with ErrOption).
func runtimeOf(s *stm.STM) *engine.Runtime {
	if s == nil {
		return nil
	}
	return engine.Of(s)
}
