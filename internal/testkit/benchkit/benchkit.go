// Package benchkit runs internal/bench's workloads and implementations as
// `go test -bench` benchmarks: b.N ops per sub-benchmark instead of a
// time per cell, with the same peers, the same checks and the same
// numbers `epochal bench` reports. Each backend's benchmarks only say
// where the server is (a bench.Target) and which implementations to run.
package benchkit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/internal/bench"
)

// workers returns the goroutine counts of Transfer and Swap on t, as
// sub-benchmarks "workers=g": 1 and 16, and on mem also 2 (one per core
// of a small machine, where an in-process peer is fastest).
func workers(t bench.Target) []int {
	if t.Backend == bench.Mem {
		return []int{1, 2, 16}
	}
	return []int{1, 16}
}

// Transfer measures the bank workload (a transfer of 1 between two
// distinct accounts chosen at random, with an overdraft check; see
// internal/bench), one op being one committed transfer, for each named
// implementation.
//
// uncontended-1000 spreads the transfers over 1000 accounts, contended-10
// over 10; each runs with 1 and 16 goroutines (on mem also 2) taking ops from a shared
// counter, each with its own random source. Sub-benchmarks are named
// workload/workers=g/implementation. Each has its own accounts, set up
// once and reused by the benchmark's successive runs, closed after them;
// after each run the sum of all balances must be unchanged.
//
// Metrics: commits/s (b.N / elapsed), retries/commit, p50-µs and p99-µs
// (the latency of one committed transfer, retries included) and, where
// the implementation counts them, unit/commit: round-trips/commit on
// Redis, writes/commit on ZooKeeper.
func Transfer(b *testing.B, t bench.Target, impls ...string) {
	for _, w := range []struct {
		name     string
		accounts int
	}{{"uncontended-1000", 1000}, {"contended-10", 10}} {
		b.Run(w.name, func(b *testing.B) {
			for _, g := range workers(t) {
				b.Run(fmt.Sprintf("workers=%d", g), func(b *testing.B) {
					for _, name := range impls {
						cell(b, t, bench.Bank, name, w.accounts, g, "commit")
					}
				})
			}
		})
	}
}

// Swap measures increments of one counter (the swap workload with one
// counter), one op being one increment that took effect, with 1
// goroutine (uncontended) and 16 (contended; on mem also 2), sub-benchmarks named
// workers=g/implementation. After each run the counter must have grown
// by exactly b.N. Metrics as Transfer's, per op.
func Swap(b *testing.B, t bench.Target, impls ...string) {
	for _, g := range workers(t) {
		b.Run(fmt.Sprintf("workers=%d", g), func(b *testing.B) {
			for _, name := range impls {
				cell(b, t, bench.Swap, name, 1, g, "op")
			}
		})
	}
}

// Locks measures one lock (the lock workload with one lock), an op being
// one Lock plus one Unlock by one worker: uncontended/implementation
// with one goroutine, handoff-4/implementation with four taking turns,
// each with its own holder. Metrics as Transfer's, per op.
func Locks(b *testing.B, t bench.Target, impls ...string) {
	for _, name := range impls {
		b.Run("uncontended/"+name, func(b *testing.B) { lockCell(b, t, name, 1) })
	}
	for _, name := range impls {
		b.Run("handoff-4/"+name, func(b *testing.B) { lockCell(b, t, name, 4) })
	}
}

func lookup(b *testing.B, name string) bench.Impl {
	im, ok := bench.Lookup(name)
	if !ok {
		b.Fatalf("no implementation %q", name)
	}
	return im
}

// cell runs the sub-benchmark of one implementation: its state opened by
// the first run and reused by the next, closed after them.
func cell(b *testing.B, t bench.Target, workload, name string, accounts, g int, per string) {
	im := lookup(b, name)
	var st *bench.State
	b.Run(name, func(b *testing.B) {
		if st == nil {
			var err error
			if st, err = bench.Open(context.Background(), t, bench.Spec{Workload: workload, Impl: im, Workers: g, Accounts: accounts}); err != nil {
				b.Fatal(err)
			}
		}
		runOps(b, st, g, per, im.Unit[t.Backend])
	})
	if st != nil {
		st.Close()
	}
}

func lockCell(b *testing.B, t bench.Target, name string, g int) {
	im := lookup(b, name)
	st, err := bench.Open(context.Background(), t, bench.Spec{Workload: bench.Lock, Impl: im, Workers: g, Accounts: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	runOps(b, st, g, "op", im.Unit[t.Backend])
}

// errDeclined: the bank's balances start high enough that no transfer is
// declined; one that is means the state is not what the run assumes.
var errDeclined = errors.New("a transfer was declined: the balances start too low")

// runOps does b.N ops on st over g goroutines, which take them from a
// shared counter until b.N are done, reports the metrics and checks st.
func runOps(b *testing.B, st *bench.State, g int, per, unit string) {
	ctx := context.Background()
	retries0 := st.Retries()
	count0, counted := st.Count()
	lats := make([][]time.Duration, g) // each worker's, kept apart
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range g {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 0x5eed))
			lat := make([]time.Duration, 0, b.N/g+1)
			defer func() { lats[w] = lat }()
			for next.Add(1) <= int64(b.N) && failed.Load() == nil {
				start := time.Now()
				declined, err := st.Op(ctx, w, r)
				if err == nil && declined {
					err = errDeclined
				}
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				lat = append(lat, time.Since(start))
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	lat := slices.Concat(lats...)
	slices.Sort(lat)
	n := float64(b.N)
	pct := func(p float64) float64 {
		k := int(p*float64(len(lat))+0.999999) - 1
		k = max(0, min(k, len(lat)-1))
		return float64(lat[k]) / float64(time.Microsecond)
	}
	b.ReportMetric(n/b.Elapsed().Seconds(), per+"s/s")
	b.ReportMetric(float64(st.Retries()-retries0)/n, "retries/"+per)
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	if c, ok := st.Count(); ok && counted && unit != "" {
		b.ReportMetric(float64(c-count0)/n, unit+"/"+per)
	}
	if err := st.Check(ctx); err != nil {
		b.Fatal(err)
	}
}
