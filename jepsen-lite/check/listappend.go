package check

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// ListAppendConfig configures the list-append checker.
type ListAppendConfig struct {
	// Process adds per-process order edges: a process's transactions
	// happen in the order it ran them (strong session isolation). On in
	// DefaultListAppendConfig.
	Process bool
	// RealTime adds real-time order edges: a transaction that completed
	// before another was invoked precedes it (strict serializability,
	// strong snapshot isolation). Off by default.
	RealTime bool
	// Serializable makes G2-item (write skew) a failure. By default the
	// checker checks snapshot isolation, which allows it: G2-item is
	// reported with Allowed set.
	Serializable bool
}

// DefaultListAppendConfig is the default configuration: process order
// on, real-time order off, snapshot isolation.
func DefaultListAppendConfig() ListAppendConfig {
	return ListAppendConfig{Process: true}
}

// ListAppendChecker checks a list-append history (ops with F "txn" whose
// values are []Mop) with the Elle algorithm (Kingsbury & Alvaro, VLDB
// 2020), following Elle's conventions: an ok read of nil is the empty
// list; the reads of a transaction that did not complete ok are unknown;
// an info transaction counts as committed once a read shows one of its
// appends, and is left out otherwise (it may never have happened).
//
// Each key's version order is its longest read (each element once);
// elements appended by committed transactions that no read shows come
// after all of those, in no known order (lists only grow). From that it
// builds the transactions' dependency graph:
//
//   - ww: an append precedes the next one in the version order, and the
//     last element a read shows precedes every unobserved append;
//   - wr: an append precedes the reads that end with it;
//   - rw: a read of list L precedes every committed append to its key of
//     an element not in L (directly, the next one in the version order or
//     every unobserved one; the rest through ww), whether or not any read
//     showed that element;
//
// plus process and real-time order edges as configured. Its cycles are
// classified as Adya's, as Elle does: G0 (ww only), G1c (ww and wr),
// G-single (one rw), G-nonadjacent (rw edges, none adjacent), G2-item
// (adjacent rw edges: write skew, allowed under snapshot isolation); a
// cycle that needs a process or real-time edge gets a suffix, as in Elle:
// G-single-process, G1c-realtime, and so on. Elle names the cycles
// without predicates G-single-item and G-nonadjacent-item; here they are
// G-single and G-nonadjacent.
//
// It also reports, as Elle does: aborted reads (G1a), intermediate reads
// (G1b), reads whose orders disagree (incompatible-order), duplicate
// elements in a read (duplicate-elements), transactions that do not read
// their own writes (internal) or read an element before appending it
// (future-read), committed appends right after failed ones in a version
// order (dirty-update), and committed transactions that read the same
// version of a key and both appended to it (lost-update). Beyond Elle:
// reads of elements no one appended (garbage), acknowledged appends
// missing from a final read (lost-append: a final read, Op.Final, comes
// after every client stopped and sees every commit acknowledged before
// it), and, when the history has final reads, keys with acknowledged
// appends that no final read reads (unread-key: the final reads read
// every key the backends hold, so such a key was lost).
type ListAppendChecker struct {
	Config ListAppendConfig
}

// NewListAppendChecker returns a checker with DefaultListAppendConfig.
func NewListAppendChecker() *ListAppendChecker {
	return &ListAppendChecker{Config: DefaultListAppendConfig()}
}

// Name implements Checker.
func (c *ListAppendChecker) Name() string { return "list-append" }

// Check implements Checker.
func (c *ListAppendChecker) Check(h []Op) Result {
	a := newElleAnalysis(h, c.Config)
	a.run()
	a.res.Checker = c.Name()
	return ckFinish(&a.res)
}

// Edge types of the dependency graph, as bits of an edge's mask.
const (
	elleWW uint8 = 1 << iota
	elleWR
	elleProcess
	elleRealtime
	elleRW

	elleData  = elleWW | elleWR
	elleOrder = elleProcess | elleRealtime
	elleNonRW = elleData | elleOrder
	elleAll   = elleNonRW | elleRW
)

// elleEdgeOrder is the order in which a multi-type edge's types are
// tried when searching: dependencies before order edges before
// anti-dependencies, so a cycle gets the least severe reading of each
// edge and the most serious class overall.
var elleEdgeOrder = []uint8{elleWW, elleWR, elleProcess, elleRealtime, elleRW}

