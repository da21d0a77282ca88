package check

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// LinearConfig configures the linearizability checker.
type LinearConfig struct {
	// Timeout bounds porcupine's search, every key's at once; 0 means
	// DefaultCheckTimeout. A key whose search runs out of time is
	// neither valid nor invalid: an Unknown "linearizability-unknown"
	// anomaly says so, and the result is UNKNOWN unless another key
	// fails.
	Timeout time.Duration
	// Initial, when set, is every register's value before the history
	// (present, as an atom created with it is); nil: registers start
	// absent.
	Initial *int
}

// init is the registers' state before the history.
func (c LinearConfig) init() ckRegState {
	if c.Initial == nil {
		return ckRegState{}
	}
	return ckRegState{Found: true, V: *c.Initial}
}

// LinearChecker checks a register history (ops F "read", "write", "cas"
// with RegisterValue values, one register per key, each starting absent
// or at Config.Initial)
// for linearizability with porcupine, each key searched on its own (so
// that a key whose search runs out of time leaves the others decided; it
// is reported as "linearizability-unknown", Unknown). Failed ops
// never happened and are dropped; info ops may have taken effect, at any
// time up to the end of the history, or never. A key that cannot be
// linearized is reported as "nonlinearizable", its witness the end of the
// longest linearizable prefix porcupine found and the op that cannot be
// placed after it.
type LinearChecker struct {
	Config LinearConfig
}

// NewLinearChecker returns a linearizability checker with a 30s timeout.
func NewLinearChecker() *LinearChecker { return &LinearChecker{} }

// NewLinearCheckerFrom returns a linearizability checker with a 30s
// timeout for registers that all start present, holding initial.
func NewLinearCheckerFrom(initial int) *LinearChecker {
	return &LinearChecker{Config: LinearConfig{Initial: &initial}}
}

// Name implements Checker.
func (c *LinearChecker) Name() string { return "linearizable" }

// Check implements Checker.
func (c *LinearChecker) Check(h []Op) Result {
	r, _ := c.checkVerbose(h)
	return r
}

// linearViz is what porcupine needs to draw a checked history.
type linearViz struct {
	model   porcupine.Model
	ops     []porcupine.Operation
	timeout time.Duration
}

// writeHTML writes porcupine's interactive visualization of the history
// and its (partial) linearizations to path (searching again, every key at
// once, within the checker's timeout).
func (v *linearViz) writeHTML(path string) error {
	_, info := porcupine.CheckOperationsVerbose(v.model, v.ops, v.timeout)
	return porcupine.VisualizePath(v.model, info, path)
}

// WriteLinearizableHTML checks h and writes porcupine's visualization to
// path.
func WriteLinearizableHTML(h []Op, cfg LinearConfig, path string) (Result, error) {
	r, v := (&LinearChecker{Config: cfg}).checkVerbose(h)
	return r, v.writeHTML(path)
}

// Register model: inputs, outputs and states.
type ckRegIn struct {
	F            string // read, write, cas
	K            int
	V, Old, New  int
	Process, Pos int // for descriptions: the process, the pair's index
}

type ckRegOut struct {
	Unknown bool // an info op: any outcome
	V       int
	Found   bool
}

type ckRegState struct {
	Found bool
	V     int
}

func (s ckRegState) String() string {
	if !s.Found {
		return "absent"
	}
	return fmt.Sprint(s.V)
}

func ckRegStep(state, input, output any) (bool, any) {
	s, in, out := state.(ckRegState), input.(ckRegIn), output.(ckRegOut)
	switch in.F {
	case "read":
		if out.Unknown {
			return true, s
		}
		return out.Found == s.Found && (!out.Found || out.V == s.V), s
	case "write":
		return true, ckRegState{true, in.V}
	case "cas":
		if s.Found && s.V == in.Old {
			return true, ckRegState{true, in.New}
		}
		return out.Unknown, s // an info cas whose compare failed did nothing
	}
	return false, s
}

