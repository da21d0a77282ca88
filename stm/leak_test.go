package stm_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
)

// TestWatchCyclesLeaveNothingBehind: a long-lived process that watches and
// unwatches refs runs in bounded memory. Every AddWatch/RemoveWatch cycle
// once left a function on the STM's close list; now the list is empty
// after each cycle, and the heap does not grow with the number of cycles.
func TestWatchCyclesLeaveNothingBehind(t *testing.T) {
	ctx := context.Background()
	s, err := stm.Open(ctx, mem.New(), stm.WithSweepInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := refs.New(ctx, s, "watched", 0)
	if err != nil {
		t.Fatal(err)
	}
	cycle := func(n int) {
		for i := 0; i < n; i++ {
			r.AddWatch("k", func(string, *refs.Ref[int], int, int) {})
			r.RemoveWatch("k")
			if c := stm.Closers(s); c != 0 {
				t.Fatalf("after %d add/remove cycles the STM holds %d close functions, want 0", i+1, c)
			}
		}
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	// settle waits for the removed watchers' goroutines to end (they end
	// after RemoveWatch returns), so that the heap holds only what stays.
	settle := func(goroutines int) {
		deadline := time.Now().Add(time.Minute)
		for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	base := runtime.NumGoroutine()
	cycle(1000) // warm up
	settle(base)
	before := heap()
	cycle(20000)
	settle(base)
	after := heap()
	// 20,000 leaked closures and their watchers would be megabytes; a
	// bounded process stays within a small margin of noise.
	if after > before+512<<10 {
		t.Fatalf("the heap grew from %d to %d bytes over 20000 watch cycles", before, after)
	}
}
