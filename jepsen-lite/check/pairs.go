package check

import (
	"fmt"
	"sort"
	"time"
)

// OpPair is one operation of a history: an invoke and its completion.
type OpPair struct {
	Invoke Op
	// Complete is the completion (OK, Fail or Info). An invoke the
	// history never completes gets a synthetic Info completion (Synthetic
	// set) with the invoke's value, at the end of the history.
	Complete  Op
	Synthetic bool
	// InvokePos and CompletePos are the events' positions in the history
	// slice (CompletePos is -1 for a synthetic completion).
	InvokePos, CompletePos int
}

// Type is the pair's completion type.
func (p OpPair) Type() Type { return p.Complete.Type }

// PairOps matches every invoke of h with the next completion of the same
// process, in history order, and returns the operations in invoke order.
// A completion without an invoke is ignored; an invoke followed by another
// invoke of the same process (or by nothing) becomes Info, as does an
// invoke whose history ends before its completion.
//
// If the Index fields of h are not distinct (a history merged from
// workers' files before renumbering), the returned ops carry their
// position in h as Index, so that witnesses name them unambiguously.
func PairOps(h []Op) []OpPair {
	renumber := false
	seen := make(map[int]struct{}, len(h))
	var maxTime int64
	for _, o := range h {
		if _, dup := seen[o.Index]; dup {
			renumber = true
		}
		seen[o.Index] = struct{}{}
		maxTime = max(maxTime, o.Time)
	}
	at := func(i int) Op {
		o := h[i]
		if renumber {
			o.Index = i
		}
		return o
	}
	var out []OpPair
	open := map[int]int{} // process -> index in out
	synth := func(j int) {
		p := &out[j]
		p.Complete = p.Invoke
		p.Complete.Type = Info
		p.Complete.Time = maxTime + 1
		p.Complete.Error = "no completion in the history"
		p.Synthetic = true
		p.CompletePos = -1
	}
	for i := range h {
		o := at(i)
		switch o.Type {
		case Invoke:
			if j, ok := open[o.Process]; ok {
				synth(j)
			}
			open[o.Process] = len(out)
			out = append(out, OpPair{Invoke: o, InvokePos: i, CompletePos: -1})
		case OK, Fail, Info:
			j, ok := open[o.Process]
			if !ok {
				continue
			}
			delete(open, o.Process)
			out[j].Complete = o
			out[j].CompletePos = i
			if len(o.Value) == 0 {
				out[j].Complete.Value = out[j].Invoke.Value
			}
		}
	}
	for _, j := range open {
		synth(j)
	}
	return out
}

// ckCountTypes fills a result's OK, Fail and Info counts.
func ckCountTypes(r *Result, ps []OpPair) {
	for _, p := range ps {
		switch p.Type() {
		case OK:
			r.OK++
		case Fail:
			r.Fail++
		case Info:
			r.Info++
		}
	}
}

// ckFinish sets Valid and Unknown from the anomalies (a failing one
// makes the result FAIL whatever else; an Unknown one, UNKNOWN) and
// orders them by name, then by their first witness op.
func ckFinish(r *Result) Result {
	failed, unknown := false, false
	for _, a := range r.Anomalies {
		switch {
		case a.Unknown:
			unknown = true
		case !a.Allowed:
			failed = true
		}
	}
	r.Valid, r.Unknown = !failed && !unknown, !failed && unknown
	first := func(a Anomaly) int {
		if len(a.Ops) == 0 {
			return -1
		}
		return a.Ops[0].Index
	}
	sort.SliceStable(r.Anomalies, func(i, j int) bool {
		a, b := r.Anomalies[i], r.Anomalies[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return first(a) < first(b)
	})
	return *r
}

// ckOpRef names an operation in an explanation: "op 12" (its completion),
// or "op 12 (info, invoked as op 10)" for an operation whose outcome is
// unknown.
func ckOpRef(p OpPair) string {
	switch {
	case p.Synthetic:
		return fmt.Sprintf("op %d, never completed", p.Invoke.Index)
	case p.Type() == Info:
		return fmt.Sprintf("op %d, info", p.Complete.Index)
	case p.Type() == Fail:
		return fmt.Sprintf("op %d, failed", p.Complete.Index)
	}
	return fmt.Sprintf("op %d", p.Complete.Index)
}

// ckFmtTime renders a history time (ns since the run began).
func ckFmtTime(ns int64) string { return time.Duration(ns).String() }

// ckSortedKeys returns a map's int keys in order.
func ckSortedKeys[V any](m map[int]V) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	return ks
}
