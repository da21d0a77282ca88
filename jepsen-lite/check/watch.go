package check

import (
	"fmt"
	"sort"
)

// WatchChecker checks a watch history: counters changed only by
// increments ("incr", CounterValue K; V the value committed), so the
// committed versions of counter k are exactly 1..N, N its final read
// ("read" with Op.Final); and watchers, one process per watcher and
// counter, recording each watch call ("deliver", WatchValue K, Old, New),
// each gap notice ("gap", K, From, To), what they started from
// ("watch-start", K, V) and, for those that lived to the end, that they
// settled ("watch-end", K, V).
//
// A committed version must be delivered once, in order, or be covered by
// a gap notice: the notice comes right before the delivery that jumps
// over it. So, per watcher, in the order it recorded:
//
//   - watch-hole: a delivery (old, new) with new more than one past the
//     last value delivered (or, first, past the smaller of old and the
//     watcher's start), and no gap notice right before it: the versions
//     in between were skipped silently;
//   - watch-duplicate: a value delivered twice;
//   - watch-out-of-order: a value delivered after a larger one;
//   - watch-inconsistent: a delivery whose old value is not the last
//     value delivered, or a gap notice whose From is not before its To;
//   - watch-garbage: a value delivered beyond the counter's final value
//     (never committed);
//   - watch-undelivered: a watcher that settled (watch-end) without
//     having delivered the final value, nor been told of a gap up to it;
//
// and for the counters:
//
//   - lost-update: two acknowledged increments of a counter committed
//     the same value (one overwrote the other).
//
// A gap notice that covers a jump is reported as announced-gap, allowed.
// When nothing could be checked (no final read of a watched counter, no
// watcher that settled, no delivery at all), the check is inconclusive
// (UNKNOWN, not a pass): watch-unchecked, Unknown, says why.
type WatchChecker struct{}

// NewWatchChecker returns a watch checker.
func NewWatchChecker() *WatchChecker { return &WatchChecker{} }

// Name implements Checker.
func (c *WatchChecker) Name() string { return "watch" }

// watchEvents is one watcher's record, in order.
type watchEvents struct {
	proc, k int
	ops     []Op
	vals    []WatchValue
}

// Check implements Checker.
func (c *WatchChecker) Check(h []Op) Result {
	res := Result{Checker: c.Name()}
	add := func(a Anomaly) { res.Anomalies = append(res.Anomalies, a) }
	final := map[int]int{}
	finalOp := map[int]Op{}
	committed := map[[2]int]Op{} // (k, value) -> the acknowledged increment
	watchers := map[int]*watchEvents{}
	var order []int
	var counted []OpPair
	for _, p := range PairOps(h) {
		switch p.Invoke.F {
		case "incr", "read":
			counted = append(counted, p)
			if p.Type() != OK {
				continue
			}
			var v CounterValue
			if err := p.Complete.Decode(&v); err != nil {
				add(Anomaly{Name: "malformed", Explain: err.Error(), Ops: []Op{p.Complete}})
				continue
			}
			if p.Invoke.F == "read" {
				if p.Invoke.Final {
					final[v.K], finalOp[v.K] = v.V, p.Complete
				}
				continue
			}
			key := [2]int{v.K, v.V}
			if prev, dup := committed[key]; dup {
				add(Anomaly{Name: "lost-update", Ops: []Op{prev, p.Complete},
					Explain: fmt.Sprintf("two acknowledged increments of counter %d both committed %d (op %d and op %d): one overwrote the other",
						v.K, v.V, prev.Index, p.Complete.Index)})
				continue
			}
			committed[key] = p.Complete
		case "deliver", "gap", "watch-start", "watch-end":
			if p.Type() != OK {
				continue
			}
			var v WatchValue
			if err := p.Complete.Decode(&v); err != nil {
				add(Anomaly{Name: "malformed", Explain: err.Error(), Ops: []Op{p.Complete}})
				continue
			}
			w := watchers[p.Invoke.Process]
			if w == nil {
				w = &watchEvents{proc: p.Invoke.Process, k: v.K}
				watchers[p.Invoke.Process] = w
				order = append(order, p.Invoke.Process)
			}
			w.ops = append(w.ops, p.Complete)
			w.vals = append(w.vals, v)
		}
	}
	ckCountTypes(&res, counted)
	sort.Ints(order)
	deliveries, settled := 0, 0
	unread := map[int]bool{}
	for _, proc := range order {
		w := watchers[proc]
		n, known := final[w.k]
		if !known && !unread[w.k] {
			unread[w.k] = true
			add(Anomaly{Name: "watch-unchecked", Unknown: true, Ops: []Op{w.ops[0]},
				Explain: fmt.Sprintf("counter %d has watchers (process %d, ...) but no final read: what they should have delivered is unknown", w.k, proc)})
		}
		d, s := c.checkWatcher(w, n, known, finalOp[w.k], add)
		deliveries += d
		if s {
			settled++
		}
	}
	switch {
	case len(order) == 0:
		add(Anomaly{Name: "watch-unchecked", Unknown: true, Explain: "no watcher recorded anything"})
	case deliveries == 0:
		add(Anomaly{Name: "watch-unchecked", Unknown: true, Explain: "no watcher delivered anything: nothing was checked"})
	case settled == 0:
		add(Anomaly{Name: "watch-unchecked", Unknown: true, Explain: "no watcher settled (watch-end): whether they would have delivered every version is unknown"})
	}
	return ckFinish(&res)
}

