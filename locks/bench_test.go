package locks_test

import (
	"testing"

	"github.com/epochal/epochal/internal/bench"
	"github.com/epochal/epochal/internal/testkit/benchkit"
)

// BenchmarkMemLock runs the lock workload on one lock (benchkit.Locks:
// uncontended, and handed off between four goroutines) on the embedded
// backend: epochal (locks.Mutex, 10 s lease), go-stm (a stm.Var[bool] of
// github.com/anacrolix/stm taken with Retry) and mutex (a sync.Mutex: the
// floor, what one process needs without leases, tokens or a queue).
func BenchmarkMemLock(b *testing.B) {
	benchkit.Locks(b, bench.Target{Backend: bench.Mem}, "epochal", "go-stm", "mutex")
}