func ckRegDescribe(input, output any) string {
	in, out := input.(ckRegIn), output.(ckRegOut)
	var s string
	switch in.F {
	case "read":
		switch {
		case out.Unknown:
			s = "read() -> ?"
		case out.Found:
			s = fmt.Sprintf("read() -> %d", out.V)
		default:
			s = "read() -> absent"
		}
	case "write":
		s = fmt.Sprintf("write(%d)", in.V)
	case "cas":
		s = fmt.Sprintf("cas(%d, %d)", in.Old, in.New)
	}
	if out.Unknown && in.F != "read" {
		s += " (info)"
	}
	return s
}

func ckRegPartition(ops []porcupine.Operation) [][]porcupine.Operation {
	by := map[int][]porcupine.Operation{}
	for _, o := range ops {
		k := o.Input.(ckRegIn).K
		by[k] = append(by[k], o)
	}
	var out [][]porcupine.Operation
	for _, k := range ckSortedKeys(by) {
		out = append(out, by[k])
	}
	return out
}

func ckRegModel(init ckRegState) porcupine.Model {
	return porcupine.Model{
		Partition: ckRegPartition,
		Init:      func() any { return init },
		Step:      ckRegStep,
		DescribeOperation: func(in, out any) string {
			return fmt.Sprintf("k%d %s", in.(ckRegIn).K, ckRegDescribe(in, out))
		},
		DescribeState: func(s any) string { return s.(ckRegState).String() },
		DescribeOperationMetadata: func(m any) string {
			if m == nil {
				return ""
			}
			return m.(string)
		},
	}
}

// ckPairsOf returns h's operation pairs whose f is one of fs, and a time
// after every operation of h (where an unfinished operation returns).
func ckPairsOf(h []Op, fs ...string) (ps []OpPair, end int64) {
	for _, p := range PairOps(h) {
		if slices.Contains(fs, p.Invoke.F) {
			ps = append(ps, p)
		}
	}
	for _, o := range h {
		end = max(end, o.Time)
	}
	return ps, end + 1
}

// checkVerbose checks h and also returns what writeHTML needs.
func (c *LinearChecker) checkVerbose(h []Op) (Result, *linearViz) {
	timeout := c.Config.Timeout
	if timeout <= 0 {
		timeout = DefaultCheckTimeout
	}
	res := Result{Checker: c.Name()}
	ps, end := ckPairsOf(h, "read", "write", "cas")
	ckCountTypes(&res, ps)
	clients := map[int]int{}
	var ops []porcupine.Operation
	for i, p := range ps {
		if p.Type() == Fail || (p.Type() != OK && p.Invoke.F == "read") {
			continue // never happened, or a read with no effect
		}
		var iv RegisterValue
		if err := p.Invoke.Decode(&iv); err != nil {
			res.Anomalies = append(res.Anomalies, Anomaly{Name: "malformed", Explain: err.Error(), Ops: []Op{p.Complete}})
			continue
		}
		in := ckRegIn{F: p.Invoke.F, K: iv.K, V: iv.V, Old: iv.Old, New: iv.New, Process: p.Invoke.Process, Pos: i}
		out := ckRegOut{Unknown: true}
		ret := end
		if p.Type() == OK {
			out.Unknown = false
			ret = p.Complete.Time
			if p.Invoke.F == "read" {
				var cv RegisterValue
				if err := p.Complete.Decode(&cv); err != nil {
					res.Anomalies = append(res.Anomalies, Anomaly{Name: "malformed", Explain: err.Error(), Ops: []Op{p.Complete}})
					continue
				}
				out.V, out.Found = cv.V, cv.Found
			}
		}
		cl, ok := clients[p.Invoke.Process]
		if !ok {
			cl = len(clients)
			clients[p.Invoke.Process] = cl
		}
		ops = append(ops, porcupine.Operation{
			ClientId: cl,
			Input:    in,
			Call:     p.Invoke.Time,
			Output:   out,
			Return:   max(ret, p.Invoke.Time),
			Metadata: fmt.Sprintf("%s, process %d", ckOpRef(p), p.Invoke.Process),
		})
	}
	model := ckRegModel(c.Config.init())
	parts := ckRegPartition(ops)
	for i, v := range ckCheckParts(model, parts, timeout) {
		part := parts[i]
		switch v.Result {
		case porcupine.Unknown:
			k := part[0].Input.(ckRegIn).K
			res.Anomalies = append(res.Anomalies, Anomaly{Name: "linearizability-unknown", Unknown: true,
				Explain: fmt.Sprintf("key %d (%d operations): porcupine did not finish within %v: no violation found, none ruled out (check the history again with a longer --check-timeout)", k, len(part), timeout)})
		case porcupine.Illegal:
			longest := ckLongest(v.Partials, func(o porcupine.Operation) int { return o.Input.(ckRegIn).Pos })
			res.Anomalies = append(res.Anomalies, ckNonlinearizable(ps, part, longest, c.Config.init()))
		}
	}
	return ckFinish(&res), &linearViz{model: model, ops: ops, timeout: timeout}
}

