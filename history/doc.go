// Package history holds the rules for a ref's version history: which version
// a read at a point sees, when a read faults, how far history is kept and how
// it grows.
//
// Every backend keeps a ref's versions newest first and applies these rules
// (the Redis backend restates them in Lua; the conformance suite checks both
// agree). A ref keeps its newest version plus Keep older ones. Keep starts at
// the ref's MinHistory and grows by one, up to MaxHistory, each time a read
// faults because history no longer reaches back to the reader's point
// (I2 in docs/design.md), as Clojure's refs do.
//
// # Usage
//
//	v, res := history.Pick(versions, rp)
//	if res == history.Fault { keep = history.Grow(keep, maxHistory) }
//	versions, trimmed = history.Trim(versions, keep, trimmed)
package history
