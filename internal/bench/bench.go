// Package bench measures Epochal beside the code it replaces: the same
// workload done by Epochal and by hand-written peers (a go-redis
// WATCH/MULTI loop, one EVALSHA, a ZooKeeper Multi, a global mutex,
// github.com/anacrolix/stm), in one process, cell by cell, with the same
// workers and the same random choices.
//
// It is the one implementation of each peer: `epochal bench` runs it for
// a time per cell (Run), and the `go test -bench` benchmarks of the
// backends run the same banks, counters and locks for b.N ops
// (internal/benchkit).
//
// Workloads:
//
//   - bank: a transfer of 1 between two distinct accounts chosen at
//     random: read the source, decline when it holds less than 1 (an
//     overdraft check that the starting balances keep from firing),
//     debit it, credit the destination. One op is one committed transfer.
//     After the cell, the sum of all balances must be unchanged.
//   - swap: add 1 to a counter chosen at random. After the cell, the
//     counters together must have grown by exactly the ops done.
//   - lock: lock a lock chosen at random, check that no other holder of
//     this process is inside, unlock. Each worker has its own holder of
//     each lock.
//
// "accounts" is the number of accounts, counters or locks the workers
// choose from: few of them is contention.
package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Workloads.
const (
	Bank = "bank"
	Swap = "swap"
	Lock = "lock"
)

// Workloads lists every workload.
var Workloads = []string{Bank, Swap, Lock}

// Backends.
const (
	Mem   = "mem"
	Redis = "redis"
	ZK    = "zk"
)

// Initial is every account's starting balance in the bank workload: large
// enough that no balance reaches 0 in any run, so the overdraft check
// never declines.
const Initial = 1 << 30

// Target says where the cells run: the backend, and the server to reach
// (none for mem).
type Target struct {
	Backend string
	// Redis: the server's address, credentials and TLS settings (nil:
	// plaintext).
	RedisAddr                string
	RedisUser, RedisPassword string
	RedisTLS                 *tls.Config
	// ZooKeeper: the servers' host:port.
	ZKServers []string
	// ZKWrites, if not nil, returns the ZooKeeper server's newest zxid (a
	// count of the write requests it applied): the cells report writes
	// per op from it. Nil: not counted.
	ZKWrites func() (int64, error)
	// Prefix starts every key prefix and root the cells create (each cell
	// adds its own), so that runs against one server do not meet. Keys
	// are left behind.
	Prefix string
}

var cellSeq atomic.Int64

// space returns a new key prefix (Redis) or root name part, unique in the
// process and under t.Prefix.
func (t Target) space(impl string) string {
	p := t.Prefix
	if p == "" {
		p = "epochal-bench"
	}
	return fmt.Sprintf("%s-%d-%s-%d", p, time.Now().UnixNano()%1e9, impl, cellSeq.Add(1))
}

// Meter is what every implementation under measure reports beside its
// ops.
type Meter interface {
	// Retries is the number of attempts beyond the first, so far.
	Retries() int64
	// Count is the count so far of what the backend lets us count, in
	// the unit the implementation's Unit names ("round-trips" on Redis,
	// "writes" on ZooKeeper); ok is false when it is not counted.
	Count() (n int64, ok bool)
	Close()
}

// Accounts is the bank workload's state, kept one way.
type Accounts interface {
	Meter
	// Transfer moves 1 from account i to account j, retrying until it
	// commits or declines (the source holds less than 1).
	Transfer(ctx context.Context, i, j int) (declined bool, err error)
	// Total is the sum of all balances.
	Total(ctx context.Context) (int64, error)
}

// Counters is the swap workload's state.
type Counters interface {
	Meter
	// Incr adds 1 to counter i, retrying until it takes effect.
	Incr(ctx context.Context, i int) error
	// Sum is the sum of all counters.
	Sum(ctx context.Context) (int64, error)
}