func elleEdgeName(t uint8) string {
	switch t {
	case elleWW:
		return "ww"
	case elleWR:
		return "wr"
	case elleRW:
		return "rw"
	case elleProcess:
		return "process"
	case elleRealtime:
		return "realtime"
	}
	return "?"
}

type elleKV struct{ k, v int }

// elleWriter is the transaction that appended a value.
type elleWriter struct {
	txn   int
	final bool // its last append to the key
}

type elleTxn struct {
	pair      OpPair
	mops      []Mop
	committed bool // ok, or info and read by someone
}

// elleRead is a read micro-op of an ok transaction.
type elleRead struct {
	txn, mop int
}

type elleEdge struct {
	to   int
	mask uint8
}

type elleAnalysis struct {
	cfg    ListAppendConfig
	res    Result
	txns   []elleTxn
	writer map[elleKV]elleWriter
	// order is each key's version order: its longest read, each element
	// once (as Elle takes it, even when other reads disagree with it: that
	// is reported as incompatible-order); pos is each element's position
	// in it.
	order map[int][]int
	pos   map[elleKV]int
	// unobserved holds, per key, the elements that committed
	// transactions appended but the version order lacks: no read (or no
	// read compatible with the longest) shows them. Lists only grow, so
	// each came after every element of the version order.
	unobserved map[int][]int
	reads      map[int][]elleRead
	adj        [][]elleEdge
	// why records, for each edge of the graph, the first reason found
	// for it, to explain the cycles.
	why map[elleEdgeKey]elleWhy
}

type elleEdgeKey struct {
	from, to int
	t        uint8
}

// elleWhy is the reason for an edge on key k: ww, from appended prev and
// to appended v after it; wr, to's read (micro-op mop) ends in from's
// append of v; rw, from's read (micro-op mop) lacks to's append of v.
type elleWhy struct {
	k, v, prev, mop int
}

func newElleAnalysis(h []Op, cfg ListAppendConfig) *elleAnalysis {
	a := &elleAnalysis{
		cfg:        cfg,
		writer:     map[elleKV]elleWriter{},
		order:      map[int][]int{},
		pos:        map[elleKV]int{},
		unobserved: map[int][]int{},
		reads:      map[int][]elleRead{},
		why:        map[elleEdgeKey]elleWhy{},
	}
	for _, p := range PairOps(h) {
		if p.Invoke.F != "txn" {
			continue
		}
		var mops []Mop
		src := p.Complete
		if p.Type() != OK && len(src.Value) == 0 {
			src = p.Invoke
		}
		if err := src.Decode(&mops); err != nil {
			a.add(Anomaly{Name: "malformed", Explain: err.Error(), Ops: []Op{p.Complete}})
			continue
		}
		for i := range mops {
			if mops[i].F != "r" {
				continue
			}
			switch {
			case p.Type() != OK:
				// The reads of a transaction that did not complete
				// ok are unknown.
				mops[i].R = nil
			case mops[i].R == nil:
				// An ok read of nil saw the initial state, the
				// empty list (as Elle reads it).
				mops[i].R = []int{}
			}
		}
		a.txns = append(a.txns, elleTxn{pair: p, mops: mops, committed: p.Type() == OK})
	}
	ckCountTypes(&a.res, func() []OpPair {
		ps := make([]OpPair, len(a.txns))
		for i, t := range a.txns {
			ps[i] = t.pair
		}
		return ps
	}())
	return a
}

func (a *elleAnalysis) add(an Anomaly) { a.res.Anomalies = append(a.res.Anomalies, an) }

func (a *elleAnalysis) run() {
	a.indexAppends()
	a.checkReads()
	a.inferOrders()
	a.dirtyUpdates()
	a.lostUpdates()
	a.lostAppends()
	a.buildGraph()
	a.findCycles()
}

func (a *elleAnalysis) ref(t int) string { return ckOpRef(a.txns[t].pair) }

func (a *elleAnalysis) op(t int) Op { return a.txns[t].pair.Complete }

