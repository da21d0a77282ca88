package benchkit

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/stm"
)

// Epochal is an STM opened on a backend for one variant of Transfer or
// Swap, with what the harness needs beside it.
type Epochal struct {
	S *stm.STM
	// Count returns the count so far of what the backend counts (see
	// Transfer): the round trips of the variant's client on Redis, the
	// server's zxid on ZooKeeper.
	Count func(b *testing.B) int64
	// Close closes what S was opened on; it is called after S.Close.
	Close func()
}

func (e Epochal) close() {
	_ = e.S.Close()
	e.Close()
}

// run does b.N ops over g goroutines, which take them from a shared
// counter until b.N are done: goroutine w draws the argument of each op
// with its own draw(w), untimed, then does do(ctx, arg), timed. The timer
// is reset at the start and stopped at the end; b fails on the first
// error. It returns the latency of every op.
func run[A any](b *testing.B, g int, draw func(w int) func() A, do func(context.Context, A) error) []time.Duration {
	ctx := context.Background()
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range g {
		arg := draw(w)
		wg.Go(func() {
			for {
				k := next.Add(1)
				if k > int64(b.N) || failed.Load() != nil {
					return
				}
				a := arg()
				start := time.Now()
				if err := do(ctx, a); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				lat[k-1] = time.Since(start)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	return lat
}

// report reports the metrics of one run of b.N ops, per naming an op
// ("commit" or "op"): per+"s/s" (b.N / elapsed), "retries/"+per,
// p50-µs and p99-µs (of lat, the latency of one op, retries included)
// and unit+"/"+per (count / b.N).
func report(b *testing.B, per string, lat []time.Duration, retries, count int64, unit string) {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		k := int(p*float64(len(lat))+0.999999) - 1
		k = max(0, min(k, len(lat)-1))
		return float64(lat[k]) / float64(time.Microsecond)
	}
	n := float64(b.N)
	b.ReportMetric(n/b.Elapsed().Seconds(), per+"s/s")
	b.ReportMetric(float64(retries)/n, "retries/"+per)
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(count)/n, unit+"/"+per)
}

// workers are the goroutine counts every Transfer and Swap workload runs
// with, as sub-benchmarks "workers=1" and "workers=16".
var workers = []int{1, 16}
