// Package locks holds distributed mutexes and read-write locks with
// fencing tokens (Mutex, RWMutex).
//
// # Mutex and RWMutex
//
//	m, err := locks.NewMutex(s, "jobs/cleanup") // s: an *stm.STM or a driver (a backend.SessionStore)
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
// # Logs and metrics
//
// What a lock does in the background (renewing its session, removing an
// entry it gave up) cannot fail a call: failures are logged to
// WithLogger's logger, by default the STM's when the store is an *stm.STM
// (stm.WithLogger), else slog.Default() (looked up at each record, so
// one set after NewMutex is used). Waits and holds are measured
// through OpenTelemetry's API (epochal.lock.wait.duration,
// epochal.lock.held.duration, epochal.session.lost) to WithMeterProvider's
// provider, by default the STM's, else otel.GetMeterProvider(): a no-op
// until one is installed.
package locks
