package refs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/stm"
)

// pollEvery is how often a waiting Deref (of a promise or a delay) reads
// the reference again even without a change hint: hints may be late or
// lost (a dropped connection), and a waiter must still return.
const pollEvery = 500 * time.Millisecond

// cell is the machinery shared by promises and delays: a reference whose
// value is an envelope (always msgpack, holding the T encoded with the
// handle's codec), read whole and changed by compare-and-set at the point
// of the version read.
type cell[T any] struct {
	r   *Ref[T]
	one backend.OnePhase
}

func newCell[T any](ctx context.Context, s *engine.Runtime, kind backend.Kind, name string, initial any, view func(*Ref[T], []byte) (T, bool, error), opts []Option) (cell[T], *config, error) {
	r, c, err := handle[T](s, name, opts)
	if err != nil {
		return cell[T]{}, nil, err
	}
	r.kind = kind
	r.view = view
	data, err := msgpack.Marshal(initial)
	if err != nil {
		return cell[T]{}, nil, fmt.Errorf("refs: new %s %q: %w", kind, name, err)
	}
	if err := r.createStored(ctx, c, data); err != nil {
		return cell[T]{}, nil, err
	}
	one, ok := r.drv.(backend.OnePhase)
	if !ok {
		return cell[T]{}, nil, fmt.Errorf("refs: new %s %q on %s: %w", kind, name, r.drv.ID(), ErrNoCAS)
	}
	return cell[T]{r: r, one: one}, c, nil
}

func (c cell[T]) String() string {
	return fmt.Sprintf("%s %q on %s", c.r.kind, c.r.name, c.r.drv.ID())
}

// read reads the newest version and decodes its envelope into env.
func (c cell[T]) read(ctx context.Context, env any) (clock.Point, error) {
	if err := c.r.s.Err(); err != nil {
		return 0, err
	}
	res, err := c.r.drv.Read(ctx, backend.ReadRequest{Current: true, Names: []string{c.r.name}})
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, c.r.s.Note(fmt.Errorf("refs: read %s: %w", c, err))
	}
	it := res.Items[0]
	if !it.Found {
		return 0, fmt.Errorf("refs: read %s: %w", c, ErrNotFound)
	}
	if it.Kind != c.r.kind {
		return 0, fmt.Errorf("refs: read %s: %w: the name holds a %s", c, ErrType, it.Kind)
	}
	if err := msgpack.Unmarshal(it.Newest.Value, env); err != nil {
		return 0, fmt.Errorf("refs: read %s at point %d: %w: %w", c, it.Newest.Point, decodeError(Msgpack, it.Newest.Value, err), err)
	}
	return it.Newest.Point, nil
}

// cas replaces the envelope with env if the newest version is still at
// point: nil if it did, errChanged if another change came first.
func (c cell[T]) cas(ctx context.Context, point clock.Point, env any) (clock.Point, error) {
	data, err := msgpack.Marshal(env)
	if err != nil {
		return 0, fmt.Errorf("refs: %s: %w: %w", c, ErrEncode, err)
	}
	if limit := c.r.maxValueSize(); len(data) > limit {
		return 0, fmt.Errorf("refs: %s: %w: %d bytes encoded, the limit is %d", c, ErrTooLarge, len(data), limit)
	}
	return c.r.s.CompareAndSet(ctx, c.r.drv, c.one, c.r.name, c.String(), point, data)
}

// waiter wakes a waiting Deref on a change hint, on a poll, or at a
// deadline; ctx ending ends the wait.
type waiter struct {
	sub    backend.Subscription
	r      refInfo // the ref of the subscription (for logs)
	failed bool    // a subscription failed (logged at Warn once)
}

// wait blocks until a hint, pollEvery, or d (if shorter and positive),
// subscribing on first use. It returns ctx.Err() when ctx ends.
// A closed STM ends the wait with stm.ErrClosed.
func (w *waiter) wait(ctx context.Context, r refInfo, d time.Duration) error {
	if w.sub == nil {
		// A failed subscription leaves polling alone to find the change.
		sub, err := r.backend().Subscribe(ctx, r.refName())
		if err == nil {
			w.sub, w.r = sub, r
			subscribeWarned.Delete(subscribeKey(r))
			return ctx.Err() // read again: the change may predate the subscription
		}
		if ctx.Err() == nil {
			w.subscribeFailed(r, err)
		}
	}
	if d <= 0 || d > pollEvery {
		d = pollEvery
	}
	t := time.NewTimer(d)
	defer t.Stop()
	var hints <-chan struct{}
	if w.sub != nil {
		hints = w.sub.C()
	}
	select {
	case <-hints:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.stm().Done():
		return stm.ErrClosed
	}
	return nil
}

