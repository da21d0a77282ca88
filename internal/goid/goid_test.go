package goid

import (
	"sync"
	"testing"
)

// TestGetIsPerGoroutine: Get agrees with the stack trace and differs
// between goroutines.
func TestGetIsPerGoroutine(t *testing.T) {
	if Get() != slow() || Get() == 0 {
		t.Fatalf("Get %d, stack trace %d", Get(), slow())
	}
	const n = 8
	ids := make([]uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ids[i] = Get()
			if ids[i] != slow() {
				t.Errorf("goroutine %d: Get %d, stack trace %d", i, ids[i], slow())
			}
		})
	}
	wg.Wait()
	seen := map[uint64]bool{Get(): true}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("id %d of two goroutines", id)
		}
		seen[id] = true
	}
}
