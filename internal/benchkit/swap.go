package benchkit

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/epochal/epochal/refs"
)

// Counter is one way to keep the counter of Swap.
type Counter interface {
	// Incr adds 1 to the counter, retrying until it takes effect.
	Incr(ctx context.Context) error
	// Retries is the number of attempts beyond the first so far.
	Retries() int64
	// Count is the count so far of what the backend counts (see Swap).
	Count(b *testing.B) int64
	// Value is the counter's value.
	Value(ctx context.Context) (int64, error)
	Close()
}

// CounterImpl is one way of keeping the counter, measured side by side
// with others.
type CounterImpl struct {
	Name string
	// Open returns a new counter under its own key, prefix or root; the
	// harness opens one per sub-benchmark.
	Open func(b *testing.B) Counter
}

// Swap measures increments of one counter, one op being one increment
// that took effect, for each implementation.
//
// Each runs with 1 (uncontended) and 16 goroutines (all on the one
// counter: contended) taking ops from a shared counter; sub-benchmarks
// are named workers=g/implementation. Each sub-benchmark has its own
// counter, set up once and reused by the benchmark's successive runs,
// closed after them. After each run the counter must have grown by
// exactly b.N.
//
// Metrics: ops/s, retries/op, p50-µs and p99-µs (the latency of one
// increment, retries included) and unit+"/op": how far the counter's
// Count moved during the timed run, divided by b.N (round-trips/op on
// Redis, writes/op on ZooKeeper).
func Swap(b *testing.B, unit string, impls []CounterImpl) {
	for _, g := range workers {
		b.Run(fmt.Sprintf("workers=%d", g), func(b *testing.B) {
			for _, im := range impls {
				var c Counter // set up by the first run, reused by the next
				b.Run(im.Name, func(b *testing.B) {
					if c == nil {
						c = im.Open(b)
					}
					increments(b, c, unit, g)
				})
				if c != nil {
					c.Close()
				}
			}
		})
	}
}

// increments runs b.N increments over g goroutines, reports the metrics
// and checks the counter.
func increments(b *testing.B, c Counter, unit string, g int) {
	ctx := context.Background()
	v0, err := c.Value(ctx)
	if err != nil {
		b.Fatal(err)
	}
	retries0, count0 := c.Retries(), c.Count(b)
	none := func(int) func() struct{} { return func() struct{} { return struct{}{} } }
	lat := run(b, g, none, func(ctx context.Context, _ struct{}) error { return c.Incr(ctx) })
	report(b, "op", lat, c.Retries()-retries0, c.Count(b)-count0, unit)
	v1, err := c.Value(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if v1-v0 != int64(b.N) {
		b.Fatalf("the counter grew by %d in %d increments", v1-v0, b.N)
	}
}

// Counter returns the atom-swap variant of Swap on e: a refs.Atom[int]
// named counter, each increment one Swap(ctx, +1); its retries are the
// calls of the swap function beyond one per Swap that returned. Closing
// the counter closes e.
func (e Epochal) Counter(b *testing.B) Counter {
	a, err := refs.NewAtom(context.Background(), e.S, "counter", 0)
	if err != nil {
		e.close()
		b.Fatal(err)
	}
	return &atomCounter{ep: e, a: a}
}

type atomCounter struct {
	ep    Epochal
	a     *refs.Atom[int]
	calls atomic.Int64 // calls of the swap function
	swaps atomic.Int64 // swaps that returned
}

func (a *atomCounter) Incr(ctx context.Context) error {
	_, err := a.a.Swap(ctx, func(v int) int { a.calls.Add(1); return v + 1 })
	if err == nil {
		a.swaps.Add(1)
	}
	return err
}

func (a *atomCounter) Retries() int64           { return a.calls.Load() - a.swaps.Load() }
func (a *atomCounter) Count(b *testing.B) int64 { return a.ep.Count(b) }

func (a *atomCounter) Value(ctx context.Context) (int64, error) {
	v, err := a.a.Deref(ctx)
	return int64(v), err
}

func (a *atomCounter) Close() { a.ep.close() }
