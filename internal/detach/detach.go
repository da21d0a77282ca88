// Package detach runs work that must be done whether or not its caller
// still waits: the cleanup after a call (undoing a transaction, rolling it
// forward, settling an unknown outcome, releasing a claim, removing an
// entry). The work gets a ctx of its own, bounded by a limit; the caller
// waits for it only while its own ctx lasts, so a server that stalls never
// holds a caller past its deadline.
package detach

import (
	"context"
	"time"
)

// Run runs f with a ctx that keeps ctx's values but not its end, bounded
// by limit, and waits for f while ctx lasts. It reports whether f
// returned; if ctx ended first, f goes on in the background (until it
// returns, which limit bounds), and the caller must not read what f
// writes. With a ctx that never ends, f runs on the caller's goroutine.
func Run(ctx context.Context, limit time.Duration, f func(ctx context.Context)) bool {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
	if ctx.Done() == nil {
		defer cancel()
		f(fctx)
		return true
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		f(fctx)
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		select {
		case <-done: // it has just returned
			return true
		default:
			return false
		}
	}
}
