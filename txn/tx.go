package txn

import "github.com/epochal/epochal/internal/engine"

// Tx is one attempt of a transaction, the argument of stm.Dosync's
// function. Pass it to the refs' methods (Get, Set, Alter, Commute,
// Ensure). Its own methods:
//
//   - Context() context.Context: the Dosync's ctx, marked with this
//     transaction. A Dosync called with it (or a ctx derived from it) on the
//     goroutine running the transaction joins it; on any other goroutine it
//     is a transaction of its own.
//   - ReadPoint() clock.Point: the point the attempt reads at (drawn now if
//     it was not yet), for refs' At and History.
//   - ID() string: the attempt's transaction id, stamped on the versions it
//     writes (Version.Txn) and shown by 'epochal txn show'.
//
// A Tx belongs to one attempt: using it after its Dosync returned panics
// with an error wrapping ErrOutsideTx.
type Tx = engine.Tx