// indexAppends records who appended each value, and whether it was the
// appender's last append to its key.
func (a *elleAnalysis) indexAppends() {
	for ti, t := range a.txns {
		last := map[int]int{}
		for _, m := range t.mops {
			if m.F == "append" {
				last[m.K] = m.V
			}
		}
		for _, m := range t.mops {
			if m.F != "append" {
				continue
			}
			kv := elleKV{m.K, m.V}
			if _, dup := a.writer[kv]; dup {
				continue // values are unique per key; keep the first
			}
			a.writer[kv] = elleWriter{txn: ti, final: last[m.K] == m.V}
		}
	}
}

// ckFmtTail renders a list's last n elements, eliding the rest.
func ckFmtTail(r []int, n int) string {
	if len(r) <= n {
		return ckFmtList(r)
	}
	s := ckFmtList(r[len(r)-n:])
	return "[... " + s[1:]
}

func ckFmtList(r []int) string {
	if r == nil {
		return "unknown"
	}
	var b strings.Builder
	b.WriteByte('[')
	for i, v := range r {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprint(&b, v)
	}
	b.WriteByte(']')
	return b.String()
}

// checkReads finds garbage, duplicate, aborted (G1a) and intermediate
// (G1b) reads and internal inconsistencies, marks the info transactions
// whose appends were read as committed, and collects the reads by key.
func (a *elleAnalysis) checkReads() {
	g1a := map[[2]int]bool{}
	for ti := range a.txns {
		t := &a.txns[ti]
		if t.pair.Type() != OK {
			continue
		}
		a.checkInternal(ti)
		for mi, m := range t.mops {
			if m.F != "r" || m.R == nil {
				continue
			}
			a.reads[m.K] = append(a.reads[m.K], elleRead{ti, mi})
			seen := make(map[int]bool, len(m.R))
			dupReported := false
			for _, v := range m.R {
				if seen[v] && !dupReported {
					dupReported = true
					a.add(Anomaly{Name: "duplicate-elements",
						Explain: fmt.Sprintf("T1 (%s) read key %d = %s: %d appears more than once", a.ref(ti), m.K, ckFmtList(m.R), v),
						Ops:     []Op{a.op(ti)}})
				}
				seen[v] = true
				w, ok := a.writer[elleKV{m.K, v}]
				if !ok {
					a.add(Anomaly{Name: "garbage",
						Explain: fmt.Sprintf("T1 (%s) read key %d = %s: no transaction appended %d to key %d", a.ref(ti), m.K, ckFmtList(m.R), v, m.K),
						Ops:     []Op{a.op(ti)}})
					continue
				}
				wt := &a.txns[w.txn]
				switch wt.pair.Type() {
				case Info:
					wt.committed = true
				case Fail:
					if !g1a[[2]int{w.txn, ti}] {
						g1a[[2]int{w.txn, ti}] = true
						a.add(Anomaly{Name: "G1a",
							Explain: fmt.Sprintf("T1 (%s) appended %d to key %d but did not commit; T2 (%s) read key %d = %s: an aborted read",
								a.ref(w.txn), v, m.K, a.ref(ti), m.K, ckFmtList(m.R)),
							Ops: []Op{a.op(w.txn), a.op(ti)}})
					}
				}
			}
			if len(m.R) == 0 {
				continue
			}
			v := m.R[len(m.R)-1]
			if w, ok := a.writer[elleKV{m.K, v}]; ok && w.txn != ti && !w.final {
				var later []int
				past := false
				for _, wm := range a.txns[w.txn].mops {
					if wm.F == "append" && wm.K == m.K {
						if past {
							later = append(later, wm.V)
						}
						if wm.V == v {
							past = true
						}
					}
				}
				a.add(Anomaly{Name: "G1b",
					Explain: fmt.Sprintf("T1 (%s) appended %d to key %d, then appended %s to it too; T2 (%s) read key %d = %s, ending in %d: an intermediate read",
						a.ref(w.txn), v, m.K, ckFmtList(later), a.ref(ti), m.K, ckFmtList(m.R), v),
					Ops: []Op{a.op(w.txn), a.op(ti)}})
			}
		}
	}
}