// refInfo is what a waiter needs of a handle, whatever its type.
type refInfo interface {
	backend() backend.Driver
	refName() string
	stm() *engine.Runtime
}

func (r *Ref[T]) backend() backend.Driver { return r.drv }
func (r *Ref[T]) refName() string         { return r.name }
func (r *Ref[T]) stm() *engine.Runtime    { return r.s }

// subscribeWarned holds the refs (subscribeKey) whose failed subscription
// was logged at Warn, until one succeeds: a cause that persists (an ACL
// without SUBSCRIBE) is one Warn per ref and process, not one per wait.
var subscribeWarned sync.Map

func subscribeKey(r refInfo) string { return r.backend().ID() + "\x00" + r.refName() }

// subscribeFailed logs a failed subscription: at Warn the first for the
// ref in this process until one succeeds (changes are found by polls
// alone, up to pollEvery late), at Debug the repeats and a closed
// backend's.
func (w *waiter) subscribeFailed(r refInfo, err error) {
	log := r.stm().Logger()
	const msg = "epochal: a wait for a ref cannot subscribe to its changes; it polls instead"
	if w.failed || errors.Is(err, backend.ErrClosed) {
		log.Debug(msg, "ref", r.refName(), "err", err)
		return
	}
	w.failed = true
	if _, warned := subscribeWarned.LoadOrStore(subscribeKey(r), true); warned {
		log.Debug(msg, "ref", r.refName(), "err", err)
		return
	}
	log.Warn(msg, "ref", r.refName(), "err", err)
}

func (w *waiter) close() {
	if w.sub != nil {
		if err := w.sub.Close(); err != nil {
			// Nothing is left behind for long: a subscription's mark
			// expires on its own (see the backends).
			w.r.stm().Logger().Debug("epochal: closing a wait's subscription failed", "ref", w.r.refName(), "err", err)
		}
	}
}

// Promise is Clojure's promise across processes: a reference delivered at
// most once, whose Deref blocks until it is. It is stored as a reference
// of kind promise holding, at point 0, an undelivered mark; a delivery is
// one compare-and-set against point 0, so of any number of concurrent
// deliveries in any processes exactly one wins.
type Promise[T any] struct {
	c cell[T]
	// got is the delivered value's encoding once this handle has seen
	// it: a delivery never changes.
	got atomic.Pointer[[]byte]
}

// promiseEnv is a promise's stored value.
type promiseEnv struct {
	Delivered bool   `msgpack:"d"`
	Value     []byte `msgpack:"v"` // the value, in the handle's codec
}

// PromiseWatchFn is called when a promise is delivered.
type PromiseWatchFn[T any] func(key string, p *Promise[T], old, new T)

// promiseView presents a stored promise to watches: only a delivered one
// holds a T.
func promiseView[T any](r *Ref[T], data []byte) (T, bool, error) {
	var zero T
	var env promiseEnv
	if err := msgpack.Unmarshal(data, &env); err != nil {
		return zero, false, fmt.Errorf("refs: decode promise %q: %w: %w", r.name, decodeError(Msgpack, data, err), err)
	}
	if !env.Delivered {
		return zero, false, nil
	}
	v, err := r.decode(env.Value, "as delivered")
	return v, err == nil, err
}

// NewPromise returns a handle on the promise name, creating it undelivered
// if the name holds nothing. A name that holds another kind of reference
// is ErrType. The options On, WithCodec, WithValidator (checked on
// Deliver) and the history bounds apply.
func NewPromise[T any](ctx context.Context, s *stm.STM, name string, opts ...Option) (*Promise[T], error) {
	c, _, err := newCell[T](ctx, runtimeOf(s), backend.KindPromise, name, promiseEnv{}, promiseView[T], opts)
	if err != nil {
		return nil, err
	}
	return &Promise[T]{c: c}, nil
}

// Name returns the promise's name.
func (p *Promise[T]) Name() string { return p.c.r.name }

func (p *Promise[T]) String() string { return p.c.String() }

