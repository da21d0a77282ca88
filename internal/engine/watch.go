package engine

import "time"

// Timings of refs' watchers, variables so that tests (and jepsen-lite's
// watch workload) can shorten them. Set them before any watch starts.
var (
	// WatchFeedWait bounds how long a watcher waits for its change feed
	// to catch up with a history that was trimmed past what the watcher
	// saw, before it announces a gap.
	WatchFeedWait = 2 * time.Second
	// WatchPoll is how often a watcher re-reads a ref's history without a
	// hint: the safety net under change hints that a backend may lose.
	WatchPoll = time.Second
	// WatchStart bounds how long AddWatch waits for the watcher's first
	// read of the ref's history (its starting point).
	WatchStart = 5 * time.Second
)