// Locks is the lock workload's state.
type Locks interface {
	Meter
	// Lock takes lock i for worker w (each worker has its own holder of
	// each lock); Unlock releases it.
	Lock(ctx context.Context, w, i int) error
	Unlock(ctx context.Context, w, i int) error
}

// Impl is one implementation of one or more workloads.
type Impl struct {
	Name string
	// Doc says in one line what it does.
	Doc string
	// Backends it runs on.
	Backends []string
	// Unit names what Meter.Count counts, per backend.
	Unit map[string]string
	// Opens per workload; nil where it does not implement the workload.
	Bank  func(ctx context.Context, t Target, accounts int) (Accounts, error)
	Swap  func(ctx context.Context, t Target, counters int) (Counters, error)
	Locks func(ctx context.Context, t Target, locks, workers int) (Locks, error)
	// Epochal marks Epochal's own variants; the others are peers.
	Epochal bool
	// Optional ones run only when named.
	Optional bool
}

// Runs reports whether im implements workload on backend.
func (im Impl) Runs(workload, backend string) bool {
	if !slices.Contains(im.Backends, backend) {
		return false
	}
	switch workload {
	case Bank:
		return im.Bank != nil
	case Swap:
		return im.Swap != nil
	case Lock:
		return im.Locks != nil
	}
	return false
}

// Impls lists every implementation, Epochal's first.
func Impls() []Impl {
	return slices.Clone(impls)
}

// Lookup returns the implementation called name.
func Lookup(name string) (Impl, bool) {
	for _, im := range impls {
		if im.Name == name {
			return im, true
		}
	}
	return Impl{}, false
}

// Defaults returns the names of the implementations run for workload on
// backend when none are named: every one that runs there, Epochal's
// first, then the peers in the order their ratios are taken to (the
// first peer is the one each cell's ratio is to).
func Defaults(workload, backend string) []string {
	var names []string
	for _, im := range impls {
		if im.Runs(workload, backend) && !im.Optional {
			names = append(names, im.Name)
		}
	}
	return names
}

// Cell is the result of one implementation in one regime.
type Cell struct {
	Workload string `json:"workload"`
	Backend  string `json:"backend"`
	Impl     string `json:"impl"`
	Workers  int    `json:"workers"`
	Accounts int    `json:"accounts"`
	// Seconds is the measured time; Ops the ops done in it (transfers
	// committed, increments, lock-unlock pairs); Declined the transfers
	// that found too little (read-only).
	Seconds  float64 `json:"seconds"`
	Ops      int64   `json:"ops"`
	Declined int64   `json:"declined,omitempty"`
	PerSec   float64 `json:"ops_per_sec"`
	// RetriesPerOp is the attempts beyond the first per op.
	RetriesPerOp float64 `json:"retries_per_op"`
	// P50Micros, P99Micros: the latency of one op, retries included.
	P50Micros float64 `json:"p50_us"`
	P99Micros float64 `json:"p99_us"`
	// CountPerOp is Meter.Count's growth per op, in Unit; absent when
	// not counted.
	CountPerOp *float64 `json:"count_per_op,omitempty"`
	Unit       string   `json:"unit,omitempty"`
	// Ratio is PerSec over the first peer's in the same regime (0: no
	// peer ran).
	Ratio   float64 `json:"ratio,omitempty"`
	RatioTo string  `json:"ratio_to,omitempty"`
	// Error says why the cell failed: an op's error, or a check that did
	// not hold (a bank total changed, a counter lost an increment, two
	// holders inside one lock).
	Error string `json:"error,omitempty"`
}

// Spec is one cell to run.
type Spec struct {
	Workload string
	Impl     Impl
	Workers  int
	Accounts int
	// Time is how long the ops run.
	Time time.Duration
	// Seed makes the workers' random choices (worker w draws from
	// seed+w).
	Seed uint64
}

