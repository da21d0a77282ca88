package clock_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/clock"
)

// A source that blocks each fetch until released, counting fetches, and
// returns the value of the counter at the moment the fetch started.
type gatedSource struct {
	counter atomic.Uint64
	fetches atomic.Int64
	started chan struct{}
	release chan struct{}
}

func (g *gatedSource) fetch(ctx context.Context) (clock.Point, error) {
	p := clock.Point(g.counter.Load())
	g.fetches.Add(1)
	g.started <- struct{}{}
	select {
	case <-g.release:
		return p, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func TestBatcherSharesOneFetchAndNeverShowsThePast(t *testing.T) {
	g := &gatedSource{started: make(chan struct{}, 10), release: make(chan struct{})}
	b := clock.NewBatcher(g.fetch)
	ctx := context.Background()

	first := make(chan clock.Point, 1)
	go func() { p, _ := b.ReadPoint(ctx); first <- p }()
	<-g.started // the first fetch is in flight, it saw counter 0

	// A commit happens; callers arriving now must not get the old fetch.
	g.counter.Store(7)
	const waiters = 5
	var wg sync.WaitGroup
	got := make(chan clock.Point, waiters)
	for i := 0; i < waiters; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := b.ReadPoint(ctx)
			if err != nil {
				t.Error(err)
			}
			got <- p
		}()
	}
	g.release <- struct{}{} // end the first fetch
	if p := <-first; p != 0 {
		t.Fatalf("first caller got %d, want 0", p)
	}
	// Later fetches (one shared by every waiter that queued behind the
	// first, plus any for waiters that arrived after it ended) all start
	// after the commit.
	go func() {
		for range g.started {
		}
	}()
	close(g.release)
	wg.Wait()
	close(got)
	close(g.started)
	for p := range got {
		if p != 7 {
			t.Fatalf("a caller that arrived after the commit got point %d, want 7", p)
		}
	}
}

func TestBatcherHonoursContext(t *testing.T) {
	block := make(chan struct{})
	b := clock.NewBatcher(func(ctx context.Context) (clock.Point, error) {
		select {
		case <-block:
			return 1, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.ReadPoint(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadPoint with a done ctx: %v", err)
	}
	close(block)
	if p, err := b.ReadPoint(context.Background()); err != nil || p != 1 {
		t.Fatalf("ReadPoint = %d, %v", p, err)
	}
}

func TestFakeAndSkewed(t *testing.T) {
	t0 := time.Unix(1000, 0)
	f := clock.NewFake(t0)
	f.Advance(time.Minute)
	if !f.Now().Equal(t0.Add(time.Minute)) {
		t.Fatalf("Fake.Now = %v", f.Now())
	}
	s := clock.Skewed{Base: f, Offset: -time.Second}
	if !s.Now().Equal(t0.Add(time.Minute - time.Second)) {
		t.Fatalf("Skewed.Now = %v", s.Now())
	}
}
