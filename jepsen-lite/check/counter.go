package check

import (
	"cmp"
	"fmt"
	"sort"
)

// CounterChecker checks a counter history: ops F "add" (CounterValue K,
// Delta) and F "read" (K, V). A read of k must lie between the sum of the
// adds to k that completed ok before the read was invoked and the sum of
// the adds to k, ok or info, invoked before the read completed
// ("counter-out-of-range"). (A negative delta widens the range the other
// way.) The witness is the read. When the history has final reads (read
// with Op.Final), a counter with acknowledged adds that none of them
// reads is "unread-key", failing: the final reads read every counter of
// the run, so it was lost. The operations may go by other names (Add,
// Read), and the checker by another (Label).
type CounterChecker struct {
	Label     string // the checker's name (default "counter")
	Add, Read string // the operations' f (default "add" and "read")
}

// NewCounterChecker returns a counter checker.
func NewCounterChecker() *CounterChecker { return &CounterChecker{} }

// Name implements Checker.
func (c *CounterChecker) Name() string { return cmp.Or(c.Label, "counter") }

func (c *CounterChecker) addF() string  { return cmp.Or(c.Add, "add") }
func (c *CounterChecker) readF() string { return cmp.Or(c.Read, "read") }

// ckSums is a prefix-summed list of adds ordered by a time.
type ckSums struct {
	times    []int64
	pos, neg []int // prefix sums of positive and negative deltas; len(times)+1
}

func newCkSums(ts []int64, ds []int) ckSums {
	idx := make([]int, len(ts))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return ts[idx[a]] < ts[idx[b]] })
	s := ckSums{times: make([]int64, len(ts)), pos: make([]int, len(ts)+1), neg: make([]int, len(ts)+1)}
	for i, j := range idx {
		s.times[i] = ts[j]
		s.pos[i+1], s.neg[i+1] = s.pos[i], s.neg[i]
		if ds[j] > 0 {
			s.pos[i+1] += ds[j]
		} else {
			s.neg[i+1] += ds[j]
		}
	}
	return s
}

// upTo returns the number of adds with time < t (or <= t if inclusive)
// and their positive and negative sums.
func (s ckSums) upTo(t int64, inclusive bool) (n, pos, neg int) {
	if len(s.pos) == 0 {
		return 0, 0, 0
	}
	n = sort.Search(len(s.times), func(i int) bool {
		if inclusive {
			return s.times[i] > t
		}
		return s.times[i] >= t
	})
	return n, s.pos[n], s.neg[n]
}

// Check implements Checker.
func (c *CounterChecker) Check(h []Op) Result {
	res := Result{Checker: c.Name()}
	var ps []OpPair
	for _, p := range PairOps(h) {
		if p.Invoke.F == c.addF() || p.Invoke.F == c.readF() {
			ps = append(ps, p)
		}
	}
	ckCountTypes(&res, ps)
	type adds struct {
		okDone  []int64 // completion times of ok adds
		okD     []int
		mayInv  []int64 // invoke times of ok and info adds
		mayD    []int
		certain ckSums
		maybe   ckSums
	}
	byKey := map[int]*adds{}
	for _, p := range ps {
		if p.Invoke.F != c.addF() || p.Type() == Fail {
			continue
		}
		var v CounterValue
		if err := p.Invoke.Decode(&v); err != nil {
			res.Anomalies = append(res.Anomalies, Anomaly{Name: "malformed", Explain: err.Error(), Ops: []Op{p.Complete}})
			continue
		}
		a := byKey[v.K]
		if a == nil {
			a = &adds{}
			byKey[v.K] = a
		}
		a.mayInv = append(a.mayInv, p.Invoke.Time)
		a.mayD = append(a.mayD, v.Delta)
		if p.Type() == OK {
			a.okDone = append(a.okDone, p.Complete.Time)
			a.okD = append(a.okD, v.Delta)
		}
	}
	for _, a := range byKey {
		a.certain = newCkSums(a.okDone, a.okD)
		a.maybe = newCkSums(a.mayInv, a.mayD)
	}
	// The final reads read every counter of the run: one with
	// acknowledged adds that none of them read is gone from the final
	// state (with no final read at all, there is nothing to compare).
	finalRead := map[int]bool{}
	hasFinal := false
	firstOK := map[int]Op{}
	for _, p := range ps {
		var v CounterValue
		if p.Type() != OK || p.Invoke.Decode(&v) != nil {
			continue
		}
		switch {
		case p.Invoke.F == c.readF() && p.Invoke.Final:
			hasFinal, finalRead[v.K] = true, true
		case p.Invoke.F == c.addF():
			if _, ok := firstOK[v.K]; !ok {
				firstOK[v.K] = p.Complete
			}
		}
	}
	if hasFinal {
		var unread []int
		for k := range firstOK {
			if !finalRead[k] {
				unread = append(unread, k)
			}
		}
		sort.Ints(unread)
		for _, k := range unread {
			res.Anomalies = append(res.Anomalies, Anomaly{Name: "unread-key",
				Explain: fmt.Sprintf("counter %d has %d acknowledged %s(s) (the first: op %d) but no final read: the final reads read every counter of the run after every client stopped, so it, and its %ss, were lost",
					k, len(byKey[k].okD), c.addF(), firstOK[k].Index, c.addF()),
				Ops: []Op{firstOK[k]}})
		}
	}
	for _, p := range ps {
		if p.Invoke.F != c.readF() || p.Type() != OK {
			continue
		}
		var v CounterValue
		if err := p.Complete.Decode(&v); err != nil {
			res.Anomalies = append(res.Anomalies, Anomaly{Name: "malformed", Explain: err.Error(), Ops: []Op{p.Complete}})
			continue
		}
		a := byKey[v.K]
		if a == nil {
			a = &adds{}
		}
		nc, cpos, cneg := a.certain.upTo(p.Invoke.Time, false)
		nm, mpos, mneg := a.maybe.upTo(p.Complete.Time, true)
		lo := cpos + cneg + (mneg - cneg)
		hi := cpos + cneg + (mpos - cpos)
		if v.V >= lo && v.V <= hi {
			continue
		}
		res.Anomalies = append(res.Anomalies, Anomaly{Name: "counter-out-of-range",
			Explain: fmt.Sprintf("read (%s) of counter %d = %d, invoked at %s and completed at %s: the %d adds that completed ok before it was invoked sum to %d, and the %d adds (ok or info) invoked before it completed allow at most %d, so it must be in [%d, %d]",
				ckOpRef(p), v.K, v.V, ckFmtTime(p.Invoke.Time), ckFmtTime(p.Complete.Time), nc, cpos+cneg, nm, hi, lo, hi),
			Ops: []Op{p.Complete}})
	}
	return ckFinish(&res)
}