// checkInternal checks that an ok transaction reads its own writes: a
// read of a key after an earlier read equals that read plus the
// transaction's appends since; a read after appends with no earlier read
// ends with those appends (internal). It also finds a read that shows an
// element the transaction appends only later (future-read: appends are
// unique, so the read saw the future).
func (a *elleAnalysis) checkInternal(ti int) {
	mops := a.txns[ti].mops
future:
	for mi, m := range mops {
		if m.F != "append" {
			continue
		}
		for _, r := range mops[:mi] {
			if r.F == "r" && r.K == m.K && slices.Contains(r.R, m.V) {
				a.add(Anomaly{Name: "future-read",
					Explain: fmt.Sprintf("T1 (%s) read key %d = %s, then appended %d to it: the read shows an append made after it",
						a.ref(ti), m.K, ckFmtList(r.R), m.V),
					Ops: []Op{a.op(ti)}})
				break future
			}
		}
	}
	a.checkOwnWrites(ti)
}

func (a *elleAnalysis) checkOwnWrites(ti int) {
	type st struct {
		known   []int
		pending []int
		hasRead bool
	}
	keys := map[int]*st{}
	for _, m := range a.txns[ti].mops {
		s := keys[m.K]
		if s == nil {
			s = &st{}
			keys[m.K] = s
		}
		switch m.F {
		case "append":
			if s.hasRead {
				s.known = append(s.known, m.V)
			} else {
				s.pending = append(s.pending, m.V)
			}
		case "r":
			if m.R == nil {
				continue
			}
			var want string
			switch {
			case s.hasRead && !slices.Equal(m.R, s.known):
				want = "= " + ckFmtList(s.known)
			case !s.hasRead && len(s.pending) > 0 && (len(m.R) < len(s.pending) || !slices.Equal(m.R[len(m.R)-len(s.pending):], s.pending)):
				want = "ending in its own appends " + ckFmtList(s.pending)
			}
			if want != "" {
				a.add(Anomaly{Name: "internal",
					Explain: fmt.Sprintf("T1 (%s) read key %d = %s, but its own earlier micro-ops imply key %d %s",
						a.ref(ti), m.K, ckFmtList(m.R), m.K, want),
					Ops: []Op{a.op(ti)}})
			}
			s.hasRead = true
			s.known = slices.Clone(m.R)
			s.pending = nil
		}
	}
}

// inferOrders takes each key's longest read, each element once, as its
// version order, and reports reads that are not a prefix of it
// (incompatible-order). As in Elle, the order is used even then: the
// reads that disagree are reported, and the longest read still orders
// the appends it shows.
func (a *elleAnalysis) inferOrders() {
	for _, k := range ckSortedKeys(a.reads) {
		rs := a.reads[k]
		longest := rs[0]
		for _, r := range rs[1:] {
			if len(a.mop(r).R) > len(a.mop(longest).R) {
				longest = r
			}
		}
		full := a.mop(longest).R
		var ord []int
		for _, v := range full {
			kv := elleKV{k, v}
			if _, dup := a.pos[kv]; !dup {
				a.pos[kv] = len(ord)
				ord = append(ord, v)
			}
		}
		a.order[k] = ord
		bad := 0
		var first elleRead
		for _, r := range rs {
			rl := a.mop(r).R
			if len(rl) > len(full) || !slices.Equal(rl, full[:len(rl)]) {
				if bad == 0 {
					first = r
				}
				bad++
			}
		}
		if bad > 0 {
			more := ""
			if bad > 1 {
				more = fmt.Sprintf(" (%d reads of key %d disagree so)", bad, k)
			}
			a.add(Anomaly{Name: "incompatible-order",
				Explain: fmt.Sprintf("T1 (%s) read key %d = %s and T2 (%s) read key %d = %s: neither is a prefix of the other, so no single order of appends explains both%s",
					a.ref(longest.txn), k, ckFmtList(full), a.ref(first.txn), k, ckFmtList(a.mop(first).R), more),
				Ops: []Op{a.op(longest.txn), a.op(first.txn)}})
		}
	}
}

