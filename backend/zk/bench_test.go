package zk_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/internal/benchkit"
	"github.com/epochal/epochal/internal/testserver"
	"github.com/epochal/epochal/stm"
)

// BenchmarkZKTransfer measures transfers of 1 unit between two distinct
// accounts chosen at random with benchkit.Transfer (one op is one committed
// transfer; workloads uncontended-1000 and contended-10, each with 1 and 16
// goroutines; the sum of all balances checked after each run), against
// one real ZooKeeper server (started once per run of the benchmark; its
// transaction log is fsynced before each write is acknowledged, the
// default), three ways:
//
//   - epochal: s.Dosync with two refs.Ref[int], Alter on both, on the
//     ZooKeeper backend with default options (the one-Multi commit);
//   - epochal-prefetch: the same, starting with refs.Prefetch(tx, from, to)
//     (the read point, then both accounts in parallel);
//   - hand-written: read both account znodes with their versions (in
//     parallel), then one Multi of two version-checked SetData; on
//     ErrBadVersion start again. Values are decimal strings.
//
// Each variant's goroutines share one connection (go-zookeeper pipelines
// concurrent requests); each sub-benchmark has its own root.
//
// Metrics: commits/s, retries/commit, p50-µs and p99-µs (see
// benchkit.Transfer) and writes/commit: the growth of the server's zxid
// (one per write request it applied, from the srvr four-letter word)
// during the run, divided by b.N; for epochal it includes the batched
// deletes of one-phase records, made after the timed run ends or during
// it.
func BenchmarkZKTransfer(b *testing.B) {
	srv := testserver.StartZK(b)
	if srv == nil {
		return
	}
	epochal := benchkit.EpochalBanks(func(b *testing.B) benchkit.Epochal { return openEpochal(b, srv, "xfer-epochal") })
	benchkit.Transfer(b, "writes", append(epochal,
		benchkit.BankImpl{Name: "hand-written", Open: func(b *testing.B, accounts int) benchkit.Bank { return openPlainBank(b, srv, accounts) }},
	))
}

var zxidRE = regexp.MustCompile(`Zxid: (0x[0-9a-fA-F]+)`)

// zxid reads the server's newest zxid.
func zxid(b *testing.B, srv *testserver.ZK) int64 {
	out, err := srv.FourLetter(0, "srvr", 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	m := zxidRE.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("no Zxid in srvr output %q", out)
	}
	z, err := strconv.ParseInt(m[1], 0, 64)
	if err != nil {
		b.Fatal(err)
	}
	return z
}

// openEpochal opens an STM on the ZooKeeper backend, default options,
// under a new root starting with base; the harness counts the server's
// writes (zxid).
func openEpochal(b *testing.B, srv *testserver.ZK, base string) benchkit.Epochal {
	ctx := context.Background()
	be, err := zk.Open(ctx, zk.Config{Servers: srv.Servers, Root: newRoot(base)})
	if err != nil {
		b.Fatal(err)
	}
	s, err := stm.Open(ctx, be)
	if err != nil {
		_ = be.Close()
		b.Fatal(err)
	}
	return benchkit.Epochal{
		S:     s,
		Count: func(b *testing.B) int64 { return zxid(b, srv) },
		Close: func() { _ = be.Close() },
	}
}

// plainConn connects to srv with one go-zookeeper connection, logging
// nothing, and creates a new root starting with base.
func plainConn(b *testing.B, srv *testserver.ZK, base string) (*gozk.Conn, string) {
	c, ev, err := gozk.Connect(srv.Servers, 10*time.Second, gozk.WithLogInfo(false), gozk.WithLogger(discard{}))
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for range ev {
		}
	}()
	root := newRoot(base)
	if _, err := c.Create(root, nil, 0, gozk.WorldACL(gozk.PermAll)); err != nil {
		c.Close()
		b.Fatal(err)
	}
	return c, root
}

type discard struct{}

func (discard) Printf(string, ...any) {}

// plainBank: one znode per account holding a decimal string.
type plainBank struct {
	srv   *testserver.ZK
	c     *gozk.Conn
	paths []string
	nretr atomic.Int64
}

func openPlainBank(b *testing.B, srv *testserver.ZK, accounts int) *plainBank {
	c, root := plainConn(b, srv, "xfer-plain")
	p := &plainBank{srv: srv, c: c, paths: make([]string, accounts)}
	var wg sync.WaitGroup
	errs := make([]error, accounts)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < accounts; i += 16 {
				p.paths[i] = fmt.Sprintf("%s/acct%04d", root, i)
				_, errs[i] = c.Create(p.paths[i], []byte(strconv.Itoa(benchkit.Initial)), 0, gozk.WorldACL(gozk.PermAll))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		b.Fatal(err)
	}
	return p
}

// read reads both accounts in parallel.
func (p *plainBank) read(i, j int) (vi, vj int, si, sj *gozk.Stat, err error) {
	var wg sync.WaitGroup
	var di, dj []byte
	var ei, ej error
	wg.Go(func() { di, si, ei = p.c.Get(p.paths[i]) })
	dj, sj, ej = p.c.Get(p.paths[j])
	wg.Wait()
	if err := errors.Join(ei, ej); err != nil {
		return 0, 0, nil, nil, err
	}
	vi, ei = strconv.Atoi(string(di))
	vj, ej = strconv.Atoi(string(dj))
	return vi, vj, si, sj, errors.Join(ei, ej)
}

func (p *plainBank) Transfer(ctx context.Context, i, j int) error {
	for {
		vi, vj, si, sj, err := p.read(i, j)
		if err != nil {
			return err
		}
		_, err = p.c.Multi(
			&gozk.SetDataRequest{Path: p.paths[i], Data: []byte(strconv.Itoa(vi - 1)), Version: si.Version},
			&gozk.SetDataRequest{Path: p.paths[j], Data: []byte(strconv.Itoa(vj + 1)), Version: sj.Version},
		)
		if errors.Is(err, gozk.ErrBadVersion) {
			p.nretr.Add(1)
			continue
		}
		return err
	}
}

func (p *plainBank) Retries() int64           { return p.nretr.Load() }
func (p *plainBank) Count(b *testing.B) int64 { return zxid(b, p.srv) }

func (p *plainBank) Total(ctx context.Context) (int64, error) {
	var sum int64
	for _, path := range p.paths {
		d, _, err := p.c.Get(path)
		if err != nil {
			return 0, err
		}
		v, err := strconv.Atoi(string(d))
		if err != nil {
			return 0, err
		}
		sum += int64(v)
	}
	return sum, nil
}

func (p *plainBank) Close() { p.c.Close() }
