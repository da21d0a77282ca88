// Package txn is one attempt of a transaction: its read point, its read,
// write, commute and ensure sets, and the commit protocol that publishes them.
//
// Users meet a *Tx as the argument of stm.Dosync's function and pass it to
// refs' methods (alice.Get(tx), bob.Commute(tx, f)); they do not call the
// byte-level methods here, which exist for reference types (package refs).
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
// be written and offers backend.OnePhase, the commit is that one atomic
// operation. Otherwise it is the general path of docs/design.md: a pending
// record in the coordinator, intents on every written, commuted or ensured
// ref (one batch per backend, backends in parallel, then one at a time in
// the order of their IDs once another transaction's intent is in the way:
// a commit waits for such an intent instead of running the function again,
// and never in a cycle), commute values computed under the intents, one
// atomic step in the coordinator that draws the commit point and marks the
// record committed, then roll-forward.
package txn