// State is a cell's state, opened and ready for ops.
type State struct {
	Meter
	// Op does one op for worker w (each worker calls it from one
	// goroutine, with its own random source): a transfer, an increment,
	// a lock-unlock pair. declined is true for a transfer that found too
	// little.
	Op func(ctx context.Context, w int, r *rand.Rand) (declined bool, err error)
	// Check checks the state after ops ops: the bank total, the
	// counters' sum, mutual exclusion.
	Check func(ctx context.Context, ops int64) error
}

// Open opens the state of s's workload with s's implementation on t, for
// s.Workers workers and s.Accounts accounts (counters, locks).
func Open(ctx context.Context, t Target, s Spec) (*State, error) {
	if !s.Impl.Runs(s.Workload, t.Backend) {
		return nil, fmt.Errorf("%s does not run %s on %s", s.Impl.Name, s.Workload, t.Backend)
	}
	if s.Workers < 1 || s.Accounts < 1 || (s.Workload == Bank && s.Accounts < 2) {
		return nil, fmt.Errorf("bad cell: %d workers, %d accounts", s.Workers, s.Accounts)
	}
	switch s.Workload {
	case Bank:
		a, err := s.Impl.Bank(ctx, t, s.Accounts)
		if err != nil {
			return nil, fmt.Errorf("open: %w", err)
		}
		return &State{
			Meter: a,
			Op: func(ctx context.Context, _ int, r *rand.Rand) (bool, error) {
				i := r.IntN(s.Accounts)
				j := r.IntN(s.Accounts - 1)
				if j >= i {
					j++
				}
				return a.Transfer(ctx, i, j)
			},
			Check: func(ctx context.Context, _ int64) error {
				total, err := a.Total(ctx)
				if err != nil {
					return fmt.Errorf("reading the total: %w", err)
				}
				if want := int64(s.Accounts) * Initial; total != want {
					return fmt.Errorf("check failed: the balances sum to %d, want %d (%+d)", total, want, total-want)
				}
				return nil
			},
		}, nil
	case Swap:
		cs, err := s.Impl.Swap(ctx, t, s.Accounts)
		if err != nil {
			return nil, fmt.Errorf("open: %w", err)
		}
		return &State{
			Meter: cs,
			Op: func(ctx context.Context, _ int, r *rand.Rand) (bool, error) {
				return false, cs.Incr(ctx, r.IntN(s.Accounts))
			},
			Check: func(ctx context.Context, ops int64) error {
				sum, err := cs.Sum(ctx)
				if err != nil {
					return fmt.Errorf("reading the counters: %w", err)
				}
				if sum != ops {
					return fmt.Errorf("check failed: the counters sum to %d after %d increments", sum, ops)
				}
				return nil
			},
		}, nil
	case Lock:
		ls, err := s.Impl.Locks(ctx, t, s.Accounts, s.Workers)
		if err != nil {
			return nil, fmt.Errorf("open: %w", err)
		}
		inside := make([]atomic.Int32, s.Accounts)
		var broken atomic.Pointer[string]
		return &State{
			Meter: ls,
			Op: func(ctx context.Context, w int, r *rand.Rand) (bool, error) {
				i := r.IntN(s.Accounts)
				if err := ls.Lock(ctx, w, i); err != nil {
					return false, err
				}
				if !inside[i].CompareAndSwap(0, int32(w)+1) {
					msg := fmt.Sprintf("check failed: worker %d got lock %d while worker %d held it", w, i, inside[i].Load()-1)
					broken.CompareAndSwap(nil, &msg)
				} else {
					inside[i].Store(0)
				}
				return false, ls.Unlock(ctx, w, i)
			},
			Check: func(context.Context, int64) error {
				if msg := broken.Load(); msg != nil {
					return errors.New(*msg)
				}
				return nil
			},
		}, nil
	}
	return nil, fmt.Errorf("unknown workload %q", s.Workload)
}

