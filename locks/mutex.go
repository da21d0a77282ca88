package locks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/internal/lease"
	"github.com/epochal/epochal/internal/names"
)

// Errors of Mutex and RWMutex users (ErrNotHeld and ErrLost are in
// errors.go).
var (
	// ErrName: a lock name is empty or malformed (the rules of ref names).
	ErrName = errors.New("locks: bad lock name")
	// ErrUnsupported: the store keeps no sessions, so it cannot hold locks.
	ErrUnsupported = lease.ErrUnsupported
	// ErrBadLease: WithLease was given a lease that is not positive.
	ErrBadLease = lease.ErrBadLease
	// ErrDeadlock: an RWMutex asked for the read lock while it holds the
	// write lock, or the other way round; either would wait for itself.
	ErrDeadlock = errors.New("locks: would deadlock (this RWMutex already holds the lock in the other mode)")
)

// DefaultLease is the lease of a lock unless WithLease says otherwise.
// On ZooKeeper the lease is the session timeout (zk.Config.SessionTimeout).
const DefaultLease = 10 * time.Second

// Option configures a Mutex or RWMutex.
type Option func(*options) error

type options struct {
	lease time.Duration
	log   *slog.Logger
	mp    metric.MeterProvider
}

// WithLogger sets the logger of the lock's background errors (its
// session's failed renewals and loss, a failed removal of an entry).
// Default: the STM's (stm.WithLogger) when the store is an *stm.STM, else
// slog.Default(), looked up at each record.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// WithMeterProvider sets where the lock's metrics go
// (epochal.lock.wait.duration, epochal.lock.held.duration,
// epochal.session.lost; docs/design.md, "Observability"). Default: the
// STM's (stm.WithMeterProvider) when the store is an *stm.STM, else
// otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) error { o.mp = mp; return nil }
}

// WithLease sets how long a holder's lease lasts without renewal: a dead
// holder's lock is free within about this long. Renewals happen every
// third of it. ZooKeeper ignores it: there the lease is the session
// timeout.
func WithLease(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: %v", ErrBadLease, d)
		}
		o.lease = d
		return nil
	}
}

// lockDir is where a lock's entries live in the backend.
func lockDir(name string) string { return lease.LockDirPrefix + name }

// lockBase is what Mutex and RWMutex share: the backend and the lock.
type lockBase struct {
	drv      backend.Sessions
	name     string
	dir      string
	lease    time.Duration
	log      func() *slog.Logger // at each record (engine.LogSource)
	obs      lease.Observer
	waitHist metric.Float64Histogram
	heldHist metric.Float64Histogram
}

func newBase(store backend.SessionStore, name string, opts []Option) (lockBase, error) {
	if err := names.Check(name); err != nil {
		return lockBase{}, fmt.Errorf("%w: %w", ErrName, err)
	}
	o := options{lease: DefaultLease}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return lockBase{}, err
		}
	}
	drv, err := lease.Resolve(store)
	if err != nil {
		return lockBase{}, fmt.Errorf("locks: %q: %w", name, err)
	}
	b := lockBase{drv: drv, name: name, dir: lockDir(name), lease: o.lease, log: engine.LogSource(o.log, store)}
	var mp metric.MeterProvider = o.mp
	if h, ok := store.(engine.Host); ok && mp == nil {
		mp = engine.Of(h).MeterProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(engine.ScopeName)
	// An instrument's error leaves a no-op one (the API's contract).
	b.waitHist, _ = m.Float64Histogram(engine.MetricLockWait, metric.WithUnit("s"), metric.WithDescription("Time from Lock (RLock, TryLock) to holding the lock or giving up, by mode and outcome"), metric.WithExplicitBucketBoundaries(engine.DurationBuckets...))
	b.heldHist, _ = m.Float64Histogram(engine.MetricLockHeld, metric.WithUnit("s"), metric.WithDescription("Time a lock was held, from acquisition to its release, by mode"), metric.WithExplicitBucketBoundaries(engine.DurationBuckets...))
	lost, _ := m.Int64Counter(engine.MetricSessionLost, metric.WithUnit("{session}"), metric.WithDescription("Sessions (of locks and groups) lost: not renewed in time, or ended by the backend"))
	b.obs = lease.Observer{Log: b.log, Lost: lost}
	return b, nil
}

