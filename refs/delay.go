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
	"github.com/epochal/epochal/internal/detach"
	"github.com/epochal/epochal/stm"
)

// ErrDelayFailed: a delay's body returned an error, which was delivered
// instead of a value. The error wraps one carrying the body's message (the
// body's own error, in the process that ran it).
var ErrDelayFailed = errors.New("refs: delay body failed")

// Delay is Clojure's delay across processes: a value computed by a body on
// the first Deref in any process and then kept for every caller. One
// caller claims the delay (a compare-and-set to "running" with a lease on
// the STM's wall clock, renewed while the body runs) and runs the body;
// the others wait, and take the claim over if its lease runs out (the
// runner died). The body may therefore run more than once if a runner
// dies or loses its claim, but exactly one result is delivered.
type Delay[T any] struct {
	c     cell[T]
	body  func(context.Context) (T, error)
	retry bool
	// done is the delivered state once this handle has seen it.
	done atomic.Pointer[delayEnv]
}

// States of a delay.
const (
	delayPending uint8 = iota
	delayRunning
	delayDone
)

// delayEnv is a delay's stored value.
type delayEnv struct {
	State      uint8  `msgpack:"s"`
	Owner      string `msgpack:"o"` // the claim's id while running
	LeaseUntil int64  `msgpack:"l"` // unix ms: the claim lapses after it
	Value      []byte `msgpack:"v"` // done: the value, in the handle's codec
	Err        string `msgpack:"e"` // done: the body's error message, if it failed
}

// DelayWatchFn is called when a delay is done with a value.
type DelayWatchFn[T any] func(key string, d *Delay[T], old, new T)

// delayView presents a stored delay to watches: only one done with a value
// holds a T (a delivered error does not).
func delayView[T any](r *Ref[T], data []byte) (T, bool, error) {
	var zero T
	var env delayEnv
	if err := msgpack.Unmarshal(data, &env); err != nil {
		return zero, false, fmt.Errorf("refs: decode delay %q: %w: %w", r.name, decodeError(Msgpack, data, err), err)
	}
	if env.State != delayDone || env.Err != "" {
		return zero, false, nil
	}
	v, err := r.decode(env.Value, "as delivered")
	return v, err == nil, err
}

// NewDelay returns a handle on the delay name, creating it (not yet run)
// if the name holds nothing, with body as this handle's way of computing
// the value. A name that holds another kind of reference is ErrType. With
// RetryErrors a body error is returned to the caller that ran it and the
// delay stays unrealized; otherwise it is delivered to every caller.
func NewDelay[T any](ctx context.Context, s *stm.STM, name string, body func(context.Context) (T, error), opts ...Option) (*Delay[T], error) {
	if body == nil {
		return nil, fmt.Errorf("refs: new delay %q: %w (nil body)", name, stm.ErrNilFunc)
	}
	c, cfg, err := newCell[T](ctx, runtimeOf(s), backend.KindDelay, name, delayEnv{}, delayView[T], opts)
	if err != nil {
		return nil, err
	}
	return &Delay[T]{c: c, body: body, retry: cfg.retryErrors}, nil
}

// Name returns the delay's name.
func (d *Delay[T]) Name() string { return d.c.r.name }

func (d *Delay[T]) String() string { return d.c.String() }

// Realized reports whether the delay's result (a value or a delivered
// error) is there.
func (d *Delay[T]) Realized(ctx context.Context) (bool, error) {
	if d.done.Load() != nil {
		return true, nil
	}
	var env delayEnv
	if _, err := d.c.read(ctx, &env); err != nil {
		return false, err
	}
	return env.State == delayDone, nil
}

// result turns a delivered state into Deref's answer.
func (d *Delay[T]) result(env *delayEnv) (T, error) {
	if env.Err != "" {
		var zero T
		return zero, fmt.Errorf("refs: %s: %w: %w", d, ErrDelayFailed, errors.New(env.Err))
	}
	return d.c.r.decode(env.Value, "as delivered")
}

// Deref returns the delay's value, running the body if no process has
// yet (or its runner's lease ran out), and otherwise waiting for the
// runner, until ctx ends (ctx.Err()). A delivered body error is
// ErrDelayFailed.
func (d *Delay[T]) Deref(ctx context.Context) (T, error) {
	var zero T
	var w waiter
	defer w.close()
	env := d.c.r.s.Env()
	for attempt := 0; ; {
		if st := d.done.Load(); st != nil {
			return d.result(st)
		}
		var st delayEnv
		point, err := d.c.read(ctx, &st)
		if err != nil {
			if !waitThrough(ctx, d.c.r.s, err) {
				return zero, err
			}
			// The backend is away: wait (hints, polls) and read again.
			if err := w.wait(ctx, d.c.r, 0); err != nil {
				return zero, err
			}
			continue
		}
		now := env.Wall.Now()
		left := time.UnixMilli(st.LeaseUntil).Sub(now)
		switch {
		case st.State == delayDone:
			d.done.Store(&st)
			continue
		case st.State == delayPending || left < 0:
			// Claim it.
			owner := env.NewID()
			claim := delayEnv{State: delayRunning, Owner: owner, LeaseUntil: now.Add(env.Lease).UnixMilli()}
			cp, err := d.c.cas(ctx, point, claim)
			if errors.Is(err, errChanged) {
				attempt++
				if err := d.c.r.s.Backoff(ctx, attempt); err != nil {
					return zero, err
				}
				continue
			}
			if err != nil {
				return zero, err
			}
			v, err, lost := d.run(ctx, cp, owner)
			if !lost {
				return v, err
			}
			// Another caller took the claim over: wait for its result.
			continue
		}
		if err := w.wait(ctx, d.c.r, left+10*time.Millisecond); err != nil {
			return zero, err
		}
	}
}