// Run runs one cell against t. Failures are in the cell's Error; Run
// returns an error only when ctx ended.
func Run(ctx context.Context, t Target, s Spec) (Cell, error) {
	c := Cell{Workload: s.Workload, Backend: t.Backend, Impl: s.Impl.Name, Workers: s.Workers, Accounts: s.Accounts, Unit: s.Impl.Unit[t.Backend]}
	st, err := Open(ctx, t, s)
	if err != nil {
		c.Error = err.Error()
		return c, ctx.Err()
	}
	m, op, check := st.Meter, st.Op, st.Check
	// The garbage of the cells before is not this cell's to collect.
	runtime.GC()
	defer m.Close()
	retries0 := m.Retries()
	count0, counted := m.Count()

	var stop atomic.Bool
	var failed atomic.Pointer[error]
	hists := make([]hist, s.Workers)
	ops := make([]int64, s.Workers)
	declined := make([]int64, s.Workers)
	var wg sync.WaitGroup
	start := time.Now()
	timer := time.AfterFunc(s.Time, func() { stop.Store(true) })
	for w := range s.Workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(s.Seed+uint64(w), 0x5eed))
			h := &hists[w]
			for !stop.Load() && failed.Load() == nil {
				t0 := time.Now()
				d, err := op(ctx, w, r)
				if err != nil {
					if ctx.Err() == nil {
						err = fmt.Errorf("worker %d: %w", w, err)
					}
					failed.CompareAndSwap(nil, &err)
					return
				}
				h.add(time.Since(t0))
				if d {
					declined[w]++
				} else {
					ops[w]++
				}
			}
		})
	}
	wg.Wait()
	timer.Stop()
	elapsed := time.Since(start)
	c.Seconds = elapsed.Seconds()
	var all hist
	for w := range s.Workers {
		c.Ops += ops[w]
		c.Declined += declined[w]
		all.merge(&hists[w])
	}
	if e := failed.Load(); e != nil {
		c.Error = (*e).Error()
		return c, ctx.Err()
	}
	c.PerSec = float64(c.Ops+c.Declined) / c.Seconds
	if c.Ops > 0 {
		c.RetriesPerOp = float64(m.Retries()-retries0) / float64(c.Ops)
		if n, ok := m.Count(); ok && counted {
			v := float64(n-count0) / float64(c.Ops)
			c.CountPerOp = &v
		}
	}
	c.P50Micros = all.quantile(0.50)
	c.P99Micros = all.quantile(0.99)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := check(cctx, c.Ops); err != nil {
		c.Error = err.Error()
	}
	return c, ctx.Err()
}

// Ratios sets each cell's Ratio to its ops/s over the first peer's (a
// non-Epochal implementation, in the order of order) in the same
// workload, backend, workers and accounts.
func Ratios(cells []Cell, order []string) {
	type regime struct {
		w, b string
		g, a int
	}
	first := map[regime]*Cell{}
	for _, name := range order {
		im, ok := Lookup(name)
		if !ok || im.Epochal {
			continue
		}
		for i := range cells {
			c := &cells[i]
			k := regime{c.Workload, c.Backend, c.Workers, c.Accounts}
			if c.Impl == name && c.Error == "" && first[k] == nil {
				first[k] = c
			}
		}
	}
	for i := range cells {
		c := &cells[i]
		p := first[regime{c.Workload, c.Backend, c.Workers, c.Accounts}]
		if p == nil || c.Error != "" || p.PerSec == 0 {
			continue
		}
		c.Ratio = c.PerSec / p.PerSec
		c.RatioTo = p.Impl
	}
}

// ParseImpls checks a comma-separated list of implementation names.
func ParseImpls(list string) ([]string, error) {
	var names []string
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if _, ok := Lookup(n); !ok {
			var all []string
			for _, im := range impls {
				all = append(all, im.Name)
			}
			return nil, fmt.Errorf("unknown implementation %q: want one of %s", n, strings.Join(all, ", "))
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, errors.New("no implementation named")
	}
	return names, nil
}
