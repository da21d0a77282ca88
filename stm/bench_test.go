package stm_test

import (
	"testing"

	"github.com/epochal/epochal/internal/bench"
	"github.com/epochal/epochal/internal/testkit/benchkit"
)

// BenchmarkTransfer runs the bank workload on the embedded backend
// (benchkit.Transfer: a transfer of 1 between two of 1000 or 10 accounts,
// with 1, 2 and 16 goroutines): epochal (s.Dosync, Alter both),
// epochal-commute (Commute the credit), go-stm (github.com/anacrolix/stm,
// a TVar STM for Go) and mutex (a slice of ints under one sync.Mutex).
func BenchmarkTransfer(b *testing.B) {
	benchkit.Transfer(b, bench.Target{Backend: bench.Mem}, "epochal", "epochal-commute", "go-stm", "mutex")
}

// BenchmarkSwap runs the swap workload on one counter on the embedded
// backend (benchkit.Swap): epochal (refs.Atom[int].Swap), epochal-commute
// (a Dosync with Commute(+1)), go-stm and mutex.
func BenchmarkSwap(b *testing.B) {
	benchkit.Swap(b, bench.Target{Backend: bench.Mem}, "epochal", "epochal-commute", "go-stm", "mutex")
}
