package check

import (
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// DefaultCheckTimeout bounds a linearizability search (porcupine's) when
// the checker is given no timeout.
const DefaultCheckTimeout = 30 * time.Second

// TimeoutSetter is a checker whose searches take a timeout (the
// linearizability checkers: LinearChecker, MutexChecker).
type TimeoutSetter interface {
	Checker
	// SetTimeout bounds the checker's searches: a key not decided by
	// then is linearizability-unknown.
	SetTimeout(time.Duration)
}

// ckPartVerdict is porcupine's verdict on one partition of a history (one
// key): Ok, Illegal (with its longest partial linearizations), or
// Unknown (the search did not finish in time).
type ckPartVerdict struct {
	Result   porcupine.CheckResult
	Partials [][]porcupine.Operation
	Elapsed  time.Duration
}

// ckCheckParts checks each partition on its own, all at once, within one
// deadline (timeout from now): a partition porcupine finishes is decided
// (Ok or Illegal) whatever the others do, and only those it cannot finish
// by the deadline are Unknown. (One porcupine call over every partition
// says Unknown for all of them when any one runs out of time, and a key it
// could not finish looks no different from one it found illegal.)
func ckCheckParts(model porcupine.Model, parts [][]porcupine.Operation, timeout time.Duration) []ckPartVerdict {
	if timeout <= 0 {
		timeout = DefaultCheckTimeout
	}
	deadline := time.Now().Add(timeout)
	one := model
	one.Partition, one.PartitionEvent = nil, nil
	out := make([]ckPartVerdict, len(parts))
	var wg sync.WaitGroup
	for i, part := range parts {
		wg.Go(func() {
			start := time.Now()
			left := time.Until(deadline)
			if left <= 0 { // porcupine takes 0 as no limit
				out[i] = ckPartVerdict{Result: porcupine.Unknown}
				return
			}
			res, info := porcupine.CheckOperationsVerbose(one, part, left)
			out[i] = ckPartVerdict{Result: res, Elapsed: time.Since(start)}
			if res == porcupine.Illegal {
				if ps := info.PartialLinearizationsOperations(); len(ps) > 0 {
					out[i].Partials = ps[0]
				}
			}
		})
	}
	wg.Wait()
	return out
}
