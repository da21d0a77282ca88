// Package bench measures Epochal beside the code it replaces: the same
// workload done by Epochal and by hand-written peers (a go-redis
// WATCH/MULTI loop, one EVALSHA, a ZooKeeper Multi, a global mutex,
// github.com/anacrolix/stm), in one process, cell by cell, with the same
// workers and the same random choices.
//
// It is the one implementation of each peer: `epochal bench` runs it for
// a time per cell (Run), and the `go test -bench` benchmarks of the
// backends run the same banks, counters and locks for b.N ops
// (internal/testkit/benchkit).
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
	// RedisWait is redis.Config.WaitReplicas of the Epochal cells: each
	// commit WAITs for that many replicas (0: no WAIT). The peers do not
	// wait.
	RedisWait int
	// ConnectTimeout bounds a cell's setup (connecting, creating its
	// accounts); 0: no bound but the caller's ctx.
	ConnectTimeout time.Duration
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
	// Balances reads every account's balance.
	Balances(ctx context.Context) ([]int64, error)
}

// Counters is the swap workload's state.
type Counters interface {
	Meter
	// Incr adds 1 to counter i, retrying until it takes effect.
	Incr(ctx context.Context, i int) error
	// Values reads every counter.
	Values(ctx context.Context) ([]int64, error)
}

// Recomputer is a Meter that also counts commute values computed again
// on a stale base (a commit round that is not a retry of the whole
// transaction: Epochal's).
type Recomputer interface {
	Recomputes() int64
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
	// RecomputesPerOp is, for Epochal, the commute values computed again
	// on a stale base per op: a commit round, not a retry of the whole
	// transaction.
	RecomputesPerOp *float64 `json:"recomputes_per_op,omitempty"`
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
	// Check checks the state after every op so far: each account's
	// balance (or counter) against the changes the workers made, mutual
	// exclusion and the count of critical sections for locks.
	Check func(ctx context.Context) error
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
	if t.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.ConnectTimeout)
		defer cancel()
	}
	// want[w][i] is what worker w's ops changed account (counter) i by.
	want := make([][]int64, s.Workers)
	for w := range want {
		want[w] = make([]int64, s.Accounts)
	}
	// against compares what read returns with the sums of want, initial
	// each to start with.
	against := func(ctx context.Context, what string, initial int64, read func(context.Context) ([]int64, error)) error {
		got, err := read(ctx)
		if err != nil {
			return fmt.Errorf("reading the %ss: %w", what, err)
		}
		if len(got) != s.Accounts {
			return fmt.Errorf("check failed: %d %ss read, want %d", len(got), what, s.Accounts)
		}
		for i, v := range got {
			exp := initial
			for w := range want {
				exp += want[w][i]
			}
			if v != exp {
				return fmt.Errorf("check failed: %s %d is %d, want %d (%+d)", what, i, v, exp, v-exp)
			}
		}
		return nil
	}
	switch s.Workload {
	case Bank:
		a, err := s.Impl.Bank(ctx, t, s.Accounts)
		if err != nil {
			return nil, fmt.Errorf("open: %w", err)
		}
		return &State{
			Meter: a,
			Op: func(ctx context.Context, w int, r *rand.Rand) (bool, error) {
				i := r.IntN(s.Accounts)
				j := r.IntN(s.Accounts - 1)
				if j >= i {
					j++
				}
				declined, err := a.Transfer(ctx, i, j)
				if err == nil && !declined {
					want[w][i]--
					want[w][j]++
				}
				return declined, err
			},
			Check: func(ctx context.Context) error { return against(ctx, "balance", Initial, a.Balances) },
		}, nil
	case Swap:
		cs, err := s.Impl.Swap(ctx, t, s.Accounts)
		if err != nil {
			return nil, fmt.Errorf("open: %w", err)
		}
		return &State{
			Meter: cs,
			Op: func(ctx context.Context, w int, r *rand.Rand) (bool, error) {
				i := r.IntN(s.Accounts)
				err := cs.Incr(ctx, i)
				if err == nil {
					want[w][i]++
				}
				return false, err
			},
			Check: func(ctx context.Context) error { return against(ctx, "counter", 0, cs.Values) },
		}, nil
	case Lock:
		ls, err := s.Impl.Locks(ctx, t, s.Accounts, s.Workers)
		if err != nil {
			return nil, fmt.Errorf("open: %w", err)
		}
		// inside[i] is the worker holding lock i, plus 1; sections[i]
		// counts its critical sections with a read, a yield and a write
		// (an increment two holders inside at once can lose).
		inside := make([]atomic.Int32, s.Accounts)
		sections := make([]atomic.Int64, s.Accounts)
		var broken atomic.Pointer[string]
		fail := func(format string, args ...any) {
			msg := fmt.Sprintf(format, args...)
			broken.CompareAndSwap(nil, &msg)
		}
		return &State{
			Meter: ls,
			Op: func(ctx context.Context, w int, r *rand.Rand) (bool, error) {
				i := r.IntN(s.Accounts)
				if err := ls.Lock(ctx, w, i); err != nil {
					return false, err
				}
				me := int32(w) + 1
				if !inside[i].CompareAndSwap(0, me) {
					fail("check failed: worker %d got lock %d while worker %d held it", w, i, inside[i].Load()-1)
				}
				n := sections[i].Load()
				runtime.Gosched()
				sections[i].Store(n + 1)
				if !inside[i].CompareAndSwap(me, 0) {
					fail("check failed: worker %d was let into lock %d while worker %d held it", inside[i].Load()-1, i, w)
				}
				if err := ls.Unlock(ctx, w, i); err != nil {
					return false, err
				}
				want[w][i]++
				return false, nil
			},
			Check: func(ctx context.Context) error {
				if msg := broken.Load(); msg != nil {
					return errors.New(*msg)
				}
				return against(ctx, "critical section count of lock", 0, func(context.Context) ([]int64, error) {
					out := make([]int64, s.Accounts)
					for i := range sections {
						out[i] = sections[i].Load()
					}
					return out, nil
				})
			},
		}, nil
	}
	return nil, fmt.Errorf("unknown workload %q", s.Workload)
}

