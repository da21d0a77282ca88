package stm_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

var errInsufficient = errors.New("insufficient funds")

// A transfer between two accounts: both change, or neither.
func Example() {
	ctx := context.Background()
	b := mem.New()
	defer b.Close()
	s, err := stm.Open(ctx, b)
	if err != nil {
		panic(err)
	}
	defer s.Close()

	alice, _ := refs.New(ctx, s, "accounts/alice", 100)
	bob, _ := refs.New(ctx, s, "accounts/bob", 100)

	transfer := func(amount int) error {
		return s.Dosync(ctx, func(tx *txn.Tx) error {
			if alice.Get(tx) < amount {
				return errInsufficient
			}
			alice.Alter(tx, func(v int) int { return v - amount })
			bob.Commute(tx, func(v int) int { return v + amount })
			return nil
		})
	}
	fmt.Println(transfer(30))
	fmt.Println(transfer(500))

	a, _ := alice.Deref(ctx)
	c, _ := bob.Deref(ctx)
	fmt.Println(a, c)
	// Output:
	// <nil>
	// insufficient funds
	// 70 130
}

// A Dosync called with tx.Context() joins the outer transaction: its
// writes commit with the outer one, at one point, or not at all.
func Example_nested() {
	ctx := context.Background()
	b := mem.New()
	defer b.Close()
	s, err := stm.Open(ctx, b)
	if err != nil {
		panic(err)
	}
	defer s.Close()
	balance, _ := refs.New(ctx, s, "accounts/carol", 0)
	audit, _ := refs.New(ctx, s, "audit/count", 0)

	// deposit is a transaction of its own, or part of its caller's.
	deposit := func(ctx context.Context, n int) error {
		return s.Dosync(ctx, func(tx *txn.Tx) error {
			balance.Alter(tx, func(v int) int { return v + n })
			audit.Commute(tx, func(v int) int { return v + 1 })
			return nil
		})
	}
	_ = deposit(ctx, 5) // alone: commits at once

	// Two deposits in one transaction; the outer function fails after
	// them, so neither is written.
	err = s.Dosync(ctx, func(tx *txn.Tx) error {
		_ = deposit(tx.Context(), 10)
		_ = deposit(tx.Context(), 20)
		return errors.New("order cancelled")
	})
	fmt.Println(err)
	v, _ := balance.Deref(ctx)
	fmt.Println(v)

	// The same, committed: both deposits at one commit point.
	before := s.Stats().Commits
	_ = s.Dosync(ctx, func(tx *txn.Tx) error {
		_ = deposit(tx.Context(), 10)
		return deposit(tx.Context(), 20)
	})
	v, _ = balance.Deref(ctx)
	n, _ := audit.Deref(ctx)
	fmt.Println(v, n, "commits:", s.Stats().Commits-before)

	// A joined Dosync that fails dooms the outer one, even if the outer
	// function goes on: its writes cannot be taken back on their own.
	err = s.Dosync(ctx, func(tx *txn.Tx) error {
		_ = deposit(tx.Context(), 1)
		if err := s.Dosync(tx.Context(), func(tx *txn.Tx) error {
			balance.Alter(tx, func(v int) int { return v - 1000 })
			return errInsufficient
		}); err != nil {
			return nil // ignored here, but the outer Dosync still fails
		}
		return nil
	})
	v, _ = balance.Deref(ctx)
	fmt.Println(err, v)
	// Output:
	// order cancelled
	// 5
	// 35 3 commits: 1
	// insufficient funds 35
}

// What a caller does with the errors of a Dosync that did not commit:
// ErrRetryLimit means nothing was written and the contention outlasted
// WithMaxRetries (retry the whole operation later, or give up);
// ErrOutcomeUnknown means the commit may have applied, once (a server did
// not answer in time): find out whether it did before running it again.
// Carrying a request id in the transaction makes both safe: the
// transaction itself skips a request it already applied.
func Example_errors() {
	ctx := context.Background()
	b := mem.New()
	defer b.Close()
	s, err := stm.Open(ctx, b, stm.WithMaxRetries(0)) // give up at the first conflict
	if err != nil {
		panic(err)
	}
	defer s.Close()
	stock, _ := refs.New(ctx, s, "stock/widgets", 10)
	applied, _ := refs.New(ctx, s, "stock/applied", map[string]bool{}) // request ids already applied

	// take removes n widgets once per request id, whatever happens.
	interfere := true
	take := func(ctx context.Context, id string, n int) error {
		return s.Dosync(ctx, func(tx *txn.Tx) error {
			if applied.Get(tx)[id] {
				return nil // applied before (maybe by an attempt whose outcome was unknown)
			}
			left := stock.Get(tx)
			if interfere { // another process commits in between, once
				interfere = false
				done := make(chan error)
				go func() { done <- s.Dosync(ctx, func(tx *txn.Tx) error { stock.Set(tx, 9); return nil }) }()
				if err := <-done; err != nil {
					panic(err)
				}
			}
			stock.Set(tx, left-n)
			applied.Alter(tx, func(m map[string]bool) map[string]bool {
				c := map[string]bool{id: true}
				for k := range m {
					c[k] = true
				}
				return c
			})
			return nil
		})
	}

	// Retry a bounded number of times, pausing longer each time (with
	// jitter, so that callers that collided do not collide again).
	const attempts = 5
	pause := func(attempt int) {
		d := time.Duration(1<<attempt) * time.Millisecond
		time.Sleep(d/2 + time.Duration(rand.Int64N(int64(d/2)+1)))
	}
	for attempt := 1; attempt <= attempts; attempt++ {
		err := take(ctx, "order-7", 3)
		switch {
		case err == nil:
			v, _ := stock.Deref(ctx)
			fmt.Println("applied on attempt", attempt, "stock", v)
		case errors.Is(err, stm.ErrRetryLimit):
			// Nothing was written: retry the whole operation after a
			// pause, or report the contention.
			fmt.Println("attempt", attempt, "conflicted:", errors.Is(err, txn.ErrConflict))
			pause(attempt)
			continue
		case errors.Is(err, stm.ErrOutcomeUnknown):
			// It may have committed. Running take again is safe: it
			// checks the request id in the same transaction. Without such
			// an id, read what the transaction wrote before retrying.
			// Pause first: the server did not answer in time.
			pause(attempt)
			continue
		case errors.Is(err, stm.ErrDataLost):
			// The backend lost its data (a restore, FLUSHALL): the STM
			// refuses every call until the backend and STM are reopened.
			fmt.Println("reopen:", err)
		default:
			fmt.Println("failed:", err) // an error of the function: not retried
		}
		break
	}
	fmt.Println(take(ctx, "order-7", 3)) // a repeat changes nothing
	v, _ := stock.Deref(ctx)
	fmt.Println("stock", v)
	// Output:
	// attempt 1 conflicted: true
	// applied on attempt 2 stock 6
	// <nil>
	// stock 6
}
