package lease

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
)

// renewals wraps the mem backend to count, stall or delay renewals.
type renewals struct {
	*mem.Backend
	n     atomic.Int64
	stall atomic.Bool   // block until the call's ctx ends
	delay atomic.Int64  // then answer (ns)
	seen  chan struct{} // a renewal arrived
}

func newRenewals() *renewals { return &renewals{Backend: mem.New(), seen: make(chan struct{}, 100)} }

func (r *renewals) RenewSession(ctx context.Context, id string, now time.Time) error {
	r.n.Add(1)
	select {
	case r.seen <- struct{}{}:
	default:
	}
	if r.stall.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	if d := r.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d)) // a slow server, not synchronisation
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

// TestLostAtDeadline: renewals that never answer: Done closes at the
// local deadline (not before), with ErrExpired.
func TestLostAtDeadline(t *testing.T) {
	r := newRenewals()
	r.stall.Store(true)
	start := time.Now()
	s, err := Open(context.Background(), r, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	done(t, s, time.Minute)
	if el := time.Since(start); el < sure(300*time.Millisecond) {
		t.Fatalf("lost after %v, before the deadline %v", el, sure(300*time.Millisecond))
	}
	if !errors.Is(s.Err(), ErrExpired) {
		t.Fatalf("Err = %v, want ErrExpired", s.Err())
	}
}

// TestRenewedStaysAlive: renewals keep a session past many leases.
func TestRenewedStaysAlive(t *testing.T) {
	r := newRenewals()
	s, err := Open(context.Background(), r, 150*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	for r.n.Load() < 12 { // four leases' worth
		select {
		case <-r.seen:
		case <-s.Done():
			t.Fatalf("lost after %d renewals: %v", r.n.Load(), s.Err())
		case <-time.After(time.Minute):
			t.Fatal("no renewal for a minute")
		}
	}
	if s.Lost() {
		t.Fatalf("lost: %v", s.Err())
	}
}

// TestLateRenewalDoesNotReopen: a renewal that succeeds only after the
// local deadline passed still ends the session: the holder could not be
// sure of it in between.
func TestLateRenewalDoesNotReopen(t *testing.T) {
	r := newRenewals()
	r.delay.Store(int64(time.Second))
	s, err := Open(context.Background(), r, 600*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	done(t, s, time.Minute)
	if !errors.Is(s.Err(), ErrExpired) {
		t.Fatalf("Err = %v, want ErrExpired", s.Err())
	}
}

// TestSessionGone: the backend ending the session ends it here at the
// next renewal.
func TestSessionGone(t *testing.T) {
	r := newRenewals()
	s, err := Open(context.Background(), r, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CloseSession(context.Background(), s.ID()); err != nil {
		t.Fatal(err)
	}
	done(t, s, 2*time.Minute)
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
	if _, _, err := Resolve(42); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Resolve(42): %v, want ErrUnsupported", err)
	}
}

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
