package engine

import "sync/atomic"

// Stats counts what the engine did; every field is updated atomically.
type Stats struct {
	Commits    atomic.Int64 // attempts that committed writes
	ReadOnly   atomic.Int64 // attempts that committed with nothing to write
	Retries    atomic.Int64 // attempts that ended in a retry
	Conflicts  atomic.Int64 // retries from first committer wins
	ReadFaults atomic.Int64 // retries because history did not reach back
	Yields     atomic.Int64 // retries because an older transaction aborted this one
	Waits      atomic.Int64 // times a commit waited for another's intent
	Escalated  atomic.Int64 // fast-path commits of stale commutes finished on the general path
	OnePhase   atomic.Int64 // commits by the backend's fast path
	General    atomic.Int64 // commits by the general path
	Recomputes atomic.Int64 // commute values computed again on a stale base
	Unknown    atomic.Int64 // commit outcomes that had to be looked up
	Helped     atomic.Int64 // other transactions' intents resolved
	TurnWaits  atomic.Int64 // times an attempt waited for a local turn (Turns)
	Wounds     atomic.Int64 // retries of attempts that gave way in a cycle of waits for local turns
	Extended   atomic.Int64 // read points moved forward after a local turn (Tx.extend)
	// MaxRetries is the most retries any one Dosync needed before it
	// succeeded: the starvation figure.
	MaxRetries atomic.Int64
}

// NoteRetries records that a Dosync succeeded after n retries.
func (s *Stats) NoteRetries(n int64) {
	for {
		cur := s.MaxRetries.Load()
		if n <= cur || s.MaxRetries.CompareAndSwap(cur, n) {
			return
		}
	}
}