// modeAttr is the metric option of a lock mode.
func modeAttr(mode string) attribute.KeyValue {
	if mode == lease.ModeRead {
		return attribute.String(engine.AttrLockMode, "read")
	}
	return attribute.String(engine.AttrLockMode, "write")
}

// noteWait records a wait for the lock that began at start.
func (b *lockBase) noteWait(ctx context.Context, mode string, start time.Time, err error) {
	outcome := "acquired"
	switch {
	case err == nil:
	case errors.Is(err, errHeld), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		outcome = "gave_up"
	default:
		outcome = "error"
	}
	b.waitHist.Record(context.WithoutCancel(ctx), time.Since(start).Seconds(), metric.WithAttributes(modeAttr(mode), attribute.String(engine.AttrLockOutcome, outcome)))
}

// hold is one acquisition: an entry of a session.
type hold struct {
	sess  *lease.Session
	entry string
	token uint64
	count int
	since time.Time // when it was acquired
}

// closedCh is returned by Lost when nothing is held.
var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// pollFor bounds each wait on the backend, so a predecessor that died
// silently (a lease that ran out with no message) is noticed promptly.
func pollFor(lease time.Duration) time.Duration {
	p := lease / 8
	if p < 10*time.Millisecond {
		p = 10 * time.Millisecond
	}
	if p > time.Second {
		p = time.Second
	}
	return p
}

// errHeld: the lock was held by another when the caller gave up: at once
// (no wait asked for) or when its ctx ended while it waited for the holder
// (then wrapped with ctx's error). TryLock answers it with (false, nil);
// every other failure is an error.
var errHeld = errors.New("held by another")

// acquire queues an entry of mode and waits until it is first in line
// (FIFO): a writer waits for its predecessor, a reader for the nearest
// writer before it. block false: give up at once when held by another.
// It returns errHeld (wrapped) when it gave up while the lock was held by
// another, and leaves nothing held on any error.
func (b *lockBase) acquire(ctx context.Context, mode string, block bool) (*hold, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("locks: %q: %w", b.name, err)
	}
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, b.lease) {
		sess, err := lease.AcquireWith(ctx, b.drv, b.lease, b.obs)
		if err != nil {
			return nil, fmt.Errorf("locks: %q: %w", b.name, err)
		}
		h, retry, err := b.queue(ctx, sess, mode, block)
		if h != nil {
			return h, nil
		}
		sess.Release()
		if retry && sleep(ctx, wait) {
			continue // the session was lost on the way: a new one
		}
		if err == nil || (retry && ctx.Err() != nil) {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("locks: %q: %w", b.name, err)
	}
}

