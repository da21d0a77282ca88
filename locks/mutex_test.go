package locks_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/locks"
)

// silent is a mem backend that stops answering session calls (an
// unreachable server) while mute is open: each call waits for its ctx.
type silent struct {
	*mem.Backend
	entered chan struct{}
}

func newSilent() *silent { return &silent{Backend: mem.New(), entered: make(chan struct{}, 100)} }

func (s *silent) stall(ctx context.Context) error {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *silent) OpenSession(ctx context.Context, id string, lease time.Duration, holder string) (time.Duration, error) {
	return 0, s.stall(ctx)
}

func (s *silent) AddEntry(ctx context.Context, req backend.AddEntryRequest) (backend.Entry, error) {
	return backend.Entry{}, s.stall(ctx)
}

func result(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

// TestUnreachableBackendDoesNotStallOtherLocks: a Lock waiting on a
// backend that does not answer holds up no lock of another backend, and
// ends with its own ctx.
func TestUnreachableBackendDoesNotStallOtherLocks(t *testing.T) {
	dead := newSilent()
	stuck, err := locks.NewMutex(dead, "a")
	if err != nil {
		t.Fatal(err)
	}
	bg, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := result(func() error { return stuck.Lock(bg) })
	<-dead.entered

	ok, err := locks.NewMutex(mem.New(), "a")
	if err != nil {
		t.Fatal(err)
	}
	got := result(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := ok.Lock(ctx); err != nil {
			return err
		}
		return ok.Unlock(ctx)
	})
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("Lock on a healthy backend: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Lock on a healthy backend waited 30s behind a Lock on an unreachable one")
	}
	other, _ := locks.NewMutex(dead, "b")
	short, cancelShort := context.WithCancel(context.Background())
	second := result(func() error { return other.Lock(short) })
	cancelShort()
	select {
	case err := <-second:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Lock whose ctx ended: %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Lock did not return 30s after its ctx ended")
	}
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("first Lock: %v, want context.Canceled", err)
	}
}

// TestTryLockBackendFailureIsAnError: TryLock says (false, nil) only for
// a lock held by another; a backend that fails or does not answer before
// the deadline is (false, err).
func TestTryLockBackendFailureIsAnError(t *testing.T) {
	dead := newSilent()
	m, err := locks.NewMutex(dead, "t")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	ok, err := m.TryLock(ctx)
	cancel()
	if ok || err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("TryLock on a backend that does not answer = %v, %v; want false and an error wrapping context.DeadlineExceeded", ok, err)
	}

	closed := mem.New()
	c, _ := locks.NewMutex(closed, "t")
	_ = closed.Close()
	ok, err = c.TryLock(context.Background())
	if ok || !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("TryLock on a closed backend = %v, %v; want false, ErrClosed", ok, err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	ok, err = c.TryLock(ctx)
	cancel()
	if ok || !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("TryLock with a deadline on a closed backend = %v, %v; want false, ErrClosed", ok, err)
	}

	// Held by another at the deadline: (false, nil).
	b := mem.New()
	holder, _ := locks.NewMutex(b, "t")
	if err := holder.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer holder.Unlock(context.Background())
	waiter, _ := locks.NewMutex(b, "t")
	if ok, err := waiter.TryLock(context.Background()); ok || err != nil {
		t.Fatalf("TryLock (no deadline) of a lock held by another = %v, %v; want false, nil", ok, err)
	}
	// A deadline that passes before the backend answers is an error, not
	// "held": on a slow machine, a longer one.
	for d := 50 * time.Millisecond; ; d *= 2 {
		ctx, cancel = context.WithTimeout(context.Background(), d)
		ok, err = waiter.TryLock(ctx)
		cancel()
		if !ok && errors.Is(err, context.DeadlineExceeded) && d < 30*time.Second {
			continue
		}
		if ok || err != nil {
			t.Fatalf("TryLock of a lock held by another = %v, %v; want false, nil", ok, err)
		}
		break
	}
}
