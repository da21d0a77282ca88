// Package locks holds distributed mutexes and read-write locks with
// fencing tokens (Mutex, RWMutex), and the write locks (intents) that the
// commit protocol takes, the leases that bound how long a dead holder can
// block anyone, and their recovery.
//
// # Mutex and RWMutex
//
//	m, err := locks.NewMutex(s, "jobs/cleanup") // s: an *stm.STM or a backend.Driver
//	if err := m.Lock(ctx); err != nil { ... }  // FIFO; ctx bounds the wait
//	defer m.Unlock(ctx)
//	tok := m.Token()                            // pass it to the guarded resource
//	<-m.Lost()                                  // closed if the lease could not be kept
//
// A lock lives in its backend as a queue of entries of this process's
// session (backend.Sessions; see internal/lease): the first in line holds
// it, and the fencing token is its entry's sequence number, larger than
// every earlier holder's. The session is renewed every third of the lease;
// when the holder can no longer be sure of it, Lost is closed before the
// backend frees the lock for anyone else. docs/design.md ("Locks and
// groups") gives the argument.
//
// A *Mutex shared by goroutines excludes them as sync.Mutex does: the
// holder is the goroutine that called Lock (reentrant on it), the others
// wait, first in the process and then at the backend, and Token and Lost
// answer for the calling goroutine. TryLock returns (false, nil) only for
// a lock still held by another at its deadline, (false, err) on a backend
// failure.
//
// # Intents
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