// claim is a running claim: the point of its newest version, renewed
// while the body runs.
type claim struct {
	mu    sync.Mutex
	point clock.Point
	lost  bool
}

// run runs the body under the claim owner made at point, renewing the
// lease, and stores the result. lost means the claim was taken over (or
// could not be kept) and the result was not stored.
func (d *Delay[T]) run(ctx context.Context, point clock.Point, owner string) (v T, err error, lost bool) {
	env := d.c.r.s.Env()
	cl := &claim{point: point}
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.renew(bctx, cl, owner, stop, cancel)
	}()
	finish := func() (clock.Point, bool) {
		close(stop)
		wg.Wait()
		cl.mu.Lock()
		defer cl.mu.Unlock()
		return cl.point, cl.lost
	}
	// Releasing the claim, and storing the result, must not depend on
	// the caller still waiting, nor hold it past its ctx: they go on in
	// the background when the caller's ctx ends (see detach).
	limit := max(env.Lease, time.Second)
	release := func(p clock.Point) {
		detach.Run(ctx, limit, func(ctx context.Context) {
			if _, err := d.c.cas(ctx, p, delayEnv{}); err != nil {
				d.releaseFailed(err)
			}
		})
	}
	panicked := true
	defer func() {
		if panicked { // release the claim for another caller, then panic on
			p, lost := finish()
			if !lost {
				release(p)
			}
		}
	}()
	v, err = d.body(bctx)
	panicked = false
	p, lost := finish()
	if lost {
		return v, err, true
	}
	var out delayEnv
	switch {
	case err != nil && (d.retry || ctx.Err() != nil):
		// Not delivered: release the claim so the next caller runs the
		// body again (a caller giving up does not deliver its ctx error).
		release(p)
		if ctx.Err() != nil {
			return v, ctx.Err(), false
		}
		return v, fmt.Errorf("refs: %s: %w", d, err), false
	case err != nil:
		msg := err.Error()
		if msg == "" {
			msg = "error with an empty message"
		}
		out = delayEnv{State: delayDone, Err: msg}
	default:
		data, eerr := d.c.r.encode(v)
		if eerr != nil {
			release(p)
			return v, fmt.Errorf("refs: %s: %w", d, eerr), false
		}
		out = delayEnv{State: delayDone, Value: data}
	}
	var serr error
	taken := false // the claim was taken over before the result was stored
	// If the caller gives up before the result is stored, whoever of it
	// and the store comes last logs what the caller no longer hears of.
	var late sync.Mutex
	gone, stored := false, false
	lateReport := func() {
		switch {
		case serr != nil:
			d.c.r.s.Logger().Warn("epochal: a delay could not store its body's result after its caller gave up; its claim lapses and another caller runs the body again", "ref", d.c.r.name, "err", serr)
		case taken:
			d.c.r.s.Logger().Debug("epochal: a delay's claim was taken over before its result was stored, after its caller gave up", "ref", d.c.r.name)
		}
	}
	if !detach.Run(ctx, limit, func(sctx context.Context) {
		defer func() {
			late.Lock()
			defer late.Unlock()
			stored = true
			if gone {
				lateReport()
			}
		}()
		for {
			_, cerr := d.c.cas(sctx, p, out)
			if cerr == nil {
				d.done.Store(&out)
				return
			}
			if !errors.Is(cerr, errChanged) {
				serr = cerr
				return
			}
			var ok bool
			if p, ok = d.stillOwned(sctx, owner); !ok {
				taken = true
				return
			}
		}
	}) {
		late.Lock()
		gone = true
		if stored { // it has just finished: serr and taken are written
			lateReport()
		}
		late.Unlock()
		var zero T
		return zero, fmt.Errorf("refs: %s: %w (the body's result is being stored in the background)", d, ctx.Err()), false
	}
	switch {
	case serr != nil:
		var zero T
		return zero, serr, false
	case taken:
		return v, err, true
	}
	if err != nil {
		return v, fmt.Errorf("refs: %s: %w: %w", d, ErrDelayFailed, err), false
	}
	return v, nil, false
}