// checkWatcher checks one watcher's record against the counter's final
// value n (if known); it returns how many deliveries it saw and whether
// the watcher settled.
func (c *WatchChecker) checkWatcher(w *watchEvents, n int, known bool, finalRead Op, add func(Anomaly)) (int, bool) {
	fail := func(name, explain string, ops ...Op) { add(Anomaly{Name: name, Explain: explain, Ops: ops}) }
	who := fmt.Sprintf("the watcher of counter %d (process %d)", w.k, w.proc)
	delivered := map[int]Op{}
	var gap *Op
	var gapV WatchValue
	last, hasLast := 0, false
	start, hasStart := 0, false
	settled := false
	var endOp Op
	deliveries := 0
	// The watcher's start (watch-start V: at most the version it started
	// from) bounds its first delivery: the versions after the start up
	// to that delivery's old value were committed after it started and
	// never delivered. The start is recorded once AddWatch returned, so
	// after the first deliveries, maybe: look it up first.
	start0, hasStart0 := 0, false
	for i, v := range w.vals {
		if w.ops[i].F == "watch-start" {
			start0, hasStart0 = v.V, true
			break
		}
	}
	for i, v := range w.vals {
		o := w.ops[i]
		switch o.F {
		case "watch-start":
			start, hasStart = v.V, true
		case "watch-end":
			settled, endOp = true, o
		case "gap":
			if v.From >= v.To {
				fail("watch-inconsistent", fmt.Sprintf("%s was told of a gap after point %d up to point %d (op %d): it names no version", who, v.From, v.To, o.Index), o)
				continue
			}
			gap, gapV = &w.ops[i], v
		case "deliver":
			deliveries++
			base := v.Old
			fromStart := false
			switch {
			case hasLast:
				base = last
			case hasStart0 && v.Old > start0:
				base, fromStart = start0, true
			}
			if prev, dup := delivered[v.New]; dup {
				fail("watch-duplicate", fmt.Sprintf("%s delivered %d twice (op %d, then op %d as %d -> %d)", who, v.New, prev.Index, o.Index, v.Old, v.New), prev, o)
				gap = nil
				continue
			}
			if hasLast && v.New < last {
				fail("watch-out-of-order", fmt.Sprintf("%s delivered %d -> %d (op %d) after it had delivered %d", who, v.Old, v.New, o.Index, last), o)
				delivered[v.New] = o
				gap = nil
				continue
			}
			if hasLast && v.Old != last {
				fail("watch-inconsistent", fmt.Sprintf("%s delivered %d -> %d (op %d), but the last value it delivered was %d", who, v.Old, v.New, o.Index, last), o)
			}
			if known && v.New > n {
				fail("watch-garbage", fmt.Sprintf("%s delivered %d -> %d (op %d), but counter %d ended at %d (op %d): %d was never committed", who, v.Old, v.New, o.Index, w.k, n, finalRead.Index, v.New), o, finalRead)
			}
			if v.New > base+1 {
				missed := ckFmtRange(base+1, v.New-1)
				what := fmt.Sprintf("%s delivered %d -> %d (op %d)", who, v.Old, v.New, o.Index)
				if fromStart {
					what = fmt.Sprintf("%s, which started at most at %d, first delivered %d -> %d (op %d)", who, start0, v.Old, v.New, o.Index)
				}
				if gap == nil {
					fail("watch-hole", fmt.Sprintf("%s with no gap notice before it: %s committed, neither delivered nor announced", what, missed), o)
				} else {
					add(Anomaly{Name: "announced-gap", Allowed: true, Ops: []Op{*gap, o},
						Explain: fmt.Sprintf("%s was told of a gap after point %d up to point %d (op %d), then delivered %d -> %d (op %d): it missed %s, and said so",
							who, gapV.From, gapV.To, gap.Index, v.Old, v.New, o.Index, missed)})
				}
			}
			delivered[v.New] = o
			last, hasLast = v.New, true
			gap = nil
		}
	}
	if !settled || !known {
		return deliveries, settled
	}
	reached, how := last, "delivered up to"
	if !hasLast {
		reached, how = start, "delivered nothing, having started at most at"
		if !hasStart {
			reached = 0
		}
	}
	if reached < n {
		fail("watch-undelivered", fmt.Sprintf("%s settled (op %d) but %s %d, while counter %d ended at %d (op %d): %s committed, never delivered nor announced",
			who, endOp.Index, how, reached, w.k, n, finalRead.Index, ckFmtRange(reached+1, n)), endOp, finalRead)
	}
	return deliveries, settled
}

// ckFmtRange renders the values lo..hi.
func ckFmtRange(lo, hi int) string {
	if lo == hi {
		return fmt.Sprintf("version %d", lo)
	}
	return fmt.Sprintf("versions %d to %d", lo, hi)
}
