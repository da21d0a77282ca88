package check

import (
	"fmt"
	"sort"
	"strings"
)

// elleCycle is a cycle of the dependency graph: nodes[i] -types[i]->
// nodes[(i+1) % len(nodes)], each type one edge-type bit.
type elleCycle struct {
	nodes []int
	types []uint8
}

// elleSpec is an automaton a cycle search walks along with the graph:
// step gives the state after an edge of type t (or -1: not allowed), and
// a cycle is found on returning to the start in an accepting state. State
// 0 is the initial state.
type elleSpec struct {
	states int
	step   func(st int, t uint8) int
	accept func(st int) bool
}

// elleNonadjacent accepts cycles with two or more rw edges, no two of
// them adjacent (also across the cycle's start). State 1 + c*4 + f*2 + l:
// c counts rw edges (0, 1, 2 or more), f whether the first edge was rw, l
// whether the last one was.
var elleNonadjacent = &elleSpec{
	states: 13,
	step: func(st int, t uint8) int {
		rw := t == elleRW
		if st == 0 {
			if rw {
				return 1 + 1*4 + 2 + 1
			}
			return 1
		}
		s := st - 1
		c, f, l := s/4, (s/2)%2, s%2
		if rw {
			if l == 1 {
				return -1
			}
			return 1 + min(c+1, 2)*4 + f*2 + 1
		}
		return 1 + c*4 + f*2
	},
	accept: func(st int) bool {
		if st == 0 {
			return false
		}
		s := st - 1
		c, f, l := s/4, (s/2)%2, s%2
		return c == 2 && !(f == 1 && l == 1)
	},
}

// elleSearchBudget bounds the edges the heuristic searches (G-single
// across components, G-nonadjacent) visit per strongly connected
// component.
const elleSearchBudget = 4_000_000

