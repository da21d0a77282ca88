// Package benchkit holds benchmark harnesses shared by several backends'
// benchmarks, so that each backend only says how to build what is
// measured and the numbers mean the same thing everywhere.
package benchkit

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Lock is one holder of a lock: an epochal Mutex or a hand-written lock.
type Lock interface {
	Lock(ctx context.Context) error
	Unlock(ctx context.Context) error
}

// LockImpl is one way of locking, measured side by side with others.
type LockImpl struct {
	Name string
	// New returns a new holder of the lock called name (one per
	// goroutine); the harness gives each sub-benchmark its own name.
	New func(b *testing.B, name string) Lock
	// Count, if set, returns a count of something made so far by every
	// holder New returned (round trips; writes for ZooKeeper), reported
	// per op in the unit Unit ("round-trips/op").
	Count func() int64
	Unit  string
}

var lockNames atomic.Int64

// Locks runs, for each implementation:
//
//   - uncontended: one goroutine locks and unlocks one lock; an op is one
//     Lock plus one Unlock. Metrics: p50-µs and p99-µs of the pair,
//     and Count per op in its Unit (when counted).
//   - handoff-4: four goroutines, each with its own holder, take turns on
//     one lock; an op is one acquisition. Metrics: acquisitions/s and
//     handoff-p50-µs / handoff-p99-µs, the time from a holder's Unlock
//     call to the next holder's Lock returning (taken only when the lock
//     changed hands).
func Locks(b *testing.B, impls []LockImpl) {
	for _, im := range impls {
		b.Run("uncontended/"+im.Name, func(b *testing.B) { uncontended(b, im) })
	}
	for _, im := range impls {
		b.Run("handoff-4/"+im.Name, func(b *testing.B) { handoff(b, im, 4) })
	}
}

func name() string { return fmt.Sprintf("bench/lock%d", lockNames.Add(1)) }

func uncontended(b *testing.B, im LockImpl) {
	ctx := context.Background()
	l := im.New(b, name())
	// Warm up: sessions, connections, scripts.
	if err := l.Lock(ctx); err != nil {
		b.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, b.N)
	var c0 int64
	if im.Count != nil {
		c0 = im.Count()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := l.Lock(ctx); err != nil {
			b.Fatal(err)
		}
		if err := l.Unlock(ctx); err != nil {
			b.Fatal(err)
		}
		lat[i] = time.Since(t0)
	}
	b.StopTimer()
	if im.Count != nil {
		b.ReportMetric(float64(im.Count()-c0)/float64(b.N), im.Unit)
	}
	reportLatency(b, "", lat)
}

func handoff(b *testing.B, im LockImpl, g int) {
	ctx := context.Background()
	n := name()
	ls := make([]Lock, g)
	for i := range ls {
		ls[i] = im.New(b, n)
		if err := ls[i].Lock(ctx); err != nil {
			b.Fatal(err)
		}
		if err := ls[i].Unlock(ctx); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	var released atomic.Int64 // UnixNano of the last Unlock call
	var last atomic.Int64     // the goroutine that last held the lock
	last.Store(-1)
	var mu sync.Mutex
	var lat []time.Duration
	errs := make(chan error, g)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < g; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := ls[w].Lock(ctx); err != nil {
					errs <- err
					return
				}
				now := time.Now().UnixNano()
				if prev := last.Swap(int64(w)); prev != int64(w) && prev >= 0 {
					d := time.Duration(now - released.Load())
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
				released.Store(time.Now().UnixNano())
				if err := ls[w].Unlock(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "acquisitions/s")
	reportLatency(b, "handoff-", lat)
}

func reportLatency(b *testing.B, prefix string, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(q(0.50), prefix+"p50-µs")
	b.ReportMetric(q(0.99), prefix+"p99-µs")
}
