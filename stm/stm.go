package stm

import (
	"context"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/internal/lease"
	"github.com/epochal/epochal/txn"
)

// Errors of Dosync and Open.
var (
	// ErrRetryLimit: the transaction conflicted more times than
	// WithMaxRetries allows. It also wraps txn.ErrConflict, with the
	// reason of the last retry in its message.
	ErrRetryLimit = engine.ErrRetryLimit
	// ErrClosed: the STM was closed.
	ErrClosed = engine.ErrClosed
	// ErrNilFunc: Dosync was given a nil function.
	ErrNilFunc = engine.ErrNilFunc
	// ErrOutcomeUnknown: see txn.ErrOutcomeUnknown.
	ErrOutcomeUnknown = txn.ErrOutcomeUnknown
	// ErrDataLost: a backend of the STM lost its data under it (see
	// backend.ErrDataLost). The STM refuses every later call with it;
	// reopen the backend and the STM once the data is restored or
	// deliberately recreated.
	ErrDataLost = engine.ErrDataLost
)

// STM runs transactions against one coordinator backend. It is safe for
// concurrent use; open one per process and coordinator and share it.
type STM struct {
	// handle carries the engine's Runtime (internal/engine), which refs
	// reach and this package's users do not.
	handle
}

type handle = engine.Handle

// rt is s's engine.
func (s *STM) rt() *engine.Runtime { return engine.Of(s) }

// Open returns an STM whose coordinator is coord. It checks that coord
// answers and recovers what dead processes left behind.
func Open(ctx context.Context, coord backend.Driver, opts ...Option) (*STM, error) {
	set := make([]func(*engine.Settings) error, len(opts))
	for i, o := range opts {
		set[i] = o
	}
	rt, err := engine.Open(ctx, coord, set...)
	if err != nil {
		return nil, err
	}
	return &STM{handle: engine.NewHandle(rt)}, nil
}

// Close stops the STM's background work (sweeps, watches). Later calls
// fail with ErrClosed. It does not close the backends.
func (s *STM) Close() error { return s.rt().Close() }

// Err says why the STM can no longer be used: ErrClosed after Close, or an
// error wrapping ErrDataLost once a backend lost its data; nil while it
// can be.
func (s *STM) Err() error { return s.rt().Err() }

// Coordinator returns the backend that holds the clock and records.
func (s *STM) Coordinator() backend.Driver { return s.rt().Coordinator() }

// Sessions returns the coordinator's sessions (backend.Sessions), nil if it
// keeps none: an *STM is a backend.SessionStore, so locks and groups can be
// built over it as over a driver.
func (s *STM) Sessions() backend.Sessions {
	if s == nil {
		return nil
	}
	return lease.Of(s.rt().Coordinator())
}

// ReadPoint returns a point at least as new as any this process has seen
// (for refs' At).
func (s *STM) ReadPoint(ctx context.Context) (clock.Point, error) { return s.rt().ReadPoint(ctx) }

// Recover aborts and rolls back the transactions of dead processes whose
// leases have run out, rolls forward committed ones left half-finished,
// and deletes their records. It runs at Open and every sweep interval; it
// returns how many transactions it recovered.
func (s *STM) Recover(ctx context.Context) (int, error) { return s.rt().Recover(ctx) }

// Dosync runs fn in a transaction and commits it, retrying on conflict. fn
// returning an error aborts the transaction: nothing is written, the error
// is returned, and fn is not run again.
//
// If ctx carries a transaction of this STM started on the same goroutine
// (tx.Context()), fn joins it, as in Clojure: its reads and writes are the
// outer transaction's, committed with it. An error returned by a joined fn
// dooms the outer transaction, because the writes fn made before it failed
// cannot be taken back on their own: the outer Dosync then returns that
// error (unless its own function returns another first) and writes
// nothing, and a later use of the Tx in the outer function ends it.
func (s *STM) Dosync(ctx context.Context, fn func(tx *txn.Tx) error) error {
	return s.rt().Dosync(ctx, fn)
}

// Stats is a snapshot of the engine's counters.
type Stats struct {
	Commits, ReadOnly, Retries, Conflicts, ReadFaults, Yields int64
	OnePhase, General, Recomputes, Unknown, Helped            int64
	// Waits counts the times a commit waited for another transaction's
	// intent (to commit or abort) instead of retrying; Escalated the
	// fast-path commits whose commutes went stale DefaultCommuteRounds
	// times and that took their refs with intents instead.
	Waits, Escalated int64
	// TurnWaits counts the times a transaction waited for its local turn
	// on a ref another transaction of this process was writing; Wounds
	// the retries of transactions that gave way, the youngest of a cycle
	// of such waits; Extended the read points moved forward after such a
	// wait instead of a retry (see WithoutLocalTurns).
	TurnWaits, Wounds, Extended int64
	// MaxRetries is the most retries one successful Dosync needed.
	MaxRetries int64
}

// Stats returns the STM's counters so far.
func (s *STM) Stats() Stats {
	c := s.rt().Counters()
	return Stats{
		Commits: c.Commits.Load(), ReadOnly: c.ReadOnly.Load(), Retries: c.Retries.Load(),
		Conflicts: c.Conflicts.Load(), ReadFaults: c.ReadFaults.Load(), Yields: c.Yields.Load(),
		OnePhase: c.OnePhase.Load(), General: c.General.Load(), Recomputes: c.Recomputes.Load(),
		Unknown: c.Unknown.Load(), Helped: c.Helped.Load(), MaxRetries: c.MaxRetries.Load(), Waits: c.Waits.Load(),
		Escalated: c.Escalated.Load(), TurnWaits: c.TurnWaits.Load(), Wounds: c.Wounds.Load(), Extended: c.Extended.Load(),
	}
}
