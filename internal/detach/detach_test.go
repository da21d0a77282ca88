package detach

import (
	"context"
	"testing"
	"time"
)

// TestRunWaitsWhileCtxLasts: f that returns is waited for; f that outlives
// the caller's ctx is left to finish on a ctx of its own, which the
// caller's end does not end, and which ends at the limit.
func TestRunWaitsWhileCtxLasts(t *testing.T) {
	if !Run(context.Background(), time.Second, func(context.Context) {}) {
		t.Fatal("f returned, but Run says it did not")
	}
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	fctxErr := make(chan error, 1)
	started := make(chan struct{})
	go func() { <-started; cancel() }()
	if Run(ctx, time.Minute, func(fctx context.Context) {
		close(started)
		<-release
		fctxErr <- fctx.Err()
	}) {
		t.Fatal("f was still running, but Run says it returned")
	}
	close(release)
	if err := <-fctxErr; err != nil {
		t.Fatalf("the caller's ctx ending ended f's: %v", err)
	}
	limited := make(chan error, 1)
	Run(context.Background(), time.Millisecond, func(fctx context.Context) {
		<-fctx.Done()
		limited <- fctx.Err()
	})
	if err := <-limited; err != context.DeadlineExceeded {
		t.Fatalf("f's ctx ended with %v, want the limit's context.DeadlineExceeded", err)
	}
}