// dirtyUpdates walks each key's version order, as Elle does, for a
// committed (ok) append that follows, with nothing but appends of unknown
// outcome (info) between them, an append by a transaction that failed: the
// committed transaction updated a state that was never committed.
func (a *elleAnalysis) dirtyUpdates() {
	for _, k := range ckSortedKeys(a.order) {
		ord := a.order[k]
		last, lastType := -1, OK // the initial state is committed
		var vs []int
		for _, v := range ord {
			w, ok := a.writer[elleKV{k, v}]
			if !ok {
				vs = append(vs, v) // garbage: reported already
				continue
			}
			switch tt := a.txns[w.txn].pair.Type(); {
			case tt == Info, tt == Fail && lastType == Fail:
				vs = append(vs, v)
				continue
			case tt == OK && lastType == Fail:
				vs = append(vs, v)
				a.add(Anomaly{Name: "dirty-update",
					Explain: fmt.Sprintf("T1 (%s) appended %d to key %d and failed; T2 (%s) appended %d after it (key %d was read as %s): T2 committed an update of a state that was never committed",
						a.ref(last), vs[0], k, a.ref(w.txn), v, k, ckFmtList(vs)),
					Ops: []Op{a.op(last), a.op(w.txn)}})
			}
			last, lastType, vs = w.txn, a.txns[w.txn].pair.Type(), []int{v}
		}
	}
}

func (a *elleAnalysis) mop(r elleRead) Mop { return a.txns[r.txn].mops[r.mop] }

// externalReads returns an ok transaction's reads that observe other
// transactions' state: for each key, its first read, if it precedes the
// transaction's first append to that key.
func (a *elleAnalysis) externalReads(ti int) []Mop {
	var out []Mop
	done := map[int]bool{}
	for _, m := range a.txns[ti].mops {
		if done[m.K] {
			continue
		}
		if m.F == "append" {
			done[m.K] = true
			continue
		}
		if m.R != nil {
			done[m.K] = true
			out = append(out, m)
		}
	}
	return out
}

func (a *elleAnalysis) appends(ti, k int) []int {
	var out []int
	for _, m := range a.txns[ti].mops {
		if m.F == "append" && m.K == k {
			out = append(out, m.V)
		}
	}
	return out
}

// lostUpdates reports committed transactions that read the same version
// of a key and both appended to it.
func (a *elleAnalysis) lostUpdates() {
	type ver struct {
		k     int
		empty bool
		last  int
	}
	groups := map[ver][]int{}
	var vers []ver
	for ti, t := range a.txns {
		if t.pair.Type() != OK {
			continue
		}
		for _, m := range a.externalReads(ti) {
			if len(a.appends(ti, m.K)) == 0 {
				continue
			}
			v := ver{k: m.K, empty: len(m.R) == 0}
			if !v.empty {
				v.last = m.R[len(m.R)-1]
			}
			if groups[v] == nil {
				vers = append(vers, v)
			}
			groups[v] = append(groups[v], ti)
		}
	}
	for _, v := range vers {
		g := groups[v]
		if len(g) < 2 {
			continue
		}
		var parts []string
		var ops []Op
		for i, ti := range g {
			var r []int
			for _, m := range a.externalReads(ti) {
				if m.K == v.k {
					r = m.R
				}
			}
			parts = append(parts, fmt.Sprintf("T%d (%s) read key %d = %s and appended %s", i+1, a.ref(ti), v.k, ckFmtList(r), ckFmtList(a.appends(ti, v.k))))
			ops = append(ops, a.op(ti))
		}
		what := "the empty version"
		if !v.empty {
			what = fmt.Sprintf("the version ending in %d", v.last)
		}
		a.add(Anomaly{Name: "lost-update",
			Explain: strings.Join(parts, "; ") + fmt.Sprintf(": each read %s of key %d and appended to it, so all but one of them appended to a state that no longer held", what, v.k),
			Ops:     ops})
	}
}