// queue adds the entry and waits for its turn. When ctx ends it tells
// (errHeld) a wait for a holder, seen at the last look, from a backend
// that did not answer or failed (an error).
func (b *lockBase) queue(ctx context.Context, sess *lease.Session, mode string, block bool) (h *hold, retry bool, err error) {
	var raw [10]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (it panics instead)
	name := mode + "." + hex.EncodeToString(raw[:])
	req := backend.AddEntryRequest{Session: sess.ID(), Dir: b.dir, Name: name, Sequential: true, Time: time.Now()}
	var e backend.Entry
	var listed []backend.Entry // from AddEntryList: the first look is free
	if l, ok := b.drv.(backend.EntryLister); ok {
		e, listed, err = l.AddEntryList(ctx, req)
	} else {
		e, err = b.drv.AddEntry(ctx, req)
	}
	if err != nil {
		if errors.Is(err, backend.ErrSessionGone) {
			sess.Lose(err)
			return nil, true, err
		}
		// The outcome may be unknown: the add may still arrive after
		// its removal (names are never reused: no need to stop the
		// repeats). Abandon goes on in the background; its first
		// attempt's failure is logged, the caller gets the add's.
		actx, cancel := cleanupCtx(ctx)
		aerr := sess.Abandon(actx, b.dir, name)
		b.removalFailed(actx, "epochal: a lock could not yet remove an entry whose addition failed; it keeps trying", sess, name, aerr)
		cancel()
		return nil, false, err
	}
	poll := pollFor(sess.Lease())
	fails := 0        // transient backend errors in a row
	held := false     // the last look found a holder ahead
	var lastErr error // a backend error since that look
	gaveUp := func() error {
		b.cleanup(ctx, sess, name)
		switch {
		case ctx.Err() == nil:
			return lastErr
		case held && lastErr == nil:
			return fmt.Errorf("%w: %w", errHeld, ctx.Err())
		case lastErr != nil && !errors.Is(lastErr, ctx.Err()):
			return fmt.Errorf("%w (the backend: %w)", ctx.Err(), lastErr)
		}
		return ctx.Err()
	}
	for {
		es := listed
		if es == nil {
			es, err = b.drv.Entries(ctx, b.dir, false)
		}
		listed = nil
		if err != nil {
			if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
				lastErr = err
			}
			if b.transient(ctx, sess, err, &fails, poll) {
				continue
			}
			if ctx.Err() == nil {
				b.cleanup(ctx, sess, name)
				return nil, false, err
			}
			return nil, false, gaveUp()
		}
		fails, lastErr = 0, nil
		i := -1
		for j := range es {
			if es[j].Name == name {
				i = j
				break
			}
		}
		if i < 0 {
			// Our entry is gone: only the end of our session does that.
			sess.Lose(fmt.Errorf("%w: entry gone", backend.ErrSessionGone))
			return nil, true, fmt.Errorf("session ended while waiting: %w", ErrLost)
		}
		pred := ""
		for j := i - 1; j >= 0; j-- {
			if mode == lease.ModeWrite || lease.EntryMode(es[j].Name) == "write" {
				pred = es[j].Name
				break
			}
		}
		if pred == "" {
			if sess.Lost() {
				return nil, true, sess.Err()
			}
			return &hold{sess: sess, entry: name, token: e.Seq, count: 1}, false, nil
		}
		held = true
		if !block {
			b.cleanup(ctx, sess, name)
			return nil, false, errHeld
		}
		err = b.drv.WaitEntries(ctx, b.dir, pred, poll)
		if ctx.Err() != nil {
			return nil, false, gaveUp()
		}
		if err != nil {
			lastErr = err
			if !b.transient(ctx, sess, err, &fails, poll) {
				if ctx.Err() != nil {
					return nil, false, gaveUp()
				}
				b.cleanup(ctx, sess, name)
				return nil, false, err
			}
		}
	}
}

// transient decides whether a waiter rides out a backend error: it does
// (after a pause that grows up to poll) while ctx and the session last and
// the error is not final (a closed driver, bad input). The session's own
// renewal decides when an outage has gone on too long.
func (b *lockBase) transient(ctx context.Context, sess *lease.Session, err error, retry *int, poll time.Duration) bool {
	if errors.Is(err, backend.ErrClosed) || errors.Is(err, backend.ErrBadName) || sess.Lost() || ctx.Err() != nil {
		return false
	}
	*retry++
	wait := min(poll, time.Duration(*retry)*10*time.Millisecond)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-sess.Done():
		return false
	}
}

// sleep waits d unless ctx ends first (false then).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// cleanupWait is how long a caller whose ctx has ended waits for the
// removal of the entry it gave up, past its deadline: a live server
// answers well within it; one that does not is left to the background
// retries.
const cleanupWait = 100 * time.Millisecond

// cleanupCtx returns the ctx a removal made on the way out is waited for
// with: ctx while it lasts, else ctx's values with cleanupWait to go.
func cleanupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx.Err() == nil {
		return ctx, func() {}
	}
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupWait)
}

// removalFailed logs a removal's first failure (err, from a ctx of
// cleanupCtx): at Warn, but at Debug when it is only that ctx that ended
// first (the removal goes on in the background, and the session logs it if
// it keeps failing).
func (b *lockBase) removalFailed(ctx context.Context, msg string, sess *lease.Session, name string, err error) {
	if err == nil || errors.Is(err, backend.ErrEntryGone) {
		return
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		b.log().Debug(msg, "lock", b.name, "entry", name, "session", sess.ID(), "err", err)
		return
	}
	b.log().Warn(msg, "lock", b.name, "entry", name, "session", sess.ID(), "err", err)
}

