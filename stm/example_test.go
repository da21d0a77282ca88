package stm_test

import (
	"context"
	"errors"
	"fmt"

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
