package zk_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/internal/benchkit"
	"github.com/epochal/epochal/internal/testserver"
)

// BenchmarkZKSwap measures increments of one counter with benchkit.Swap
// (one op is one increment that took effect; 1 goroutine, uncontended, and
// 16 on the one counter, contended; the counter must have grown by exactly
// b.N after each run), against one real ZooKeeper server (its log fsynced
// before each write is acknowledged, the default), two ways:
//
//   - atom-swap: refs.Atom[int].Swap(ctx, +1) on the ZooKeeper backend
//     with default options: each attempt one compare-and-set (the
//     one-phase Multi) from the newest version the handle knows, a read
//     of the atom only after a failed attempt;
//   - hand-written: Get the counter znode with its version, then SetData
//     with that version; on ErrBadVersion start again. Values are decimal
//     strings.
//
// Each variant's goroutines share one connection; each sub-benchmark has
// its own root.
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
	benchkit.Swap(b, "writes", []benchkit.CounterImpl{
		{Name: "atom-swap", Open: func(b *testing.B) benchkit.Counter {
			return openEpochal(b, srv, "swap-atom").Counter(b)
		}},
		{Name: "hand-written", Open: func(b *testing.B) benchkit.Counter { return openPlainCounter(b, srv) }},
	})
}

// plainCounter: one znode holding a decimal string, incremented by Get
// and a version-checked SetData.
type plainCounter struct {
	srv   *testserver.ZK
	c     *gozk.Conn
	path  string
	nretr atomic.Int64
}

func openPlainCounter(b *testing.B, srv *testserver.ZK) *plainCounter {
	c, root := plainConn(b, srv, "swap-plain")
	p := &plainCounter{srv: srv, c: c, path: root + "/counter"}
	if _, err := c.Create(p.path, []byte("0"), 0, gozk.WorldACL(gozk.PermAll)); err != nil {
		c.Close()
		b.Fatal(err)
	}
	return p
}

func (p *plainCounter) Incr(ctx context.Context) error {
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

func (p *plainCounter) Retries() int64           { return p.nretr.Load() }
func (p *plainCounter) Count(b *testing.B) int64 { return zxid(b, p.srv) }

func (p *plainCounter) Value(ctx context.Context) (int64, error) {
	d, _, err := p.c.Get(p.path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(string(d))
	return int64(v), err
}

func (p *plainCounter) Close() { p.c.Close() }
