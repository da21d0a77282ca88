package backendtest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
)

// wait bounds every wait on another goroutine or on a hint in this suite. A
// wait that runs out fails the test; it never stands in for
// synchronisation.
const wait = 10 * time.Second

var names atomic.Int64

// uniq returns a ref name no other test of this run uses, so a server
// backend can be shared between tests.
func uniq(base string) string {
	return fmt.Sprintf("t%d/%s", names.Add(1), base)
}

func tctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// open opens an STM on drv closed at cleanup. The background sweep is off:
// tests that want recovery call Recover.
func open(t testing.TB, drv backend.Driver, opts ...stm.Option) *stm.STM {
	t.Helper()
	opts = append([]stm.Option{stm.WithSweepInterval(0)}, opts...)
	s, err := stm.Open(tctx(t), drv, opts...)
	if err != nil {
		t.Fatalf("stm.Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newRef[T any](t testing.TB, s *stm.STM, name string, v T, opts ...refs.Option) *refs.Ref[T] {
	t.Helper()
	r, err := refs.New(tctx(t), s, name, v, opts...)
	if err != nil {
		t.Fatalf("refs.New(%q): %v", name, err)
	}
	return r
}

func deref[T any](t testing.TB, r *refs.Ref[T]) T {
	t.Helper()
	v, err := r.Deref(tctx(t))
	if err != nil {
		t.Fatalf("Deref(%s): %v", r.Name(), err)
	}
	return v
}

// paths are the two commit paths every invariant is checked on.
var paths = []struct {
	name string
	opts []stm.Option
}{
	{"fastpath", nil},
	{"general", []stm.Option{engine.WithGeneralPath()}},
}

// fakeClock returns a fake wall clock starting now.
func fakeClock() *clock.Fake { return clock.NewFake(time.Now()) }

// recv waits for a value on ch, failing the test after the suite's bound.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("no %s within %v", what, wait)
		var zero T
		return zero
	}
}