// renew extends the claim's lease every third of a lease until stop is
// closed. When the claim is taken over, or cannot be renewed before it
// lapses, it marks the claim lost and cancels the body.
func (d *Delay[T]) renew(ctx context.Context, cl *claim, owner string, stop <-chan struct{}, cancel context.CancelFunc) {
	env := d.c.r.s.Env()
	every := max(env.Lease/3, time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	until := env.Wall.Now().Add(env.Lease)
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-d.c.r.s.Done():
			// This process's STM closed: it can no longer hold the claim.
			cl.mu.Lock()
			cl.lost = true
			cl.mu.Unlock()
			cancel()
			return
		case <-t.C:
		}
		cl.mu.Lock()
		if cl.lost {
			cl.mu.Unlock()
			return
		}
		now := env.Wall.Now()
		next := now.Add(env.Lease)
		cp, err := d.c.cas(ctx, cl.point, delayEnv{State: delayRunning, Owner: owner, LeaseUntil: next.UnixMilli()})
		lost := false
		switch {
		case err == nil:
			cl.point, until = cp, next
		case errors.Is(err, errChanged):
			// Taken over, or this renewal certainly did not apply.
			if p, ok := d.stillOwned(ctx, owner); ok {
				cl.point = p
				break
			}
			lost = true
			if ctx.Err() == nil { // (with ctx ended, the read could not tell)
				d.c.r.s.Logger().Warn("epochal: a delay's claim was taken over while its body ran (its lease ran out); the body is canceled", "ref", d.c.r.name)
			}
		case errors.Is(err, stm.ErrClosed):
			lost = true // this process can no longer hold the claim
		case !now.Before(until):
			lost = true
			if ctx.Err() == nil {
				d.c.r.s.Logger().Warn("epochal: a delay's claim could not be renewed before its lease ran out; the body is canceled", "ref", d.c.r.name, "err", err)
			}
		case ctx.Err() != nil:
			// The body is over, or its caller gave up: not a failure.
		default:
			d.c.r.s.Logger().Debug("epochal: renewing a delay's claim failed; it tries again before the lease runs out", "ref", d.c.r.name, "err", err)
		}
		if lost {
			cl.lost = true
			cl.mu.Unlock()
			cancel()
			return
		}
		cl.mu.Unlock()
	}
}

// releaseFailed logs a failed release of the delay's claim (the
// compare-and-set back to pending): at Warn, since the next caller waits
// for the claim's lease to run out; at Debug when the claim had changed
// already (taken over) or the STM is closed.
func (d *Delay[T]) releaseFailed(err error) {
	if errors.Is(err, errChanged) || errors.Is(err, stm.ErrClosed) {
		d.c.r.s.Logger().Debug("epochal: a delay's claim was not released: it had changed, or the STM closed", "ref", d.c.r.name, "err", err)
		return
	}
	d.c.r.s.Logger().Warn("epochal: a delay could not release its claim; another caller takes it over once its lease runs out", "ref", d.c.r.name, "err", err)
}

// stillOwned reports whether the delay is still running under owner's
// claim, and at which point: a compare-and-set that came back changed may
// only have been settled as not applied.
func (d *Delay[T]) stillOwned(ctx context.Context, owner string) (clock.Point, bool) {
	var st delayEnv
	p, err := d.c.read(ctx, &st)
	if err != nil || st.State != delayRunning || st.Owner != owner {
		return 0, false
	}
	return p, true
}

// AddWatch calls fn once when the delay is done with a value (its body
// run by any process), with T's zero value as old (a delay not yet done
// holds no T) and the value as new. A delivered body error is not a T:
// the watch is not called for it, then or ever (the delay never changes
// again). Watches work as Ref.AddWatch's: they see results committed
// after AddWatch returns, so a delay done before it was watched calls
// nothing; claims and lease renewals call nothing; callbacks run on this
// handle's own goroutine, never blocking the delay.
func (d *Delay[T]) AddWatch(key string, fn DelayWatchFn[T], opts ...WatchOption) {
	d.c.r.AddWatch(key, func(k string, _ *Ref[T], old, new T) { fn(k, d, old, new) }, opts...)
}

// RemoveWatch removes the watch added under key, as Ref.RemoveWatch does.
func (d *Delay[T]) RemoveWatch(key string) { d.c.r.RemoveWatch(key) }

// Meta returns the delay's meta map (nil if none was set): stored beside
// the value, shared by every process, changed atomically.
func (d *Delay[T]) Meta(ctx context.Context) (map[string]any, error) { return d.c.r.Meta(ctx) }

// ResetMeta replaces the delay's meta map.
func (d *Delay[T]) ResetMeta(ctx context.Context, m map[string]any) error {
	return d.c.r.ResetMeta(ctx, m)
}

// AlterMeta sets the delay's meta map to f of it, atomically (f may run
// several times under contention), and returns the new meta.
func (d *Delay[T]) AlterMeta(ctx context.Context, f func(map[string]any) map[string]any) (map[string]any, error) {
	return d.c.r.AlterMeta(ctx, f)
}