// ckLongest picks the longest partial linearization, the first by the
// ops' positions among equals (porcupine returns them in map order).
func ckLongest(ls [][]porcupine.Operation, pos func(porcupine.Operation) int) []porcupine.Operation {
	sort.SliceStable(ls, func(a, b int) bool {
		if len(ls[a]) != len(ls[b]) {
			return len(ls[a]) > len(ls[b])
		}
		for i := range ls[a] {
			pa, pb := pos(ls[a][i]), pos(ls[b][i])
			if pa != pb {
				return pa < pb
			}
		}
		return false
	})
	if len(ls) == 0 {
		return nil
	}
	return ls[0]
}

// ckNonlinearizable explains a key porcupine could not linearize: the end
// of the longest linearizable prefix, the state it leaves, and the op
// that cannot come next (of the ops left, the one that returned first: it
// or an op concurrent with it must be next, and none fits).
func ckNonlinearizable(ps []OpPair, part, prefix []porcupine.Operation, init ckRegState) Anomaly {
	k := part[0].Input.(ckRegIn).K
	in := map[int]bool{}
	state := any(init)
	for _, o := range prefix {
		in[o.Input.(ckRegIn).Pos] = true
		_, state = ckRegStep(state, o.Input, o.Output)
	}
	var stuck *porcupine.Operation
	for i := range part {
		o := &part[i]
		if in[o.Input.(ckRegIn).Pos] {
			continue
		}
		if stuck == nil || o.Return < stuck.Return || (o.Return == stuck.Return && o.Call < stuck.Call) {
			stuck = o
		}
	}
	desc := func(o porcupine.Operation) string {
		p := ps[o.Input.(ckRegIn).Pos]
		return fmt.Sprintf("%s (%s, process %d, invoked %s, completed %s)",
			ckRegDescribe(o.Input, o.Output), ckOpRef(p), p.Invoke.Process, ckFmtTime(p.Invoke.Time), ckFmtTime(o.Return))
	}
	shown := prefix[max(0, len(prefix)-8):]
	var steps []string
	var ops []Op
	for _, o := range shown {
		steps = append(steps, desc(o))
		ops = append(ops, ps[o.Input.(ckRegIn).Pos].Complete)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "key %d (%d operations): ", k, len(part))
	switch {
	case len(prefix) == 0:
		fmt.Fprintf(&b, "no operation can come first from the initial state (%s)", init)
	default:
		fmt.Fprintf(&b, "the longest linearizable prefix has %d operations", len(prefix))
		if len(shown) < len(prefix) {
			fmt.Fprintf(&b, ", ending %s", strings.Join(steps, "; "))
		} else {
			fmt.Fprintf(&b, ": %s", strings.Join(steps, "; "))
		}
		fmt.Fprintf(&b, "; it leaves key %d = %s", k, state.(ckRegState))
	}
	if stuck != nil {
		fmt.Fprintf(&b, "; then %s cannot be linearized: it, or an operation concurrent with it, must come next, and none explains the results", desc(*stuck))
		ops = append(ops, ps[stuck.Input.(ckRegIn).Pos].Complete)
	}
	return Anomaly{Name: "nonlinearizable", Explain: b.String(), Ops: ops}
}

// SetTimeout sets c.Config.Timeout.
func (c *LinearChecker) SetTimeout(d time.Duration) { c.Config.Timeout = d }
