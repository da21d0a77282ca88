package txn

import (
	"sync"
	"testing"
)

func TestGoidMatchesTheStackTrace(t *testing.T) {
	if !fastOK {
		t.Log("the fast goroutine id disagrees with the stack trace on this Go version: using the slow one")
	}
	var wg sync.WaitGroup
	ids := make(chan uint64, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := goid()
			if id != slowGoid() {
				t.Errorf("goid() = %d, stack trace says %d", id, slowGoid())
			}
			ids <- id
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[uint64]bool{}
	for id := range ids {
		if seen[id] {
			t.Fatalf("two goroutines share id %d", id)
		}
		seen[id] = true
	}
}
