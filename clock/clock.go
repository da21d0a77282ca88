package clock

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Point is a transaction point drawn from the coordinator's clock.
type Point uint64

// Source returns the coordinator's current point: every commit point at or
// below it has been drawn, and the commit it belongs to is visible to readers.
type Source func(ctx context.Context) (Point, error)

// Batcher shares read-point round trips between concurrent callers.
//
// A caller never receives a point fetched by a request that started before
// the caller arrived: it waits for the next fetch, which serves every caller
// that arrived while the previous one was in flight. So a point returned to a
// caller is at least as new as the clock was when the caller asked, and
// callers are never shown the past.
type Batcher struct {
	src    Source
	direct bool

	mu       sync.Mutex
	inflight bool
	next     *round // callers waiting for the fetch after the one in flight
}

type round struct {
	done chan struct{}
	p    Point
	err  error
}

// NewBatcher returns a Batcher over src.
func NewBatcher(src Source) *Batcher { return &Batcher{src: src} }

// Direct returns a Batcher that does not batch: every ReadPoint calls src.
// For sources that cost no round trip.
func Direct(src Source) *Batcher { return &Batcher{src: src, direct: true} }

// ReadPoint returns a point at least as new as the clock was at the call.
func (b *Batcher) ReadPoint(ctx context.Context) (Point, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if b.direct {
		return b.src(ctx)
	}
	b.mu.Lock()
	if !b.inflight {
		// Nobody is fetching: fetch now, on the caller's own context.
		b.inflight = true
		b.mu.Unlock()
		p, err := b.src(ctx)
		b.finish()
		return p, err
	}
	r := b.next
	if r == nil {
		r = &round{done: make(chan struct{})}
		b.next = r
	}
	b.mu.Unlock()
	select {
	case <-r.done:
		return r.p, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// finish ends the fetch in flight and, when callers are waiting, starts the
// fetch that serves them all.
func (b *Batcher) finish() {
	b.mu.Lock()
	r := b.next
	b.next = nil
	if r == nil {
		b.inflight = false
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	go func() {
		// The waiters each hold their own ctx; the shared fetch is bounded
		// by a timeout of its own so one caller's cancellation cannot fail
		// the others.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		r.p, r.err = b.src(ctx)
		cancel()
		close(r.done)
		b.finish()
	}()
}

// Wall is the wall clock that leases are judged by.
type Wall interface {
	Now() time.Time
}

// System is the machine's wall clock.
var System Wall = systemWall{}

type systemWall struct{}

func (systemWall) Now() time.Time { return time.Now() }

// Fake is a wall clock that moves only when told, for tests of leases.
type Fake struct {
	ns atomic.Int64
}

// NewFake returns a Fake clock reading t.
func NewFake(t time.Time) *Fake {
	f := &Fake{}
	f.ns.Store(t.UnixNano())
	return f
}

// Now returns the fake time.
func (f *Fake) Now() time.Time { return time.Unix(0, f.ns.Load()) }

// Advance moves the fake time forward by d.
func (f *Fake) Advance(d time.Duration) { f.ns.Add(int64(d)) }

// Skewed is a wall clock offset from another by a fixed amount, for tests of
// clock skew between processes.
type Skewed struct {
	Base   Wall
	Offset time.Duration
}

// Now returns the base time plus the offset.
func (s Skewed) Now() time.Time { return s.Base.Now().Add(s.Offset) }
