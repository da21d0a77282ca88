// Package locks holds the write locks (intents) that the commit protocol
// takes, the leases that bound how long a dead holder can block anyone, and
// their recovery.
//
// An intent is a lock on one ref, stored with the ref in its own backend,
// naming the transaction that holds it. The holder's transaction record, in
// the coordinator, says whether the intent is pending, committed (roll it
// forward) or aborted (roll it back). Whoever meets an intent uses a
// [Resolver] to decide what to do:
//
//   - committed: roll it forward (the write becomes a version at its CP);
//   - aborted, or no record at all: roll it back;
//   - pending with its lease run out: abort the record (a CAS from pending,
//     which fails if the holder committed first) and roll back;
//   - pending and live: contention management. The older transaction (the
//     smaller priority, the read point of its Dosync's first attempt) waits
//     a little, then aborts the younger; the younger backs off.
//
// [Resolver.Sweep] recovers the records of dead processes: it aborts expired
// pending records, resolves every intent they name and deletes them, so
// nothing stays locked longer than a lease and no record outlives its use.
//
// # Usage
//
// The engine (packages txn and stm) is the user of this package:
//
//	r := &locks.Resolver{Coord: coord, Wall: clock.System, Lookup: s.Backend}
//	act, err := r.Clear(ctx, drv, name, conflict.Intent, myPriority)
//	if act == locks.Yield { /* back off and retry the attempt */ }
//	n, err := r.Sweep(ctx) // what STM.Recover runs
package locks
