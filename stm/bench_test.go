package stm_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// benchInitial is every account's starting balance: large enough that no
// balance goes negative in any run, so transfers need no overdraft check.
const benchInitial = 1 << 30

// BenchmarkTransfer measures transfers between two accounts (Alter the
// source, Alter the destination, amount 1) on the mem backend, one op being
// one committed transfer, against a baseline doing the same work on the same
// msgpack-encoded values in a map under one global sync.Mutex.
//
// uncontended-1000 spreads the transfers over 1000 accounts, contended-10
// over 10. Each runs with one goroutine and with GOMAXPROCS goroutines.
func BenchmarkTransfer(b *testing.B) {
	procs := []int{1}
	if n := runtime.GOMAXPROCS(0); n > 1 {
		procs = append(procs, n)
	}
	workloads := []struct {
		name     string
		accounts int
	}{
		{"uncontended-1000", 1000},
		{"contended-10", 10},
	}
	for _, w := range workloads {
		b.Run(w.name, func(b *testing.B) {
			for _, p := range procs {
				b.Run(fmt.Sprintf("procs=%d", p), func(b *testing.B) {
					b.Run("stm", func(b *testing.B) { benchSTM(b, w.accounts, p) })
					b.Run("baseline-mutex", func(b *testing.B) { benchMutex(b, w.accounts, p) })
				})
			}
		})
	}
}

func benchName(i int) string { return fmt.Sprintf("bench/acct-%04d", i) }

// pair picks two distinct accounts out of n.
func pair(r *rand.Rand, n int) (int, int) {
	i := r.IntN(n)
	j := r.IntN(n - 1)
	if j >= i {
		j++
	}
	return i, j
}

// runOps runs b.N calls of op spread over g goroutines, each with its own
// random source, and times them. The first error stops the run.
func runOps(b *testing.B, g int, op func(r *rand.Rand) error) {
	b.Helper()
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := range g {
		r := rand.New(rand.NewPCG(uint64(i), 0x5eed))
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) && failed.Load() == nil {
				if err := op(r); err != nil {
					failed.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
}

func benchSTM(b *testing.B, accounts, goroutines int) {
	ctx := context.Background()
	be := mem.New()
	defer be.Close()
	s, err := stm.Open(ctx, be)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	accts := make([]*refs.Ref[int], accounts)
	for i := range accts {
		if accts[i], err = refs.New(ctx, s, benchName(i), benchInitial); err != nil {
			b.Fatal(err)
		}
	}
	minus := func(v int) int { return v - 1 }
	plus := func(v int) int { return v + 1 }
	before := s.Stats()
	b.ReportAllocs()

	runOps(b, goroutines, func(r *rand.Rand) error {
		i, j := pair(r, accounts)
		from, to := accts[i], accts[j]
		return s.Dosync(ctx, func(tx *txn.Tx) error {
			from.Alter(tx, minus)
			to.Alter(tx, plus)
			return nil
		})
	})

	after := s.Stats()
	commits, retries := after.Commits-before.Commits, after.Retries-before.Retries
	if commits != int64(b.N) {
		b.Fatalf("%d commits for %d transfers", commits, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
	b.ReportMetric(float64(retries)/float64(commits), "retries/commit")
	total := 0
	for _, a := range accts {
		v, err := a.Deref(ctx)
		if err != nil {
			b.Fatal(err)
		}
		total += v
	}
	if total != accounts*benchInitial {
		b.Fatalf("total %d, want %d", total, accounts*benchInitial)
	}
}

// mutexBank is the baseline: the same encoded values in a map, every
// transfer under one global lock.
type mutexBank struct {
	mu   sync.Mutex
	vals map[string][]byte
}

func (m *mutexBank) get(name string) (int, error) {
	var v int
	err := refs.Msgpack.Unmarshal(m.vals[name], &v)
	return v, err
}

func (m *mutexBank) put(name string, v int) error {
	data, err := refs.Msgpack.Marshal(v)
	m.vals[name] = data
	return err
}

func (m *mutexBank) transfer(from, to string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, err := m.get(from)
	if err != nil {
		return err
	}
	c, err := m.get(to)
	if err != nil {
		return err
	}
	if err := m.put(from, a-1); err != nil {
		return err
	}
	return m.put(to, c+1)
}

func benchMutex(b *testing.B, accounts, goroutines int) {
	m := &mutexBank{vals: make(map[string][]byte, accounts)}
	names := make([]string, accounts)
	for i := range names {
		names[i] = benchName(i)
		if err := m.put(names[i], benchInitial); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()

	runOps(b, goroutines, func(r *rand.Rand) error {
		i, j := pair(r, accounts)
		return m.transfer(names[i], names[j])
	})

	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
	b.ReportMetric(0, "retries/commit")
	total := 0
	for _, n := range names {
		v, err := m.get(n)
		if err != nil {
			b.Fatal(err)
		}
		total += v
	}
	if total != accounts*benchInitial {
		b.Fatalf("total %d, want %d", total, accounts*benchInitial)
	}
}
