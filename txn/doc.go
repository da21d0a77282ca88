// Package txn is the transaction a Dosync runs: the *Tx its function gets,
// and the errors transactions end with.
//
// Users meet a *Tx as the argument of stm.Dosync's function and pass it to
// refs' methods (alice.Get(tx), bob.Commute(tx, f)). The engine behind it
// (the attempt, both commit paths, the retry loop, intent resolution) is
// internal; docs/design.md describes it.
//
// # Usage
//
//	err := s.Dosync(ctx, func(tx *txn.Tx) error {
//		a := alice.Get(tx)
//		alice.Set(tx, a-10)
//		return nil
//	})
//
// Tx methods return no error: a conflict or backend failure unwinds the
// function with a panic private to the engine, which Dosync recovers before
// it retries or returns the error. A Tx used after its Dosync returned panics
// with an error wrapping [ErrOutsideTx]. tx.Context() carries the
// transaction: a Dosync called with it on the same goroutine joins it.
//
// # Commit
//
// Read-only attempts commit nothing. When the coordinator holds every ref to
// be written and can commit them in one atomic step, the commit is that
// step. Otherwise a pending record in the coordinator, write locks
// (intents) on every written, commuted or ensured ref, commute values
// computed under them, one atomic step in the coordinator that draws the
// commit point and marks the record committed, then roll-forward
// (docs/design.md, "Committing"). Transactions see a snapshot: snapshot
// isolation, with Ensure to rule out write skew.
package txn
