package mem_test

import (
	"context"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// A watcher stuck in its callback while more versions commit than the
// feed buffers (backend.FeedLimit), with history keeping only the newest, misses some:
// it is told so by a gap notice, and resumes with the newest value.
func TestWatchFeedOverflowIsAnnouncedGap(t *testing.T) {
	ctx := context.Background()
	b := mem.New()
	defer b.Close()
	s, err := stm.Open(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := refs.New(ctx, s, "x", 0)
	if err != nil {
		t.Fatal(err)
	}
	const last = backend.FeedLimit + 100
	release := make(chan struct{})
	calls := make(chan [2]int, last)
	gaps := make(chan [2]clock.Point, last)
	r.AddWatch("slow", func(_ string, _ *refs.Ref[int], old, new int) {
		calls <- [2]int{old, new}
		if new == 1 {
			<-release
		}
	}, refs.OnGap(func(_ string, from, to clock.Point) { gaps <- [2]clock.Point{from, to} }))
	defer r.RemoveWatch("slow")
	set := func(v int) {
		if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, v); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	set(1)
	timeout := time.After(10 * time.Second)
	select {
	case <-calls: // the watcher is now stuck in the call for 1
	case <-timeout:
		t.Fatal("no first watch call")
	}
	for v := 2; v <= last; v++ {
		set(v)
	}
	close(release)
	for prev := 1; prev != last; {
		select {
		case c := <-calls:
			prev = c[1]
		case <-timeout:
			t.Fatal("the watcher never reached the last value")
		}
	}
	select {
	case g := <-gaps:
		if g[0] < 1 || g[1] <= g[0]+1 {
			t.Fatalf("gap %v, want one that skips versions after the stuck call", g)
		}
	default:
		t.Fatal("no gap notice after the feed overflowed and history was trimmed")
	}
}
