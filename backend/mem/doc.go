// Package mem is the embedded backend: refs, the clock and transaction
// records in this process's memory.
//
// It is safe for many goroutines and for many STM handles in one process, it
// implements the one-phase fast path, and it passes the same conformance
// suite (package backendtest) as the server backends. Its data lives and dies
// with the process: use it for single-process programs, tests and examples.
//
// # Usage
//
//	b := mem.New()
//	defer b.Close()
//	s, err := stm.Open(ctx, b)
package mem