// lostAppends reports, per key, the acknowledged (ok) appends that a
// final read of the key does not show: a final read sees every commit
// acknowledged before it, so these writes were lost.
func (a *elleAnalysis) lostAppends() {
	byKey := map[int][]elleKV{}
	for kv, w := range a.writer {
		if a.txns[w.txn].pair.Type() == OK {
			byKey[kv.k] = append(byKey[kv.k], kv)
		}
	}
	finalRead := map[int]bool{}
	hasFinal := false
	for ti, t := range a.txns {
		if t.pair.Type() != OK || !t.pair.Invoke.Final {
			continue
		}
		hasFinal = true
		for _, m := range a.externalReads(ti) {
			finalRead[m.K] = true
			shown := make(map[int]bool, len(m.R))
			for _, v := range m.R {
				shown[v] = true
			}
			var lost []int
			for _, kv := range byKey[m.K] {
				if !shown[kv.v] {
					lost = append(lost, kv.v)
				}
			}
			if len(lost) == 0 {
				continue
			}
			sort.Ints(lost)
			var who []string
			ops := []Op{}
			for i, v := range lost {
				if i == 3 {
					who = append(who, fmt.Sprintf("and %d more", len(lost)-3))
					break
				}
				w := a.writer[elleKV{m.K, v}]
				who = append(who, fmt.Sprintf("%d by %s", v, a.ref(w.txn)))
				ops = append(ops, a.op(w.txn))
			}
			ops = append(ops, a.op(ti))
			a.add(Anomaly{Name: "lost-append",
				Explain: fmt.Sprintf("the final read (%s) of key %d = %s lacks %d acknowledged append(s): %s; it was made after every client stopped and sees every commit acknowledged before it, so they were lost",
					a.ref(ti), m.K, ckFmtTail(m.R, 8), len(lost), strings.Join(who, ", ")),
				Ops: ops})
		}
	}
	// The final reads read every key the backends hold: a key with
	// acknowledged appends that none of them read is gone from the final
	// state (with no final read at all, there is nothing to compare).
	if !hasFinal {
		return
	}
	var unread []int
	for k := range byKey {
		if !finalRead[k] {
			unread = append(unread, k)
		}
	}
	sort.Ints(unread)
	for _, k := range unread {
		kvs := byKey[k]
		sort.Slice(kvs, func(i, j int) bool { return kvs[i].v < kvs[j].v })
		var who []string
		var ops []Op
		for i, kv := range kvs {
			if i == 3 {
				who = append(who, fmt.Sprintf("and %d more", len(kvs)-3))
				break
			}
			w := a.writer[kv]
			who = append(who, fmt.Sprintf("%d by %s", kv.v, a.ref(w.txn)))
			ops = append(ops, a.op(w.txn))
		}
		a.add(Anomaly{Name: "unread-key",
			Explain: fmt.Sprintf("key %d has %d acknowledged append(s) (%s) but no final read: the final reads read every key the backends hold after every client stopped, so the key, and its appends, were lost",
				k, len(kvs), strings.Join(who, ", ")),
			Ops: ops})
	}
}

