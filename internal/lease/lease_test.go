package lease

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/internal/testkit/logrec"
)

// renewals wraps the mem backend to count, stall or hold renewals.
type renewals struct {
	*mem.Backend
	n     atomic.Int64
	stall atomic.Bool   // block until the call's ctx ends
	fail  atomic.Bool   // refuse at once with errRefused
	hold  chan struct{} // if set: answer only once it is closed
	seen  chan struct{} // a renewal arrived
}

var errRefused = errors.New("renewal refused (test)")

func newRenewals() *renewals { return &renewals{Backend: mem.New(), seen: make(chan struct{}, 100)} }

func (r *renewals) RenewSession(ctx context.Context, id string, now time.Time) error {
	r.n.Add(1)
	select {
	case r.seen <- struct{}{}:
	default:
	}
	if r.fail.Load() {
		return errRefused
	}
	if r.stall.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	if r.hold != nil {
		<-r.hold // a server slower than the lease
	}
	return r.Backend.RenewSession(context.Background(), id, now)
}

func done(t *testing.T, s *Session, within time.Duration) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(within):
		t.Fatalf("Done not closed within %v", within)
	}
}

// fakeClock is a clock the test advances by hand: a lease test then does
// not depend on how fast a loaded machine schedules the renewer.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c      *fakeClock
	at     time.Time
	f      func()         // AfterFunc
	ch     chan time.Time // NewTimer
	active bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1e9, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) add(t *fakeTimer) *fakeTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t.at = c.now.Add(t.at.Sub(time.Time{}))
	c.timers = append(c.timers, t)
	return t
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) timer {
	return c.add(&fakeTimer{c: c, at: time.Time{}.Add(d), f: f, active: true})
}

func (c *fakeClock) NewTimer(d time.Duration) (<-chan time.Time, timer) {
	t := c.add(&fakeTimer{c: c, at: time.Time{}.Add(d), ch: make(chan time.Time, 1), active: true})
	return t.ch, t
}

func (c *fakeClock) WithDeadline(ctx context.Context, d time.Time) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	c.AfterFunc(d.Sub(c.Now()), cancel)
	return ctx, cancel
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.active = false
	return was
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.at, t.active = t.c.now.Add(d), true
	return was
}

// Advance moves the clock and fires the timers that are due, in order.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	keep := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.active && !t.at.After(c.now):
			t.active = false
			due = append(due, t)
		case t.active:
			keep = append(keep, t)
		}
	}
	c.timers = keep
	now := c.now
	c.mu.Unlock()
	for _, t := range due {
		if t.f != nil {
			t.f()
		} else {
			t.ch <- now
		}
	}
}

// awaitTimer waits until some goroutine waits on a NewTimer of c (the
// renewer, between two renewals).
func (c *fakeClock) awaitTimer(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; {
		c.mu.Lock()
		n := 0
		for _, x := range c.timers {
			if x.active && x.ch != nil {
				n++
			}
		}
		c.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the renewer does not wait for its next renewal after a minute")
		}
		<-time.After(time.Millisecond)
	}
}

// deadlineOf is s's local deadline.
func deadlineOf(s *Session) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadline
}

// renewOnce advances the clock to the renewer's next renewal and waits
// until it has been answered and taken into account.
func renewOnce(t *testing.T, c *fakeClock, r *renewals, s *Session, period time.Duration) {
	t.Helper()
	c.awaitTimer(t)
	before := deadlineOf(s)
	c.Advance(period)
	<-r.seen
	for deadline := time.Now().Add(time.Minute); !deadlineOf(s).After(before) && !s.Lost(); {
		if time.Now().After(deadline) {
			t.Fatal("a successful renewal did not move the deadline in a minute")
		}
		<-time.After(time.Millisecond)
	}
}

// TestLostAtDeadline: renewals that never answer: Done closes at the
// local deadline (not before), with ErrExpired.
func TestLostAtDeadline(t *testing.T) {
	r := newRenewals()
	r.stall.Store(true)
	c := newFakeClock()
	const lease = 300 * time.Millisecond
	s, err := open(context.Background(), r, lease, c, Observer{})
	if err != nil {
		t.Fatal(err)
	}
	c.awaitTimer(t)
	c.Advance(lease / 3) // a renewal that never answers
	<-r.seen
	c.Advance(sure(lease) - lease/3 - time.Millisecond)
	if s.Lost() {
		t.Fatalf("lost %v before the deadline", time.Millisecond)
	}
	c.Advance(time.Millisecond)
	done(t, s, time.Minute)
	if !errors.Is(s.Err(), ErrExpired) {
		t.Fatalf("Err = %v, want ErrExpired", s.Err())
	}
}