// tarjan returns the strongly connected components of the subgraph of
// nodes (in must hold for them) and edges whose mask meets mask, each
// sorted, in order of their least node. It returns every component,
// single nodes included, when all is set, else only cycles' components.
func (a *elleAnalysis) tarjan(nodes []int, in func(int) bool, mask uint8, all bool) [][]int {
	idx := make(map[int]int, len(nodes))
	low := make(map[int]int, len(nodes))
	onStack := make(map[int]bool, len(nodes))
	var stack []int
	var out [][]int
	counter := 0
	type frame struct{ v, i int }
	visit := func(v int) {
		idx[v], low[v] = counter, counter
		counter++
		stack = append(stack, v)
		onStack[v] = true
	}
	for _, s := range nodes {
		if _, ok := idx[s]; ok {
			continue
		}
		visit(s)
		call := []frame{{s, 0}}
		for len(call) > 0 {
			f := &call[len(call)-1]
			v := f.v
			if f.i < len(a.adj[v]) {
				e := a.adj[v][f.i]
				f.i++
				if e.mask&mask == 0 || !in(e.to) {
					continue
				}
				if _, seen := idx[e.to]; !seen {
					visit(e.to)
					call = append(call, frame{e.to, 0})
				} else if onStack[e.to] {
					low[v] = min(low[v], idx[e.to])
				}
				continue
			}
			call = call[:len(call)-1]
			if len(call) > 0 {
				p := call[len(call)-1].v
				low[p] = min(low[p], low[v])
			}
			if low[v] == idx[v] {
				var comp []int
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp = append(comp, w)
					if w == v {
						break
					}
				}
				if all || len(comp) > 1 {
					sort.Ints(comp)
					out = append(out, comp)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// bfs finds a shortest walk from start to target (a cycle when they are
// equal) over nodes with in true and edge types in mask, stepping spec
// (nil: any walk). It spends *budget edge visits at most.
func (a *elleAnalysis) bfs(start, target int, in func(int) bool, mask uint8, spec *elleSpec, budget *int) (elleCycle, bool) {
	ns := 1
	if spec != nil {
		ns = spec.states
	}
	type parent struct {
		prev int
		t    uint8
	}
	startKey := start * ns
	parents := map[int]parent{startKey: {-1, 0}}
	queue := []int{startKey}
	for len(queue) > 0 {
		key := queue[0]
		queue = queue[1:]
		u, st := key/ns, key%ns
		for _, e := range a.adj[u] {
			if e.mask&mask == 0 || !in(e.to) {
				continue
			}
			*budget--
			if *budget < 0 {
				return elleCycle{}, false
			}
			for _, t := range elleEdgeOrder {
				if e.mask&mask&t == 0 {
					continue
				}
				nst := 0
				if spec != nil {
					if nst = spec.step(st, t); nst < 0 {
						continue
					}
				}
				if e.to == target && (spec == nil || spec.accept(nst)) {
					c := elleCycle{nodes: []int{u}, types: []uint8{t}}
					for k := key; k != startKey; {
						p := parents[k]
						c.nodes = append(c.nodes, p.prev/ns)
						c.types = append(c.types, p.t)
						k = p.prev
					}
					for i, j := 0, len(c.nodes)-1; i < j; i, j = i+1, j-1 {
						c.nodes[i], c.nodes[j] = c.nodes[j], c.nodes[i]
						c.types[i], c.types[j] = c.types[j], c.types[i]
					}
					return c, true
				}
				if e.to == start {
					continue
				}
				nk := e.to*ns + nst
				if _, seen := parents[nk]; seen {
					continue
				}
				parents[nk] = parent{key, t}
				queue = append(queue, nk)
			}
		}
	}
	return elleCycle{}, false
}

func (c elleCycle) simple() bool {
	seen := make(map[int]bool, len(c.nodes))
	for _, n := range c.nodes {
		if seen[n] {
			return false
		}
		seen[n] = true
	}
	return true
}

// findCycles reports, for each strongly connected component of the
// dependency graph, the cycles componentCycles finds in it.
func (a *elleAnalysis) findCycles() {
	var nodes []int
	for ti, t := range a.txns {
		if t.committed {
			nodes = append(nodes, ti)
		}
	}
	committed := func(n int) bool { return a.txns[n].committed }
	for _, comp := range a.tarjan(nodes, committed, elleAll, false) {
		set := make(map[int]bool, len(comp))
		for _, n := range comp {
			set[n] = true
		}
		for _, c := range a.componentCycles(comp, func(n int) bool { return set[n] }) {
			a.reportCycle(c)
		}
	}
}

// componentCycles searches a component as Elle does, class by class,
// most serious first, and returns one cycle of each class found that no
// class found before implies: over data edges alone, G0, or else G1c;
// and G-single, or else G-nonadjacent, or else G2-item (a G0 does not
// imply a G-single: both may be reported). Then, unless data edges alone
// already make a cycle that fails the check, the same with process and
// real-time edges (the -process and -realtime classes; a G2-item-process
// or -realtime only if there was no G2-item). As in Elle, a failing
// cycle of data edges hides those with order edges; but an allowed one
// (G2-item under snapshot isolation) does not hide, say, a
// G-single-realtime.
func (a *elleAnalysis) componentCycles(comp []int, in func(int) bool) []elleCycle {
	budget := elleSearchBudget
	out := a.classCycles(comp, in, 0, &budget)
	if !(a.cfg.Process || a.cfg.RealTime) {
		return out
	}
	g2 := false
	for _, c := range out {
		if _, base := elleClassify(c.types); base != "G2-item" || a.cfg.Serializable {
			return out
		}
		g2 = true
	}
	for _, c := range a.classCycles(comp, in, elleOrder, &budget) {
		if _, base := elleClassify(c.types); !(g2 && base == "G2-item") {
			out = append(out, c)
		}
	}
	return out
}

// classCycles looks for the classes of cycles whose edges are data edges
// and the order edges of order: G0 or else G1c; G-single, or else
// G-nonadjacent, or else G2-item.
func (a *elleAnalysis) classCycles(comp []int, in func(int) bool, order uint8, budget *int) []elleCycle {
	var out []elleCycle
	if c, ok := a.anyCycle(comp, in, elleWW|order); ok {
		out = append(out, c)
	} else if c, ok := a.anyCycle(comp, in, elleData|order); ok {
		out = append(out, c)
	}
	if c, ok := a.singleCycle(comp, in, elleData|order, budget); ok {
		return append(out, c)
	}
	if c, ok := a.nonadjacentCycle(comp, in, elleData|order|elleRW, budget); ok {
		return append(out, c)
	}
	if len(out) == 0 {
		// No cycle without rw edges: any cycle has one.
		if c, ok := a.anyCycle(comp, in, elleData|order|elleRW); ok {
			out = append(out, c)
		}
		return out
	}
	if c, ok := a.rwCycle(comp, in, elleData|order|elleRW, budget); ok {
		out = append(out, c)
	}
	return out
}

// rwCycle finds a cycle over edges of mask through an rw edge, if there
// is one within the budget.
func (a *elleAnalysis) rwCycle(comp []int, in func(int) bool, mask uint8, budget *int) (elleCycle, bool) {
	for _, u := range comp {
		for _, e := range a.adj[u] {
			if e.mask&elleRW == 0 || !in(e.to) {
				continue
			}
			if *budget <= 0 {
				return elleCycle{}, false
			}
			if p, ok := a.bfs(e.to, u, in, mask, nil, budget); ok {
				return elleRWClose(u, p), true
			}
		}
	}
	return elleCycle{}, false
}

// anyCycle finds a cycle over edges of mask, if there is one: a shortest
// one through the least node of the first component of that subgraph.
func (a *elleAnalysis) anyCycle(comp []int, in func(int) bool, mask uint8) (elleCycle, bool) {
	subs := a.tarjan(comp, in, mask, false)
	if len(subs) == 0 {
		return elleCycle{}, false
	}
	sub := make(map[int]bool, len(subs[0]))
	for _, n := range subs[0] {
		sub[n] = true
	}
	budget := int(^uint(0) >> 1) // always finds one: the component is strongly connected
	return a.bfs(subs[0][0], subs[0][0], func(n int) bool { return sub[n] }, mask, nil, &budget)
}

// singleCycle finds a cycle with exactly one rw edge, u -rw-> v, and a
// path from v back to u over edges of nonRW.
func (a *elleAnalysis) singleCycle(comp []int, in func(int) bool, nonRW uint8, budget *int) (elleCycle, bool) {
	compOf := map[int]int{}
	for i, sub := range a.tarjan(comp, in, nonRW, true) {
		for _, n := range sub {
			compOf[n] = i
		}
	}
	type rwEdge struct{ u, v int }
	var across []rwEdge
	for _, u := range comp {
		for _, e := range a.adj[u] {
			if e.mask&elleRW == 0 || !in(e.to) {
				continue
			}
			if compOf[u] != compOf[e.to] {
				across = append(across, rwEdge{u, e.to})
				continue
			}
			// u and v are strongly connected without rw edges: a path
			// from v to u exists within their component.
			cu := compOf[u]
			unbounded := int(^uint(0) >> 1)
			if p, ok := a.bfs(e.to, u, func(n int) bool { return in(n) && compOf[n] == cu }, nonRW, nil, &unbounded); ok {
				return elleRWClose(u, p), true
			}
		}
	}
	for _, e := range across {
		if *budget <= 0 {
			break
		}
		if p, ok := a.bfs(e.v, e.u, in, nonRW, nil, budget); ok {
			return elleRWClose(e.u, p), true
		}
	}
	return elleCycle{}, false
}

// elleRWClose makes the cycle u -rw-> v ... -> u from a walk from v to u.
func elleRWClose(u int, walk elleCycle) elleCycle {
	return elleCycle{
		nodes: append([]int{u}, walk.nodes...),
		types: append([]uint8{elleRW}, walk.types...),
	}
}

// nonadjacentCycle looks for a simple cycle with two or more rw edges, no
// two adjacent, starting from the sources of rw edges in turn.
func (a *elleAnalysis) nonadjacentCycle(comp []int, in func(int) bool, mask uint8, budget *int) (elleCycle, bool) {
	for _, u := range comp {
		if *budget <= 0 {
			break
		}
		hasRW := false
		for _, e := range a.adj[u] {
			if e.mask&elleRW != 0 && in(e.to) {
				hasRW = true
				break
			}
		}
		if !hasRW {
			continue
		}
		if c, ok := a.bfs(u, u, in, mask, elleNonadjacent, budget); ok && c.simple() {
			return c, true
		}
	}
	return elleCycle{}, false
}

// classify names a cycle as Adya does, from its edges' types, with a
// -process or -realtime suffix when it needs such an edge.
func elleClassify(types []uint8) (name, base string) {
	rw, wr, proc, rt := 0, false, false, false
	adjacent := false
	for i, t := range types {
		switch t {
		case elleRW:
			rw++
			if types[(i+1)%len(types)] == elleRW && len(types) > 1 {
				adjacent = true
			}
		case elleWR:
			wr = true
		case elleProcess:
			proc = true
		case elleRealtime:
			rt = true
		}
	}
	switch {
	case rw == 0 && !wr:
		base = "G0"
	case rw == 0:
		base = "G1c"
	case rw == 1:
		base = "G-single"
	case adjacent:
		base = "G2-item"
	default:
		base = "G-nonadjacent"
	}
	name = base
	switch {
	case rt:
		name += "-realtime"
	case proc:
		name += "-process"
	}
	return name, base
}

func (a *elleAnalysis) reportCycle(c elleCycle) {
	name, base := elleClassify(c.types)
	label := map[int]string{}
	for i, n := range c.nodes {
		label[n] = fmt.Sprintf("T%d (%s)", i+1, a.ref(n))
	}
	var parts []string
	ops := make([]Op, len(c.nodes))
	for i, n := range c.nodes {
		ops[i] = a.op(n)
		next := c.nodes[(i+1)%len(c.nodes)]
		parts = append(parts, a.explainEdge(n, next, c.types[i], label))
	}
	var sum []string
	for i := range c.nodes {
		sum = append(sum, fmt.Sprintf("T%d -%s->", i+1, elleEdgeName(c.types[i])))
	}
	sum = append(sum, "T1")
	a.add(Anomaly{
		Name:    name,
		Allowed: base == "G2-item" && !a.cfg.Serializable,
		Explain: fmt.Sprintf("cycle %s: %s", strings.Join(sum, " "), strings.Join(parts, "; ")),
		Ops:     ops,
	})
}

// explainEdge states why from precedes to by an edge of type t.
func (a *elleAnalysis) explainEdge(from, to int, t uint8, label map[int]string) string {
	f, g := label[from], label[to]
	why, ok := a.why[elleEdgeKey{from, to, t}]
	switch {
	case t == elleProcess:
		return fmt.Sprintf("%s and %s ran in that order on process %d: process",
			f, g, a.txns[from].pair.Invoke.Process)
	case t == elleRealtime:
		return fmt.Sprintf("%s completed at %s, before %s was invoked at %s: realtime",
			f, ckFmtTime(a.txns[from].pair.Complete.Time), g, ckFmtTime(a.txns[to].pair.Invoke.Time))
	case !ok:
	case t == elleWW:
		return fmt.Sprintf("%s appended %d to key %d and %s appended %d after it (%s): ww",
			f, why.prev, why.k, g, why.v, a.placeOf(why.k, why.v))
	case t == elleWR:
		r := a.txns[to].mops[why.mop].R
		return fmt.Sprintf("%s appended %d to key %d; %s read key %d = %s: wr",
			f, why.v, why.k, g, why.k, ckFmtTail(r, 8))
	case t == elleRW:
		r := a.txns[from].mops[why.mop].R
		return fmt.Sprintf("%s read key %d = %s, without the %d that %s appended to it (%s): rw",
			f, why.k, ckFmtTail(r, 8), why.v, g, a.placeOf(why.k, why.v))
	}
	return fmt.Sprintf("%s -%s-> %s", f, elleEdgeName(t), g)
}

// placeOf says where v stands in key k's version order.
func (a *elleAnalysis) placeOf(k, v int) string {
	ord := a.order[k]
	p, ok := a.pos[elleKV{k, v}]
	if !ok {
		if len(ord) == 0 {
			return fmt.Sprintf("no read of key %d shows %d, nor any other element", k, v)
		}
		return fmt.Sprintf("no read of key %d shows %d, so it came after every element a read shows, the last %d", k, v, ord[len(ord)-1])
	}
	return fmt.Sprintf("key %d was read as %s", k, ckFmtTail(ord[:p+1], 6))
}