// buildGraph builds the dependency graph over committed transactions.
//
// Per key, the version order is the longest read, then, in no known
// order, the unobserved elements (appended by committed transactions,
// shown by no read): lists only grow, so each came after every element a
// read shows. Then:
//
//   - ww: each committed writer in the version order precedes the next
//     (transactions that did not commit, and elements no one appended,
//     are skipped: their neighbours are still in order), and the last
//     precedes every unobserved append;
//   - wr: the writer of a read's last element precedes the reader;
//   - rw: a read precedes the writer of the first committed element
//     after the last one it shows, or, if it shows the whole version
//     order, every unobserved append. With the ww edges, a read of list L
//     precedes every committed append to its key of an element not in L,
//     whether or not any read showed that element.
//
// Reads are a transaction's external ones: its first read of a key,
// before it appends to the key.
func (a *elleAnalysis) buildGraph() {
	edges := map[[2]int]uint8{}
	link := func(from, to int, t uint8, why elleWhy) {
		if from == to || !a.txns[from].committed || !a.txns[to].committed {
			return
		}
		edges[[2]int{from, to}] |= t
		key := elleEdgeKey{from, to, t}
		if _, ok := a.why[key]; !ok {
			a.why[key] = why
		}
	}
	// The unobserved appends of committed transactions, per key, in
	// transaction order.
	for ti, t := range a.txns {
		if !t.committed {
			continue
		}
		for _, m := range t.mops {
			if m.F != "append" {
				continue
			}
			kv := elleKV{m.K, m.V}
			if _, seen := a.pos[kv]; seen || a.writer[kv].txn != ti {
				continue
			}
			a.unobserved[m.K] = append(a.unobserved[m.K], m.V)
		}
	}
	keys := ckSortedKeys(a.order)
	for k := range a.unobserved {
		if _, ok := a.order[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Ints(keys)
	for _, k := range keys {
		prev, prevV := -1, 0
		for _, v := range a.order[k] {
			w, ok := a.writer[elleKV{k, v}]
			if !ok || !a.txns[w.txn].committed {
				continue
			}
			if prev >= 0 {
				link(prev, w.txn, elleWW, elleWhy{k: k, v: v, prev: prevV, mop: -1})
			}
			prev, prevV = w.txn, v
		}
		if prev < 0 {
			continue
		}
		for _, v := range a.unobserved[k] {
			link(prev, a.writer[elleKV{k, v}].txn, elleWW, elleWhy{k: k, v: v, prev: prevV, mop: -1})
		}
	}
	for ti, t := range a.txns {
		if t.pair.Type() != OK {
			continue
		}
		for mi, m := range t.mops {
			if m.F != "r" || !a.external(ti, mi) {
				continue
			}
			if len(m.R) > 0 {
				v := m.R[len(m.R)-1]
				if w, ok := a.writer[elleKV{m.K, v}]; ok {
					link(w.txn, ti, elleWR, elleWhy{k: m.K, v: v, mop: mi})
				}
			}
			for _, v := range a.notShown(m.K, m.R) {
				link(ti, a.writer[elleKV{m.K, v}].txn, elleRW, elleWhy{k: m.K, v: v, mop: mi})
			}
		}
	}
	if a.cfg.Process {
		last := map[int]int{}
		for ti, t := range a.txns {
			if !t.committed {
				continue
			}
			p := t.pair.Invoke.Process
			if prev, ok := last[p]; ok {
				link(prev, ti, elleProcess, elleWhy{})
			}
			last[p] = ti
		}
	}
	if a.cfg.RealTime {
		a.realtimeEdges(func(from, to int, t uint8) { link(from, to, t, elleWhy{}) })
	}
	a.adj = make([][]elleEdge, len(a.txns))
	for e, m := range edges {
		a.adj[e[0]] = append(a.adj[e[0]], elleEdge{e[1], m})
	}
	for i := range a.adj {
		sort.Slice(a.adj[i], func(x, y int) bool { return a.adj[i][x].to < a.adj[i][y].to })
	}
}

// external says whether micro-op mi of transaction ti is an external
// read: its first read of the key, before any append of its to the key.
func (a *elleAnalysis) external(ti, mi int) bool {
	mops := a.txns[ti].mops
	k := mops[mi].K
	for _, m := range mops[:mi] {
		if m.K == k {
			return false
		}
	}
	return mops[mi].F == "r" && mops[mi].R != nil
}

// notShown returns the elements appended to k, by committed
// transactions, that a read r of k directly precedes: the first one after
// the read's last element in the version order, or, when the read shows
// the whole order, every unobserved one. A read whose last element the
// version order lacks (an incompatible read) precedes none.
func (a *elleAnalysis) notShown(k int, r []int) []int {
	p := -1
	if len(r) > 0 {
		var ok bool
		if p, ok = a.pos[elleKV{k, r[len(r)-1]}]; !ok {
			return nil
		}
	}
	for _, v := range a.order[k][p+1:] {
		if w, ok := a.writer[elleKV{k, v}]; ok && a.txns[w.txn].committed {
			return []int{v}
		}
	}
	return a.unobserved[k]
}

// realtimeEdges links each committed transaction to the committed
// transactions invoked after it completed, through a frontier of the most
// recent completions (a transitive reduction of real-time order).
func (a *elleAnalysis) realtimeEdges(link func(from, to int, t uint8)) {
	type ev struct {
		time     int64
		complete bool
		pos      int
		txn      int
	}
	var evs []ev
	for ti, t := range a.txns {
		if !t.committed {
			continue
		}
		evs = append(evs, ev{t.pair.Invoke.Time, false, t.pair.InvokePos, ti})
		if t.pair.Type() == OK {
			evs = append(evs, ev{t.pair.Complete.Time, true, t.pair.CompletePos, ti})
		}
	}
	sort.Slice(evs, func(i, j int) bool {
		x, y := evs[i], evs[j]
		if x.time != y.time {
			return x.time < y.time
		}
		if x.complete != y.complete {
			return !x.complete // equal times are concurrent: invokes first
		}
		return x.pos < y.pos
	})
	frontier := map[int]bool{}
	preds := map[int][]int{}
	for _, e := range evs {
		if !e.complete {
			ps := make([]int, 0, len(frontier))
			for f := range frontier {
				ps = append(ps, f)
				link(f, e.txn, elleRealtime)
			}
			preds[e.txn] = ps
			continue
		}
		for _, p := range preds[e.txn] {
			delete(frontier, p)
		}
		delete(preds, e.txn)
		frontier[e.txn] = true
	}
}
