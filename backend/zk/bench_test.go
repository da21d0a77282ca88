package zk_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
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
	"github.com/epochal/epochal/txn"
)

// xferInitial is every account's starting balance: large enough that no
// balance goes negative, so transfers need no overdraft check.
const xferInitial = 1 << 30

// BenchmarkZKTransfer measures transfers of 1 unit between two distinct
// accounts chosen at random, one op being one committed transfer, against
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
// uncontended-1000 spreads the transfers over 1000 accounts, contended-10
// over 10; each runs with 1 and 16 goroutines taking ops from a shared
// counter, all on one connection (go-zookeeper pipelines concurrent
// requests). Each variant has its own root, set up once and reused by the
// benchmark's successive runs; after each run the sum of all balances must
// be unchanged.
//
// Metrics: commits/s, retries/commit, p50-µs and p99-µs (the latency of
// one committed transfer, retries included) and writes/commit: the growth
// of the server's zxid (one per write request it applied, from the srvr
// four-letter word) during the run, divided by b.N; for epochal it
// includes the batched deletes of one-phase records, made after the timed
// run ends or during it.
func BenchmarkZKTransfer(b *testing.B) {
	srv := testserver.StartZK(b)
	if srv == nil {
		return
	}
	workloads := []struct {
		name     string
		accounts int
	}{
		{"uncontended-1000", 1000},
		{"contended-10", 10},
	}
	variants := []struct {
		name string
		open func(b *testing.B, srv *testserver.ZK, accounts int) xferBank
	}{
		{"epochal", openEpochalBank},
		{"epochal-prefetch", func(b *testing.B, srv *testserver.ZK, accounts int) xferBank {
			bank := openEpochalBank(b, srv, accounts).(*epochalBank)
			bank.prefetch = true
			return bank
		}},
		{"hand-written", openPlainBank},
	}
	for _, w := range workloads {
		b.Run(w.name, func(b *testing.B) {
			for _, g := range []int{1, 16} {
				b.Run(fmt.Sprintf("workers=%d", g), func(b *testing.B) {
					for _, v := range variants {
						var bank xferBank // set up by the first run, reused by the next
						b.Run(v.name, func(b *testing.B) {
							if bank == nil {
								bank = v.open(b, srv, w.accounts)
							}
							xferBench(b, srv, bank, w.accounts, g)
						})
						if bank != nil {
							bank.close()
						}
					}
				})
			}
		})
	}
}

// xferBank is one way to keep the accounts.
type xferBank interface {
	// transfer moves 1 from account i to account j, retrying until it
	// commits.
	transfer(ctx context.Context, i, j int) error
	retries() int64
	total(ctx context.Context) (int64, error)
	close()
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

// xferBench runs b.N transfers over g goroutines, each with its own random
// source, checks the total and reports the metrics.
func xferBench(b *testing.B, srv *testserver.ZK, bank xferBank, accounts, g int) {
	ctx := context.Background()
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	retries0, z0 := bank.retries(), zxid(b, srv)
	b.ResetTimer()
	for w := range g {
		r := rand.New(rand.NewPCG(uint64(w), 0x5eed))
		wg.Go(func() {
			for {
				k := next.Add(1)
				if k > int64(b.N) || failed.Load() != nil {
					return
				}
				i := r.IntN(accounts)
				j := r.IntN(accounts - 1)
				if j >= i {
					j++
				}
				start := time.Now()
				if err := bank.transfer(ctx, i, j); err != nil {
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
	retries, writes := bank.retries()-retries0, zxid(b, srv)-z0
	slices.Sort(lat)
	pct := func(p float64) float64 {
		k := int(p*float64(len(lat))+0.999999) - 1
		k = max(0, min(k, len(lat)-1))
		return float64(lat[k]) / float64(time.Microsecond)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
	b.ReportMetric(float64(retries)/float64(b.N), "retries/commit")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(writes)/float64(b.N), "writes/commit")
	total, err := bank.total(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if want := int64(accounts) * xferInitial; total != want {
		b.Fatalf("total %d after %d transfers, want %d", total, b.N, want)
	}
}

// epochalBank: refs on the ZooKeeper backend.
type epochalBank struct {
	be       *zk.Backend
	s        *stm.STM
	accts    []*refs.Ref[int]
	prefetch bool
}

func openEpochalBank(b *testing.B, srv *testserver.ZK, accounts int) xferBank {
	ctx := context.Background()
	be, err := zk.Open(ctx, zk.Config{Servers: srv.Servers, Root: newRoot("xfer-epochal")})
	if err != nil {
		b.Fatal(err)
	}
	s, err := stm.Open(ctx, be)
	if err != nil {
		_ = be.Close()
		b.Fatal(err)
	}
	bank := &epochalBank{be: be, s: s, accts: make([]*refs.Ref[int], accounts)}
	var wg sync.WaitGroup
	errs := make([]error, accounts)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < accounts; i += 16 {
				bank.accts[i], errs[i] = refs.New(ctx, s, fmt.Sprintf("acct/%04d", i), xferInitial)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		bank.close()
		b.Fatal(err)
	}
	return bank
}

func xferMinus(v int) int { return v - 1 }
func xferPlus(v int) int  { return v + 1 }

func (e *epochalBank) transfer(ctx context.Context, i, j int) error {
	from, to := e.accts[i], e.accts[j]
	return e.s.Dosync(ctx, func(tx *txn.Tx) error {
		if e.prefetch {
			refs.Prefetch(tx, from, to)
		}
		from.Alter(tx, xferMinus)
		to.Alter(tx, xferPlus)
		return nil
	})
}

func (e *epochalBank) retries() int64 { return e.s.Stats().Retries }

func (e *epochalBank) total(ctx context.Context) (int64, error) {
	var sum int64
	err := e.s.Dosync(ctx, func(tx *txn.Tx) error {
		sum = 0
		for _, a := range e.accts {
			sum += int64(a.Get(tx))
		}
		return nil
	})
	return sum, err
}

func (e *epochalBank) close() {
	_ = e.s.Close()
	_ = e.be.Close()
}

// plainBank: one znode per account holding a decimal string.
type plainBank struct {
	c     *gozk.Conn
	paths []string
	nretr atomic.Int64
}

func openPlainBank(b *testing.B, srv *testserver.ZK, accounts int) xferBank {
	c, ev, err := gozk.Connect(srv.Servers, 10*time.Second, gozk.WithLogInfo(false), gozk.WithLogger(discard{}))
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for range ev {
		}
	}()
	root := newRoot("xfer-plain")
	if _, err := c.Create(root, nil, 0, gozk.WorldACL(gozk.PermAll)); err != nil {
		c.Close()
		b.Fatal(err)
	}
	p := &plainBank{c: c, paths: make([]string, accounts)}
	var wg sync.WaitGroup
	errs := make([]error, accounts)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < accounts; i += 16 {
				p.paths[i] = fmt.Sprintf("%s/acct%04d", root, i)
				_, errs[i] = c.Create(p.paths[i], []byte(strconv.Itoa(xferInitial)), 0, gozk.WorldACL(gozk.PermAll))
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

type discard struct{}

func (discard) Printf(string, ...any) {}

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

func (p *plainBank) transfer(ctx context.Context, i, j int) error {
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

func (p *plainBank) retries() int64 { return p.nretr.Load() }

func (p *plainBank) total(ctx context.Context) (int64, error) {
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

func (p *plainBank) close() { p.c.Close() }
