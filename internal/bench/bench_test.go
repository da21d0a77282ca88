package bench

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// leakyBank loses the credit of every 100th transfer.
type leakyBank struct {
	mutexBank
	n int
}

func (b *leakyBank) Transfer(ctx context.Context, i, j int) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	b.accts[i]--
	if b.n%100 != 0 {
		b.accts[j]++
	}
	return false, nil
}

// idleBank says every transfer committed but moves nothing: its total
// never changes.
type idleBank struct{ mutexBank }

func (b *idleBank) Transfer(context.Context, int, int) (bool, error) { return false, nil }

// lossyCounters drops every 100th increment.
type lossyCounters struct {
	mutexCounters
	n int
}

func (c *lossyCounters) Incr(ctx context.Context, i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n++; c.n%100 != 0 {
		c.vs[i]++
	}
	return nil
}

// openLocks lets every holder in: no exclusion.
type openLocks struct{ mutexLocks }

func (openLocks) Lock(context.Context, int, int) error   { return nil }
func (openLocks) Unlock(context.Context, int, int) error { return nil }

// TestRunChecks: a cell whose state is wrong afterwards fails, naming
// what did not hold; the same cell with a correct implementation passes.
func TestRunChecks(t *testing.T) {
	broken := Impl{
		Name: "broken", Backends: []string{Mem},
		Bank: func(context.Context, Target, int) (Accounts, error) {
			b := &leakyBank{}
			for range 5 {
				b.accts = append(b.accts, Initial)
			}
			return b, nil
		},
		Swap: func(_ context.Context, _ Target, n int) (Counters, error) {
			return &lossyCounters{mutexCounters: mutexCounters{vs: make([]int64, n)}}, nil
		},
		Locks: func(context.Context, Target, int, int) (Locks, error) { return &openLocks{}, nil },
	}
	idle := Impl{Name: "idle", Backends: []string{Mem}, Bank: func(context.Context, Target, int) (Accounts, error) {
		b := &idleBank{}
		for range 5 {
			b.accts = append(b.accts, Initial)
		}
		return b, nil
	}}
	good, _ := Lookup("mutex")
	for _, w := range Workloads {
		for _, im := range []Impl{broken, idle, good} {
			if !im.Runs(w, Mem) {
				continue
			}
			c, err := Run(context.Background(), Target{Backend: Mem}, Spec{Workload: w, Impl: im, Workers: 4, Accounts: 5, Time: 50 * time.Millisecond, Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			if im.Name == "mutex" {
				if c.Error != "" || c.Ops == 0 {
					t.Errorf("%s %s: %+v", w, im.Name, c)
				}
				continue
			}
			if !strings.HasPrefix(c.Error, "check failed") {
				t.Errorf("%s: the broken implementation passed: %+v", w, c)
			}
		}
	}
}

// failingBank returns an error from its 10th transfer.
type failingBank struct {
	mutexBank
	mu sync.Mutex
	n  int
}

func (b *failingBank) Transfer(ctx context.Context, i, j int) (bool, error) {
	b.mu.Lock()
	b.n++
	n := b.n
	b.mu.Unlock()
	if n >= 10 {
		return false, context.DeadlineExceeded
	}
	return b.mutexBank.Transfer(ctx, i, j)
}

// TestRunOpError: an op's error ends the cell and is its Error.
func TestRunOpError(t *testing.T) {
	im := Impl{Name: "failing", Backends: []string{Mem}, Bank: func(context.Context, Target, int) (Accounts, error) {
		return &failingBank{mutexBank: mutexBank{accts: []int{Initial, Initial}}}, nil
	}}
	c, err := Run(context.Background(), Target{Backend: Mem}, Spec{Workload: Bank, Impl: im, Workers: 2, Accounts: 2, Time: time.Minute})
	if err != nil || !strings.Contains(c.Error, "deadline exceeded") {
		t.Fatalf("cell %+v, err %v", c, err)
	}
}

// TestRunDoesNotRunElsewhere: a cell of an implementation on a backend it
// does not run on, or with a bad shape, fails without running.
func TestRunDoesNotRunElsewhere(t *testing.T) {
	wm, _ := Lookup("watch-multi")
	for _, s := range []Spec{
		{Workload: Bank, Impl: wm, Workers: 1, Accounts: 10},
		{Workload: Lock, Impl: Impl{Name: "x", Backends: []string{Mem}}, Workers: 1, Accounts: 10},
	} {
		c, _ := Run(context.Background(), Target{Backend: Mem}, s)
		if !strings.Contains(c.Error, "does not run") {
			t.Errorf("%+v", c)
		}
	}
	m, _ := Lookup("mutex")
	c, _ := Run(context.Background(), Target{Backend: Mem}, Spec{Workload: Bank, Impl: m, Workers: 1, Accounts: 1})
	if !strings.Contains(c.Error, "bad cell") {
		t.Errorf("%+v", c)
	}
}

// TestHist: quantiles are within the bucket width (1/16) of the truth.
func TestHist(t *testing.T) {
	var h hist
	for i := 1; i <= 100000; i++ {
		h.add(time.Duration(i) * time.Nanosecond * 37)
	}
	for _, q := range []float64{0.01, 0.5, 0.99, 1} {
		want := q * 100000 * 37 / 1e3
		got := h.quantile(q)
		if math.Abs(got-want)/want > 1.0/16 {
			t.Errorf("q%.2f = %.2f µs, want %.2f", q, got, want)
		}
	}
	for ns := uint64(0); ns < 1<<20; ns = ns*3/2 + 1 {
		k := bucket(ns)
		if lo, hi := lower(k), lower(k+1); float64(ns) < lo || float64(ns) >= hi {
			t.Fatalf("%d ns in bucket %d [%v, %v)", ns, k, lo, hi)
		}
	}
	var empty hist
	if empty.quantile(0.5) != 0 {
		t.Error("empty histogram has a median")
	}
}

// TestRatiosAndGoals: ratios are to the first peer in the order given,
// within one regime; goals are judged where both sides ran.
func TestRatiosAndGoals(t *testing.T) {
	rt := func(v float64) *float64 { return &v }
	cells := []Cell{
		{Workload: Bank, Backend: Redis, Impl: "epochal", Workers: 1, Accounts: 1000, PerSec: 120, CountPerOp: rt(2)},
		{Workload: Bank, Backend: Redis, Impl: "watch-multi", Workers: 1, Accounts: 1000, PerSec: 100},
		{Workload: Bank, Backend: Redis, Impl: "lua", Workers: 1, Accounts: 1000, PerSec: 300},
		{Workload: Bank, Backend: Redis, Impl: "epochal", Workers: 16, Accounts: 10, PerSec: 150, RetriesPerOp: 0.6, P50Micros: 10, P99Micros: 90},
		{Workload: Bank, Backend: Redis, Impl: "watch-multi", Workers: 16, Accounts: 10, PerSec: 100},
		{Workload: Bank, Backend: Redis, Impl: "epochal-commute", Workers: 16, Accounts: 10, PerSec: 140, RetriesPerOp: 0.5},
	}
	Ratios(cells)
	if cells[0].Ratio != 1.2 || cells[0].RatioTo != "watch-multi" || cells[2].Ratio != 3 || cells[3].Ratio != 1.5 {
		t.Fatalf("ratios %+v", cells)
	}
	got := map[string]string{}
	for _, g := range Goals(cells) {
		got[g.Name] = g.Status
	}
	want := map[string]string{
		"redis bank, 1000 accounts, 1 workers: epochal >= 1.0x watch-multi":                 Met,
		"redis bank, 1000 accounts, 1 workers: <= 2 round trips per transfer":               Met,
		"redis bank, 10 accounts, 16 workers: epochal >= 2.0x watch-multi":                  NotMet,
		"redis bank, 10 accounts, 16 workers: <= 0.5 retries per commit":                    NotMet,
		"redis bank, 10 accounts, 16 workers: p99 <= 10x p50":                               Met,
		"redis bank, 10 accounts, 16 workers: epochal-commute at least as fast as epochal":  NotMet,
		"redis bank, 10 accounts, 16 workers: epochal-commute retries no more than epochal": Met,
	}
	for n, s := range want {
		if got[n] != s {
			t.Errorf("goal %q: %q, want %q", n, got[n], s)
		}
	}
	if len(got) != len(want) {
		t.Errorf("goals %v, want %v", got, want)
	}
}