// TestRenewedStaysAlive: renewals keep a session past many leases.
func TestRenewedStaysAlive(t *testing.T) {
	r := newRenewals()
	c := newFakeClock()
	const lease = 150 * time.Millisecond
	s, err := open(context.Background(), r, lease, c, Observer{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	for i := 0; i < 12; i++ { // four leases' worth
		renewOnce(t, c, r, s, lease/3)
		if s.Lost() {
			t.Fatalf("lost after %d renewals: %v", i+1, s.Err())
		}
	}
	if got := deadlineOf(s).Sub(c.Now()); got != sure(lease) {
		t.Fatalf("deadline %v after the last renewal, want %v", got, sure(lease))
	}
}

// TestLateRenewalDoesNotReopen: a renewal that succeeds only after the
// local deadline passed still ends the session: the holder could not be
// sure of it in between.
func TestLateRenewalDoesNotReopen(t *testing.T) {
	r := newRenewals()
	r.hold = make(chan struct{})
	c := newFakeClock()
	const lease = 600 * time.Millisecond
	s, err := open(context.Background(), r, lease, c, Observer{})
	if err != nil {
		t.Fatal(err)
	}
	c.awaitTimer(t)
	c.Advance(lease / 3)
	<-r.seen // the renewal is held by the server
	c.Advance(lease)
	done(t, s, time.Minute)
	close(r.hold) // it succeeds, too late
	s.Close(context.Background())
	if !errors.Is(s.Err(), ErrExpired) {
		t.Fatalf("Err = %v, want ErrExpired", s.Err())
	}
}

// TestSessionGone: the backend ending the session ends it here at the
// next renewal.
func TestSessionGone(t *testing.T) {
	r := newRenewals()
	c := newFakeClock()
	const lease = 3 * time.Second
	s, err := open(context.Background(), r, lease, c, Observer{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CloseSession(context.Background(), s.ID()); err != nil {
		t.Fatal(err)
	}
	c.awaitTimer(t)
	c.Advance(lease / 3)
	done(t, s, time.Minute)
	if !errors.Is(s.Err(), backend.ErrSessionGone) {
		t.Fatalf("Err = %v, want ErrSessionGone", s.Err())
	}
}

func TestBadLease(t *testing.T) {
	for _, l := range []time.Duration{0, -time.Second} {
		if _, err := Open(context.Background(), mem.New(), l); !errors.Is(err, ErrBadLease) {
			t.Errorf("Open with lease %v: %v, want ErrBadLease", l, err)
		}
	}
	if _, err := Resolve(nil); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Resolve(nil): %v, want ErrUnsupported", err)
	}
	if _, err := Resolve(noSessions{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Resolve of a store without sessions: %v, want ErrUnsupported", err)
	}
	if ss, err := Resolve(mem.New()); err != nil || ss == nil {
		t.Errorf("Resolve(mem.New()) = %v, %v; want its sessions", ss, err)
	}
	// A wrapper that embeds a driver and overrides a session call is
	// used as it is, not through the Sessions method it inherits.
	st := newStalled()
	if ss, err := Resolve(st); err != nil || ss != backend.Sessions(st) {
		t.Errorf("Resolve(wrapper) = %T, %v; want the wrapper itself", ss, err)
	}
}

// noSessions is a store that keeps no sessions.
type noSessions struct{}

func (noSessions) Sessions() backend.Sessions { return nil }

// TestPool: one shared session per backend and lease; an unused one is
// closed after Linger, a lost one replaced.
func TestPool(t *testing.T) {
	old := Linger
	Linger = 50 * time.Millisecond
	defer func() { Linger = old }()
	ctx := context.Background()
	b := mem.New()
	a1, err := Acquire(ctx, b, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := Acquire(ctx, b, time.Minute)
	other, _ := Acquire(ctx, b, 2*time.Minute)
	if a1 != a2 || a1 == other {
		t.Fatal("the pool does not share one session per backend and lease")
	}
	a1.Release()
	a2.Release()
	done(t, a1, time.Minute) // closed after Linger
	a3, _ := Acquire(ctx, b, time.Minute)
	if a3 == a1 || a3.Lost() {
		t.Fatal("Acquire returned a closed session")
	}
	a3.Lose(errors.New("test"))
	a4, _ := Acquire(ctx, b, time.Minute)
	if a4 == a3 {
		t.Fatal("Acquire returned a lost session")
	}
	for _, s := range []*Session{a3, a4, other} {
		s.Release()
	}
}

// TestDoneLooksAtTheDeadline: a process resumed after its deadline (here:
// a deadline already past whose timer has not fired) finds Done closed on
// its first look, before the timer runs.
func TestDoneLooksAtTheDeadline(t *testing.T) {
	r := newRenewals()
	r.stall.Store(true)
	s, err := Open(context.Background(), r, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.timer.Stop() // as if the process had been paused past the deadline
	s.deadline = time.Now().Add(-time.Millisecond)
	s.mu.Unlock()
	select {
	case <-s.Done():
	default:
		t.Fatal("Done open after the deadline passed")
	}
	if !errors.Is(s.Err(), ErrExpired) {
		t.Fatalf("Err = %v, want ErrExpired", s.Err())
	}
}

// stalled is a mem backend whose OpenSession does not answer until its
// ctx ends (an unreachable server), or until released.
type stalled struct {
	*mem.Backend
	opens   atomic.Int64
	entered chan struct{} // an OpenSession arrived
	release chan struct{} // closed: answer
}

func newStalled() *stalled {
	return &stalled{Backend: mem.New(), entered: make(chan struct{}, 100), release: make(chan struct{})}
}

func (s *stalled) OpenSession(ctx context.Context, id string, lease time.Duration, holder string) (time.Duration, error) {
	s.opens.Add(1)
	s.entered <- struct{}{}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-s.release:
	}
	return s.Backend.OpenSession(context.Background(), id, lease, holder)
}

// result runs f in a goroutine and returns a channel of its error.
func result(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

// TestUnreachableBackendDoesNotStallOtherLocks: while an OpenSession on a
// backend that does not answer is in flight, Acquire on another backend
// returns at once, and another Acquire on the stalled one ends with its
// own ctx.
func TestUnreachableBackendDoesNotStallOtherLocks(t *testing.T) {
	dead := newStalled()
	bg, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := result(func() error { _, err := Acquire(bg, dead, time.Minute); return err })
	<-dead.entered // the first Acquire is waiting on the network

	other := mem.New()
	got := result(func() error {
		s, err := Acquire(context.Background(), other, time.Minute)
		if err == nil {
			s.Release()
		}
		return err
	})
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("Acquire on a healthy backend: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Acquire on a healthy backend waited 30s for an OpenSession on another backend")
	}

	short, cancelShort := context.WithCancel(context.Background())
	second := result(func() error { _, err := Acquire(short, dead, time.Minute); return err })
	cancelShort()
	select {
	case err := <-second:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Acquire whose ctx ended while another open was in flight: %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Acquire did not return 30s after its ctx ended: it waits for another caller's open")
	}
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("first Acquire: %v, want context.Canceled", err)
	}
}

// TestConcurrentAcquiresShareOneOpen: callers for the same backend and
// lease wait for the open in flight rather than open another session.
func TestConcurrentAcquiresShareOneOpen(t *testing.T) {
	slow := newStalled()
	ctx := context.Background()
	k := poolKey{slow, time.Minute}
	type got struct {
		s   *Session
		err error
	}
	res := make(chan got, 3)
	for range 3 {
		go func() {
			s, err := Acquire(ctx, slow, time.Minute)
			res <- got{s, err}
		}()
	}
	<-slow.entered
	for deadline := time.Now().Add(time.Minute); ; {
		pool.mu.Lock()
		n := 0
		if op := pool.opens[k]; op != nil {
			n = op.waiters
		}
		pool.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers wait for the open in flight after a minute, want 2", n)
		}
		<-time.After(time.Millisecond)
	}
	close(slow.release)
	var first *Session
	for range 3 {
		g := <-res
		if g.err != nil {
			t.Fatal(g.err)
		}
		if first == nil {
			first = g.s
		} else if g.s != first {
			t.Fatal("two sessions for one backend and lease")
		}
	}
	if n := slow.opens.Load(); n != 1 {
		t.Fatalf("%d OpenSession calls, want 1", n)
	}
	for range 3 {
		first.Release()
	}
}

// TestRenewalFailureLogged: a failed renewal is logged with the session
// and the error, and so is the session's loss at its deadline.
func TestRenewalFailureLogged(t *testing.T) {
	r := newRenewals()
	r.fail.Store(true)
	c := newFakeClock()
	h, log := logrec.New()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	lost, err := mp.Meter("test").Int64Counter("lost")
	if err != nil {
		t.Fatal(err)
	}
	const lease = 300 * time.Millisecond
	s, err := open(context.Background(), r, lease, c, Observer{Log: func() *slog.Logger { return log }, Lost: lost})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a bound, not a timing
	defer cancel()
	c.awaitTimer(t)
	c.Advance(lease / 3)
	rec, ok := h.Wait(ctx, func(r logrec.Record) bool {
		return r.Message == "epochal: session renewal failed; trying again before the lease runs out"
	})
	if !ok {
		t.Fatalf("no renewal failure logged: %v", h.Records())
	}
	if e, _ := rec.Attrs["err"].(error); !errors.Is(e, errRefused) || rec.Attrs["session"] != s.ID() || rec.Level != slog.LevelWarn {
		t.Fatalf("record %+v, want Warn with session %s and the refusal", rec, s.ID())
	}
	c.Advance(lease)
	done(t, s, time.Minute)
	rec, ok = h.Wait(ctx, func(r logrec.Record) bool {
		return r.Message == "epochal: session lost: whatever it held (locks, group memberships) is no longer its own"
	})
	if !ok {
		t.Fatalf("no loss logged: %v", h.Records())
	}
	if e, _ := rec.Attrs["err"].(error); !errors.Is(e, ErrExpired) || rec.Attrs["session"] != s.ID() {
		t.Fatalf("record %+v, want session %s and ErrExpired", rec, s.ID())
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				n += dp.Value
			}
		}
	}
	if n != 1 {
		t.Fatalf("sessions lost counted %d, want 1", n)
	}
}

// refusedRemovals is the mem backend whose RemoveEntry fails while fail
// is set.
type refusedRemovals struct {
	*mem.Backend
	fail atomic.Bool
}

func (r *refusedRemovals) RemoveEntry(ctx context.Context, session, dir, name string) error {
	if r.fail.Load() {
		return errRefused
	}
	return r.Backend.RemoveEntry(ctx, session, dir, name)
}

// TestPersistentRemovalFailureLogged: a removal that keeps failing in the
// background (for a lease) is logged once at Warn, with the session, dir,
// entry and error; its retries before that at Debug.
func TestPersistentRemovalFailureLogged(t *testing.T) {
	r := &refusedRemovals{Backend: mem.New()}
	t.Cleanup(func() { _ = r.Close() })
	h, log := logrec.New()
	const lease = 200 * time.Millisecond
	// The fake clock never moves: the session is never lost.
	s, err := open(context.Background(), r, lease, newFakeClock(), Observer{Log: func() *slog.Logger { return log }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddEntry(context.Background(), backend.AddEntryRequest{Dir: "d", Name: "e"}); err != nil {
		t.Fatal(err)
	}
	r.fail.Store(true)
	if err := s.RemoveEntry(context.Background(), "d", "e"); !errors.Is(err, errRefused) {
		t.Fatalf("RemoveEntry = %v, want the refusal", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a bound, not a timing
	defer cancel()
	const msg = "epochal: a session's entry could not be removed for a lease; it keeps trying until the entry or the session is gone"
	rec, ok := h.Wait(ctx, func(r logrec.Record) bool { return r.Message == msg })
	if !ok {
		t.Fatalf("no persistent failure logged: %v", h.Records())
	}
	if e, _ := rec.Attrs["err"].(error); !errors.Is(e, errRefused) || rec.Level != slog.LevelWarn ||
		rec.Attrs["session"] != s.ID() || rec.Attrs["dir"] != "d" || rec.Attrs["entry"] != "e" {
		t.Fatalf("record %+v", rec)
	}
	// Once: more failures add no Warn.
	c, cc := context.WithTimeout(ctx, 3*lease)
	defer cc()
	h.Wait(c, func(logrec.Record) bool { return false })
	if n := h.AtLeast(slog.LevelWarn); n != 1 {
		t.Errorf("%d records at Warn, want 1: %v", n, h.Records())
	}
	r.fail.Store(false)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// closeRefused is renewals whose CloseSession fails.
type closeRefused struct{ *renewals }

func (c closeRefused) CloseSession(context.Context, string) error { return errRefused }

// TestLostCloseFailureLogged: a session lost at its local deadline may
// still hold its entries on the backend until its lease there runs out:
// a failed close is logged at Warn.
func TestLostCloseFailureLogged(t *testing.T) {
	r := newRenewals()
	r.fail.Store(true)
	c := newFakeClock()
	h, log := logrec.New()
	const lease = 300 * time.Millisecond
	s, err := open(context.Background(), closeRefused{r}, lease, c, Observer{Log: func() *slog.Logger { return log }})
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(lease)
	done(t, s, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a bound, not a timing
	defer cancel()
	rec, ok := h.Wait(ctx, func(r logrec.Record) bool {
		return r.Message == "epochal: closing a lost session failed; what it held stays taken until the backend ends it at its lease"
	})
	if !ok {
		t.Fatalf("no failed close logged: %v", h.Records())
	}
	if e, _ := rec.Attrs["err"].(error); !errors.Is(e, errRefused) || rec.Attrs["session"] != s.ID() || rec.Level != slog.LevelWarn {
		t.Fatalf("record %+v", rec)
	}
}