// cleanup removes an entry we no longer want, waiting for it while ctx
// lasts (or, once it has ended, for cleanupWait); if the backend cannot
// be reached it keeps trying in the background until the entry or its
// session is gone: an orphan entry of a live session would block the lock
// (lease.Session.RemoveEntry).
func (b *lockBase) cleanup(ctx context.Context, sess *lease.Session, name string) {
	ctx, cancel := cleanupCtx(ctx)
	defer cancel()
	err := sess.RemoveEntry(ctx, b.dir, name)
	b.removalFailed(ctx, "epochal: a lock could not yet remove an entry it gave up; it keeps trying until the entry or its session is gone", sess, name, err)
}

// release removes a held entry; ErrLost if the session was lost first.
func (b *lockBase) release(ctx context.Context, h *hold) error {
	defer h.sess.Release()
	lost := h.sess.Lost()
	err := h.sess.RemoveEntry(ctx, b.dir, h.entry)
	switch {
	case lost || errors.Is(err, backend.ErrEntryGone):
		if !lost {
			h.sess.Lose(fmt.Errorf("%w: entry gone", backend.ErrSessionGone))
		}
		return fmt.Errorf("%w (lock %q)", ErrLost, b.name)
	case err != nil:
		return fmt.Errorf("locks: %q: unlock: %w", b.name, err)
	}
	return nil
}

// Mutex is a distributed mutual-exclusion lock with leases and fencing
// tokens. A *Mutex shared by goroutines excludes them as sync.Mutex does:
// the holder is the goroutine that called Lock; a second Lock on that
// goroutine counts (reentrant), and it takes as many Unlocks; Lock on any
// other goroutine waits, in this process as in any other (the goroutines
// of one *Mutex wait for each other in the process, in arrival order,
// before they queue at the backend). Unlock on a goroutine that does not
// hold the lock returns ErrNotHeld; Token and Lost are the calling
// goroutine's. It is an RWMutex used only for writing.
type Mutex struct {
	rw *RWMutex
}

// NewMutex returns the lock called name in store: an *stm.STM (the lock
// lives in its coordinator) or a driver that keeps sessions (mem, redis,
// zk; one held as a backend.Driver is passed as
// b.(backend.SessionStore)). No round trip.
func NewMutex(store backend.SessionStore, name string, opts ...Option) (*Mutex, error) {
	rw, err := NewRWMutex(store, name, opts...)
	if err != nil {
		return nil, err
	}
	return &Mutex{rw: rw}, nil
}

// Name is the lock's name.
func (m *Mutex) Name() string { return m.rw.name }

// Lock takes the lock for the calling goroutine, waiting in line (FIFO)
// for as long as ctx allows. If ctx ends first nothing is held and the
// error wraps ctx's.
func (m *Mutex) Lock(ctx context.Context) error { return m.rw.Lock(ctx) }

// TryLock takes the lock if it is free, or becomes free before ctx's
// deadline. With no deadline it returns at once. It returns (false, nil)
// when the lock is still held by another (another goroutine, here or in
// another process) at the deadline, and (false, err) on a failure: a
// backend that fails or does not answer before the deadline, a ctx
// canceled.
func (m *Mutex) TryLock(ctx context.Context) (bool, error) { return m.rw.TryLock(ctx) }

// Unlock releases one Lock of the calling goroutine. The last one removes
// the holder's entry and lets the next goroutine waiting in this process
// go on. It returns ErrNotHeld if the calling goroutine does not hold the
// lock, and ErrLost if the lease was lost while held (the lock is then no
// longer held here).
func (m *Mutex) Unlock(ctx context.Context) error { return m.rw.Unlock(ctx) }

// Token is the fencing token of the calling goroutine's holding: it
// strictly increases with every acquisition of this lock by any holder,
// so a guarded resource can refuse a request carrying a token older than
// one it has seen. 0 when the calling goroutine does not hold the lock.
func (m *Mutex) Token() uint64 { return m.rw.Token() }

// Lost returns a channel closed once the holder (the calling goroutine)
// can no longer be sure it holds the lock (its lease could not be renewed
// in time, its session ended). It is closed before the backend can let
// anyone else take the lock. When the calling goroutine holds nothing the
// channel is already closed.
//
// Call Lost right before acting on the lock: each call looks at the lease's
// deadline itself, so it is exact even in a process that has just resumed
// from a pause longer than the lease (SIGSTOP, a long GC), where the timer
// that closes a channel kept from an earlier call may not have run yet.
// What a paused process cannot see at all is covered by the fencing token.
func (m *Mutex) Lost() <-chan struct{} { return m.rw.Lost() }
