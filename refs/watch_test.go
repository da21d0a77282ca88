package refs_test

import (
	"context"
	"testing"
	"time"

	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/txn"
)

// When AddWatch gives up waiting for the watcher's first read, the watcher
// starts from the point floor AddWatch saw: no change committed after
// AddWatch returned is missed.
func TestWatchStartsNoLaterThanAddWatch(t *testing.T) {
	saved := engine.WatchStart
	engine.WatchStart = 0
	defer func() { engine.WatchStart = saved }()
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		s, done := openMem()
		r, err := refs.New(ctx, s, "x", 0)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan int, 10)
		r.AddWatch("w", func(_ string, _ *refs.Ref[int], _, new int) { got <- new },
			refs.OnGap(func(string, clock.Point, clock.Point) {}))
		for v := 1; v <= 3; v++ {
			if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, v); return nil }); err != nil {
				t.Fatal(err)
			}
		}
		// With history trimmed to the newest version, the watcher may
		// report a gap and jump, but it must reach 3.
		deadline := time.After(10 * time.Second)
		for last := 0; last != 3; {
			select {
			case last = <-got:
			case <-deadline:
				t.Fatalf("round %d: the watch never saw the last change (last %d)", i, last)
			}
		}
		r.RemoveWatch("w")
		done()
	}
}