// Deliver delivers v if the promise is not delivered yet, and reports
// whether this call was the delivery that won; a promise already
// delivered is left as it is (false, nil). A validator rejecting v is
// ErrValidation.
func (p *Promise[T]) Deliver(ctx context.Context, v T) (bool, error) {
	p.c.r.mu.Lock()
	validator := p.c.r.validator
	p.c.r.mu.Unlock()
	if validator != nil {
		if err := validator(v); err != nil {
			return false, fmt.Errorf("refs: deliver %s: %w: %w", p, ErrValidation, err)
		}
	}
	data, err := p.c.r.encode(v)
	if err != nil {
		return false, fmt.Errorf("refs: deliver %s: %w", p, err)
	}
	if p.got.Load() != nil {
		return false, nil
	}
	for attempt := 0; ; attempt++ {
		_, err := p.c.cas(ctx, 0, promiseEnv{Delivered: true, Value: data})
		if err == nil {
			p.got.Store(&data)
			return true, nil
		}
		if !errors.Is(err, errChanged) {
			return false, err
		}
		// Either another delivery won, or this one certainly did not
		// apply (an unknown outcome settled by a tombstone): look.
		var env promiseEnv
		if _, err := p.c.read(ctx, &env); err != nil {
			return false, err
		}
		if env.Delivered {
			p.got.Store(&env.Value)
			return false, nil
		}
		if err := p.c.r.s.Backoff(ctx, attempt); err != nil {
			return false, err
		}
	}
}

// Realized reports whether the promise has been delivered.
func (p *Promise[T]) Realized(ctx context.Context) (bool, error) {
	if p.got.Load() != nil {
		return true, nil
	}
	var env promiseEnv
	if _, err := p.c.read(ctx, &env); err != nil {
		return false, err
	}
	if env.Delivered {
		p.got.Store(&env.Value)
	}
	return env.Delivered, nil
}

// Deref returns the delivered value, waiting until the promise is
// delivered or ctx ends (ctx.Err()). It wakes on change hints and also
// reads the promise every half second, so a lost hint only delays it. A
// value delivered by a handle of another type is ErrType.
func (p *Promise[T]) Deref(ctx context.Context) (T, error) {
	var w waiter
	defer w.close()
	for {
		if got := p.got.Load(); got != nil {
			return p.c.r.decode(*got, "as delivered")
		}
		var env promiseEnv
		if _, err := p.c.read(ctx, &env); err != nil {
			if !waitThrough(ctx, p.c.r.s, err) {
				var zero T
				return zero, err
			}
			env = promiseEnv{} // the backend is away: wait and read again
		}
		if env.Delivered {
			p.got.Store(&env.Value)
			continue
		}
		if err := w.wait(ctx, p.c.r, 0); err != nil {
			var zero T
			return zero, err
		}
	}
}

// AddWatch calls fn once when the promise is delivered (by any process),
// with T's zero value as old (an undelivered promise holds no T) and the
// delivered value as new. Watches work as Ref.AddWatch's: they see
// deliveries committed after AddWatch returns, so a promise delivered
// before it was watched calls nothing; callbacks run on this handle's own
// goroutine, never blocking a delivery.
func (p *Promise[T]) AddWatch(key string, fn PromiseWatchFn[T], opts ...WatchOption) {
	p.c.r.AddWatch(key, func(k string, _ *Ref[T], old, new T) { fn(k, p, old, new) }, opts...)
}

// RemoveWatch removes the watch added under key, as Ref.RemoveWatch does.
func (p *Promise[T]) RemoveWatch(key string) { p.c.r.RemoveWatch(key) }

// Meta returns the promise's meta map (nil if none was set): stored beside
// the value, shared by every process, changed atomically.
func (p *Promise[T]) Meta(ctx context.Context) (map[string]any, error) { return p.c.r.Meta(ctx) }

// ResetMeta replaces the promise's meta map.
func (p *Promise[T]) ResetMeta(ctx context.Context, m map[string]any) error {
	return p.c.r.ResetMeta(ctx, m)
}

// AlterMeta sets the promise's meta map to f of it, atomically (f may run
// several times under contention), and returns the new meta.
func (p *Promise[T]) AlterMeta(ctx context.Context, f func(map[string]any) map[string]any) (map[string]any, error) {
	return p.c.r.AlterMeta(ctx, f)
}

// waitThrough reports whether a waiter outlasts a read error: the backend
// briefly away (a restart, a lost connection). ctx's end, a closed STM and
// what the reference holds (ErrType, ErrCorrupt, ErrTooLarge, ErrNotFound)
// end the wait.
func waitThrough(ctx context.Context, s *engine.Runtime, err error) bool {
	return ctx.Err() == nil && s.Err() == nil && !errors.Is(err, stm.ErrClosed) && !errors.Is(err, backend.ErrDataLost) &&
		!errors.Is(err, ErrType) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) &&
		!errors.Is(err, ErrNotFound) && !errors.Is(err, backend.ErrNotFound)
}
