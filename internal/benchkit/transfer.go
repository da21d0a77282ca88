package benchkit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/txn"
)

// Initial is every account's starting balance in Transfer: large enough
// that no balance goes negative in any run, so transfers need no
// overdraft check.
const Initial = 1 << 30

// Bank is one way to keep the accounts of Transfer.
type Bank interface {
	// Transfer moves 1 from account i to account j, retrying until it
	// commits.
	Transfer(ctx context.Context, i, j int) error
	// Retries is the number of retries so far.
	Retries() int64
	// Count is the count so far of what the backend counts (see
	// Transfer).
	Count(b *testing.B) int64
	// Total is the sum of all balances.
	Total(ctx context.Context) (int64, error)
	Close()
}

// BankImpl is one way of keeping the accounts, measured side by side with
// others.
type BankImpl struct {
	Name string
	// Open returns a new bank of accounts accounts holding Initial each,
	// under its own key prefix or root; the harness opens one per
	// sub-benchmark.
	Open func(b *testing.B, accounts int) Bank
}

// Transfer measures transfers of 1 unit between two distinct accounts
// chosen at random, one op being one committed transfer, for each
// implementation.
//
// uncontended-1000 spreads the transfers over 1000 accounts, contended-10
// over 10; each runs with 1 and 16 goroutines (workers=1, workers=16)
// taking ops from a shared counter, each goroutine with its own random
// source. Sub-benchmarks are named workload/workers=g/implementation.
// Each sub-benchmark has its own bank, set up once and reused by the
// benchmark's successive runs, closed after them; after each run the sum
// of all balances must be unchanged.
//
// Metrics: commits/s (b.N / elapsed), retries/commit, p50-µs and p99-µs
// (the latency of one committed transfer, retries included) and
// unit+"/commit": how far the bank's Count moved during the timed run,
// divided by b.N (round-trips/commit on Redis, writes/commit on
// ZooKeeper).
func Transfer(b *testing.B, unit string, impls []BankImpl) {
	workloads := []struct {
		name     string
		accounts int
	}{
		{"uncontended-1000", 1000},
		{"contended-10", 10},
	}
	for _, w := range workloads {
		b.Run(w.name, func(b *testing.B) {
			for _, g := range workers {
				b.Run(fmt.Sprintf("workers=%d", g), func(b *testing.B) {
					for _, im := range impls {
						var bank Bank // set up by the first run, reused by the next
						b.Run(im.Name, func(b *testing.B) {
							if bank == nil {
								bank = im.Open(b, w.accounts)
							}
							transfers(b, bank, unit, w.accounts, g)
						})
						if bank != nil {
							bank.Close()
						}
					}
				})
			}
		})
	}
}

// transfers runs b.N transfers over g goroutines, reports the metrics and
// checks the total.
func transfers(b *testing.B, bank Bank, unit string, accounts, g int) {
	retries0, count0 := bank.Retries(), bank.Count(b)
	draw := func(w int) func() [2]int {
		r := rand.New(rand.NewPCG(uint64(w), 0x5eed))
		return func() [2]int {
			i := r.IntN(accounts)
			j := r.IntN(accounts - 1)
			if j >= i {
				j++
			}
			return [2]int{i, j}
		}
	}
	lat := run(b, g, draw, func(ctx context.Context, ij [2]int) error { return bank.Transfer(ctx, ij[0], ij[1]) })
	report(b, "commit", lat, bank.Retries()-retries0, bank.Count(b)-count0, unit)
	total, err := bank.Total(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	if want := int64(accounts) * Initial; total != want {
		b.Fatalf("total %d after %d transfers, want %d", total, b.N, want)
	}
}

// Bank returns the epochal variant of Transfer on e: accounts
// refs.Ref[int] named acct/0000, acct/0001, …, and each transfer one
// s.Dosync with Alter on both accounts; with prefetch, starting with
// refs.Prefetch(tx, from, to). The accounts are created by 16 goroutines
// (each create is a write the server makes durable before it answers).
// Closing the bank closes e.
func (e Epochal) Bank(b *testing.B, accounts int, prefetch bool) Bank {
	ctx := context.Background()
	bank := &epochalBank{ep: e, accts: make([]*refs.Ref[int], accounts), prefetch: prefetch}
	var wg sync.WaitGroup
	errs := make([]error, accounts)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < accounts; i += 16 {
				bank.accts[i], errs[i] = refs.New(ctx, e.S, fmt.Sprintf("acct/%04d", i), Initial)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		bank.Close()
		b.Fatal(err)
	}
	return bank
}

// EpochalBanks returns the variants epochal and epochal-prefetch of
// Transfer (see Epochal.Bank), each bank on a new Epochal from open.
func EpochalBanks(open func(b *testing.B) Epochal) []BankImpl {
	bank := func(prefetch bool) func(b *testing.B, accounts int) Bank {
		return func(b *testing.B, accounts int) Bank { return open(b).Bank(b, accounts, prefetch) }
	}
	return []BankImpl{
		{Name: "epochal", Open: bank(false)},
		{Name: "epochal-prefetch", Open: bank(true)},
	}
}

type epochalBank struct {
	ep       Epochal
	accts    []*refs.Ref[int]
	prefetch bool // read both accounts first, in one go
}

func minus(v int) int { return v - 1 }
func plus(v int) int  { return v + 1 }

func (e *epochalBank) Transfer(ctx context.Context, i, j int) error {
	from, to := e.accts[i], e.accts[j]
	return e.ep.S.Dosync(ctx, func(tx *txn.Tx) error {
		if e.prefetch {
			refs.Prefetch(tx, from, to)
		}
		from.Alter(tx, minus)
		to.Alter(tx, plus)
		return nil
	})
}

func (e *epochalBank) Retries() int64           { return e.ep.S.Stats().Retries }
func (e *epochalBank) Count(b *testing.B) int64 { return e.ep.Count(b) }

func (e *epochalBank) Total(ctx context.Context) (int64, error) {
	var sum int64
	err := e.ep.S.Dosync(ctx, func(tx *txn.Tx) error {
		sum = 0
		for _, a := range e.accts {
			sum += int64(a.Get(tx))
		}
		return nil
	})
	return sum, err
}

func (e *epochalBank) Close() { e.ep.close() }
