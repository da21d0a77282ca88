package zk_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/internal/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
)

// BenchmarkZKSwap measures increments of one counter, one op being one
// increment that took effect, against one real ZooKeeper server (its log
// fsynced before each write is acknowledged, the default), two ways:
//
//   - atom-swap: refs.Atom[int].Swap(ctx, +1) on the ZooKeeper backend
//     with default options: each attempt one compare-and-set (the
//     one-phase Multi) from the newest version the handle knows, a read
//     of the atom only after a failed attempt;
//   - hand-written: Get the counter znode with its version, then SetData
//     with that version; on ErrBadVersion start again. Values are decimal
//     strings.
//
// Each runs with 1 (uncontended) and 16 goroutines (all on the one
// counter: contended), all on one connection; each variant has its own
// root, set up once and reused by the benchmark's successive runs. After
// each run the counter must have grown by exactly b.N.
//
// Metrics: ops/s, retries/op (attempts beyond the first: for atom-swap
// the extra calls of the swap function), p50-µs and p99-µs (the latency
// of one increment, retries included) and writes/op: the growth of the
// server's zxid during the run (see BenchmarkZKTransfer) divided by b.N;
// for atom-swap it includes the batched deletes of one-phase records
// made during the run.
func BenchmarkZKSwap(b *testing.B) {
	srv := testserver.StartZK(b)
	if srv == nil {
		return
	}
	variants := []struct {
		name string
		open func(b *testing.B, srv *testserver.ZK) swapCounter
	}{
		{"atom-swap", openSwapAtom},
		{"hand-written", openPlainCounter},
	}
	for _, g := range []int{1, 16} {
		b.Run(fmt.Sprintf("workers=%d", g), func(b *testing.B) {
			for _, v := range variants {
				var c swapCounter // set up by the first run, reused by the next
				b.Run(v.name, func(b *testing.B) {
					if c == nil {
						c = v.open(b, srv)
					}
					swapBench(b, srv, c, g)
				})
				if c != nil {
					c.close()
				}
			}
		})
	}
}

// swapCounter is one way to keep the counter.
type swapCounter interface {
	incr(ctx context.Context) error
	retries() int64
	value(ctx context.Context) (int64, error)
	close()
}

func swapBench(b *testing.B, srv *testserver.ZK, c swapCounter, g int) {
	ctx := context.Background()
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	v0, err := c.value(ctx)
	if err != nil {
		b.Fatal(err)
	}
	retries0, z0 := c.retries(), zxid(b, srv)
	b.ResetTimer()
	for range g {
		wg.Go(func() {
			for {
				k := next.Add(1)
				if k > int64(b.N) || failed.Load() != nil {
					return
				}
				start := time.Now()
				if err := c.incr(ctx); err != nil {
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
	retries, writes := c.retries()-retries0, zxid(b, srv)-z0
	slices.Sort(lat)
	pct := func(p float64) float64 {
		k := int(p*float64(len(lat))+0.999999) - 1
		k = max(0, min(k, len(lat)-1))
		return float64(lat[k]) / float64(time.Microsecond)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(float64(retries)/float64(b.N), "retries/op")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
	v1, err := c.value(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if v1-v0 != int64(b.N) {
		b.Fatalf("the counter grew by %d in %d increments", v1-v0, b.N)
	}
}

// swapAtom: a refs.Atom[int] on the ZooKeeper backend.
type swapAtom struct {
	be    *zk.Backend
	s     *stm.STM
	a     *refs.Atom[int]
	calls atomic.Int64 // calls of the swap function
	swaps atomic.Int64 // swaps that returned
}

func openSwapAtom(b *testing.B, srv *testserver.ZK) swapCounter {
	ctx := context.Background()
	be, err := zk.Open(ctx, zk.Config{Servers: srv.Servers, Root: newRoot("swap-atom")})
	if err != nil {
		b.Fatal(err)
	}
	s, err := stm.Open(ctx, be)
	if err != nil {
		_ = be.Close()
		b.Fatal(err)
	}
	a, err := refs.NewAtom(ctx, s, "counter", 0)
	if err != nil {
		_ = s.Close()
		_ = be.Close()
		b.Fatal(err)
	}
	return &swapAtom{be: be, s: s, a: a}
}

func (a *swapAtom) incr(ctx context.Context) error {
	_, err := a.a.Swap(ctx, func(v int) int { a.calls.Add(1); return v + 1 })
	if err == nil {
		a.swaps.Add(1)
	}
	return err
}

func (a *swapAtom) retries() int64 { return a.calls.Load() - a.swaps.Load() }

func (a *swapAtom) value(ctx context.Context) (int64, error) {
	v, err := a.a.Deref(ctx)
	return int64(v), err
}

func (a *swapAtom) close() {
	_ = a.s.Close()
	_ = a.be.Close()
}

// plainCounter: one znode holding a decimal string, incremented by Get
// and a version-checked SetData.
type plainCounter struct {
	c     *gozk.Conn
	path  string
	nretr atomic.Int64
}

func openPlainCounter(b *testing.B, srv *testserver.ZK) swapCounter {
	c, ev, err := gozk.Connect(srv.Servers, 10*time.Second, gozk.WithLogInfo(false), gozk.WithLogger(discard{}))
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for range ev {
		}
	}()
	root := newRoot("swap-plain")
	if _, err := c.Create(root, nil, 0, gozk.WorldACL(gozk.PermAll)); err != nil {
		c.Close()
		b.Fatal(err)
	}
	p := &plainCounter{c: c, path: root + "/counter"}
	if _, err := c.Create(p.path, []byte("0"), 0, gozk.WorldACL(gozk.PermAll)); err != nil {
		c.Close()
		b.Fatal(err)
	}
	return p
}

func (p *plainCounter) incr(ctx context.Context) error {
	for {
		d, st, err := p.c.Get(p.path)
		if err != nil {
			return err
		}
		v, err := strconv.Atoi(string(d))
		if err != nil {
			return err
		}
		_, err = p.c.Set(p.path, []byte(strconv.Itoa(v+1)), st.Version)
		if errors.Is(err, gozk.ErrBadVersion) {
			p.nretr.Add(1)
			continue
		}
		return err
	}
}

func (p *plainCounter) retries() int64 { return p.nretr.Load() }

func (p *plainCounter) value(ctx context.Context) (int64, error) {
	d, _, err := p.c.Get(p.path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(string(d))
	return int64(v), err
}

func (p *plainCounter) close() { p.c.Close() }