// Warmup is how long a cell's ops run before it is measured: a fifth of
// its time, at most a second. The server, the connections and the
// process's caches are then warm for every implementation, the first of
// a run included.
func Warmup(d time.Duration) time.Duration { return min(d/5, time.Second) }

// counts is one worker's tally, padded so that workers do not share a
// cache line.
type counts struct {
	ops, declined int64
	_             [48]byte
}

// Run runs one cell against t: opens its state, runs ops for Warmup
// unmeasured, then for s.Time measured, and checks the state. Failures
// are in the cell's Error; Run returns an error only when ctx ended (the
// cell is then incomplete and not to be reported).
func Run(ctx context.Context, t Target, s Spec) (Cell, error) {
	c := Cell{Workload: s.Workload, Backend: t.Backend, Impl: s.Impl.Name, Workers: s.Workers, Accounts: s.Accounts, Unit: s.Impl.Unit[t.Backend]}
	st, err := Open(ctx, t, s)
	if err != nil {
		c.Error = err.Error()
		return c, ctx.Err()
	}
	defer st.Close()
	if w := Warmup(s.Time); w > 0 {
		if _, _, err := loop(ctx, st, s, w, nil); err != nil {
			c.Error = "warm-up: " + err.Error()
			return c, ctx.Err()
		}
	}
	// The garbage of the cells before is not this cell's to collect.
	runtime.GC()
	retries0 := st.Retries()
	var recomputes0 int64
	rc, recomputes := st.Meter.(Recomputer)
	if recomputes {
		recomputes0 = rc.Recomputes()
	}
	count0, counted := st.Count()
	hists := make([]hist, s.Workers)
	tally, elapsed, err := loop(ctx, st, s, s.Time, hists)
	if ctx.Err() != nil {
		return c, ctx.Err()
	}
	c.Seconds = elapsed.Seconds()
	var all hist
	for w := range s.Workers {
		c.Ops += tally[w].ops
		c.Declined += tally[w].declined
		all.merge(&hists[w])
	}
	if err != nil {
		c.Error = err.Error()
		return c, nil
	}
	c.PerSec = float64(c.Ops+c.Declined) / c.Seconds
	if c.Ops > 0 {
		c.RetriesPerOp = float64(st.Retries()-retries0) / float64(c.Ops)
		if recomputes {
			v := float64(rc.Recomputes()-recomputes0) / float64(c.Ops)
			c.RecomputesPerOp = &v
		}
		if n, ok := st.Count(); ok && counted {
			v := float64(n-count0) / float64(c.Ops)
			c.CountPerOp = &v
		}
	}
	c.P50Micros = all.quantile(0.50)
	c.P99Micros = all.quantile(0.99)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := st.Check(cctx); err != nil {
		c.Error = err.Error()
	}
	return c, nil
}

// loop runs st's ops over s.Workers goroutines for d (or until ctx ends
// or an op fails), recording each op's latency in hists[w] when hists is
// not nil. It returns each worker's tally and the time taken.
func loop(ctx context.Context, st *State, s Spec, d time.Duration, hists []hist) ([]counts, time.Duration, error) {
	var stop atomic.Bool
	var failed atomic.Pointer[error]
	tally := make([]counts, s.Workers)
	var wg sync.WaitGroup
	start := time.Now()
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	defer timer.Stop()
	unhook := context.AfterFunc(ctx, func() { stop.Store(true) })
	defer unhook()
	for w := range s.Workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(s.Seed+uint64(w), 0x5eed))
			var ops, declined int64
			var h *hist
			if hists != nil {
				h = &hists[w]
			}
			for !stop.Load() && failed.Load() == nil {
				t0 := time.Now()
				d, err := st.Op(ctx, w, r)
				if err != nil {
					if ctx.Err() == nil {
						err = fmt.Errorf("worker %d: %w", w, err)
						failed.CompareAndSwap(nil, &err)
					}
					break
				}
				if h != nil {
					h.add(time.Since(t0))
				}
				if d {
					declined++
				} else {
					ops++
				}
			}
			tally[w] = counts{ops: ops, declined: declined}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if e := failed.Load(); e != nil {
		return tally, elapsed, *e
	}
	return tally, elapsed, nil
}

// Ratios sets each cell's Ratio to its ops/s over the first peer's (the
// first cell of a non-Epochal implementation, in the order of cells) in
// the same workload, backend, workers and accounts.
func Ratios(cells []Cell) {
	type regime struct {
		w, b string
		g, a int
	}
	first := map[regime]*Cell{}
	for i := range cells {
		c := &cells[i]
		k := regime{c.Workload, c.Backend, c.Workers, c.Accounts}
		if im, ok := Lookup(c.Impl); ok && !im.Epochal && c.Error == "" && c.PerSec > 0 && first[k] == nil {
			first[k] = c
		}
	}
	for i := range cells {
		c := &cells[i]
		p := first[regime{c.Workload, c.Backend, c.Workers, c.Accounts}]
		if p == nil || c.Error != "" {
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
