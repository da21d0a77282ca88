// Package engine is the transaction engine behind stm, txn and refs: the
// attempt (Tx) with its read point and its read, write, commute and ensure
// sets; both commit paths; the retry loop (Runtime.Dosync); intent
// resolution and priorities (Resolver); local turns (Turns); and the two
// rules every reader and writer outside a transaction shares: the committed
// view of a ref (one read rule) and a one-ref compare-and-set that learns
// an unknown outcome (one learn). No package outside the engine calls a
// driver's record or intent methods.
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
//
// # Intents
//
// An intent is a lock on one ref, stored with the ref in its own backend,
// naming the transaction that holds it. The holder's transaction record, in
// the coordinator, says whether the intent is pending, committed (roll it
// forward) or aborted (roll it back). Whoever meets an intent uses a
// Resolver to decide what to do:
//
//   - committed: roll it forward (the write becomes a version at its CP);
//   - aborted, or no record at all (confirmed by AbortRecord, never believed
//     from a lookup that may be stale): roll it back;
//   - pending with its lease run out: abort the record (a CAS from pending,
//     which fails if the holder committed first) and roll back;
//   - pending and live: contention management. A committer waits for the
//     holder (looking again with growing pauses, and repeating its step,
//     which takes the intent once it is given back); an older one that
//     writes or ensures the ref aborts a younger holder after a short wait
//     (the older wins); a commute never aborts a live holder.
//
// Resolver.Sweep recovers the records of dead processes: it aborts expired
// pending records, resolves every intent they name and deletes them, so
// nothing stays locked longer than a lease and no record outlives its use.
package engine
