package check

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// serialLA is a serial execution of list-append transactions against an
// in-memory store, recorded as a history.
type serialLA struct {
	h     []Op
	t     int64
	store map[int][]int
	next  int
	// okTxns maps a value to the ok transaction (completion index) that
	// appended it; final is the completion index of the last read-all
	// transaction.
	okWriter map[int]int
	final    int
	// oks lists the ok transactions, in order, each with the store
	// right after it, if snap is set.
	snap bool
	oks  []serialOK
}

type serialOK struct {
	complete int // completion index in h
	mops     []Mop
	after    map[int][]int
}

func (s *serialLA) record(typ Type, p int, mops []Mop) int {
	s.t += 1 + int64(len(s.h)%3)
	s.h = append(s.h, Op{Index: len(s.h), Type: typ, Process: p, F: "txn", Time: s.t}.WithValue(mops))
	return len(s.h) - 1
}

// run executes mops (reads filled in) and records invoke and completion;
// apply says whether the transaction takes effect.
func (s *serialLA) run(p int, typ Type, apply bool, mops []Mop) int {
	s.record(Invoke, p, ckStrip(mops))
	out := slices.Clone(mops)
	if apply {
		for i, m := range out {
			switch m.F {
			case "append":
				s.store[m.K] = append(slices.Clone(s.store[m.K]), m.V)
			case "r":
				out[i].R = slices.Clone(s.store[m.K])
				if out[i].R == nil {
					out[i].R = []int{}
				}
			}
		}
	}
	if typ != OK {
		out = ckStrip(out)
	}
	c := s.record(typ, p, out)
	if typ == OK && s.snap {
		after := make(map[int][]int, len(s.store))
		for k, l := range s.store {
			after[k] = slices.Clone(l)
		}
		s.oks = append(s.oks, serialOK{complete: c, mops: mops, after: after})
	}
	return c
}

func genSerialLA(t *rapid.T) *serialLA {
	s := &serialLA{store: map[int][]int{}, okWriter: map[int]int{}, snap: true}
	keys := rapid.IntRange(1, 4).Draw(t, "keys")
	n := rapid.IntRange(1, 30).Draw(t, "txns")
	procs := []int{0, 1, 2}
	nextProc := 3
	for i := 0; i < n; i++ {
		pi := rapid.IntRange(0, len(procs)-1).Draw(t, "proc")
		nm := rapid.IntRange(1, 4).Draw(t, "mops")
		mops := make([]Mop, nm)
		for j := range mops {
			k := rapid.IntRange(0, keys-1).Draw(t, "key")
			if rapid.Bool().Draw(t, "append") {
				s.next++
				mops[j] = Mop{F: "append", K: k, V: s.next}
			} else {
				mops[j] = Mop{F: "r", K: k}
			}
		}
		outcome := rapid.IntRange(0, 9).Draw(t, "outcome")
		switch {
		case outcome == 0:
			s.run(procs[pi], Fail, false, mops)
		case outcome == 1:
			s.run(procs[pi], Info, rapid.Bool().Draw(t, "applied"), mops)
			procs[pi] = nextProc // a process whose op ended in info never runs another
			nextProc++
		default:
			c := s.run(procs[pi], OK, true, mops)
			for _, m := range mops {
				if m.F == "append" {
					s.okWriter[m.V] = c
				}
			}
		}
	}
	var all []Mop
	for k := 0; k < keys; k++ {
		all = append(all, Mop{F: "r", K: k})
	}
	s.final = s.run(nextProc, OK, true, all)
	return s
}

var laPropConfigs = []ListAppendConfig{
	{},
	DefaultListAppendConfig(),
	{Process: true, RealTime: true},
	{Process: true, RealTime: true, Serializable: true},
}

// A serial execution never has an anomaly, whatever fails or is info.
func TestListAppendPropSerialValid(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genSerialLA(t)
		for _, cfg := range laPropConfigs {
			if r := laCheck(s.h, cfg); !r.Valid || len(r.Anomalies) > 0 {
				t.Fatalf("config %+v: %s", cfg, ckDump(r))
			}
		}
	})
}

// Corrupting one read of a serial execution is caught (with real-time
// order, which a serial execution has everywhere).
func TestListAppendPropMutation(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genSerialLA(t)
		type site struct{ op, mop int }
		var drops, swaps []site
		for i, o := range s.h {
			if o.Type != OK {
				continue
			}
			var mops []Mop
			if err := o.Decode(&mops); err != nil {
				t.Fatal(err)
			}
			for j, m := range mops {
				if m.F != "r" || len(m.R) == 0 {
					continue
				}
				// Drop the last element: the read becomes stale, missing
				// an ok transaction that completed before it began.
				if w, ok := s.okWriter[m.R[len(m.R)-1]]; ok && w != i && i != s.final {
					drops = append(drops, site{i, j})
				}
				// Swap the last two elements of a final read, appended
				// by two ok transactions, the later one invoked after
				// the earlier one completed.
				if i == s.final && len(m.R) >= 2 {
					w1, ok1 := s.okWriter[m.R[len(m.R)-2]]
					w2, ok2 := s.okWriter[m.R[len(m.R)-1]]
					if ok1 && ok2 && w1 != w2 {
						swaps = append(swaps, site{i, j})
					}
				}
			}
		}
		if len(drops)+len(swaps) == 0 {
			t.Skip("nothing to corrupt")
		}
		pick := rapid.IntRange(0, len(drops)+len(swaps)-1).Draw(t, "site")
		h := slices.Clone(s.h)
		var st site
		drop := pick < len(drops)
		if drop {
			st = drops[pick]
		} else {
			st = swaps[pick-len(drops)]
		}
		var mops []Mop
		if err := h[st.op].Decode(&mops); err != nil {
			t.Fatal(err)
		}
		r := slices.Clone(mops[st.mop].R)
		if drop {
			r = r[:len(r)-1]
		} else {
			r[len(r)-2], r[len(r)-1] = r[len(r)-1], r[len(r)-2]
		}
		mops[st.mop].R = r
		h[st.op] = h[st.op].WithValue(mops)
		res := laCheck(h, ListAppendConfig{Process: true, RealTime: true})
		if res.Valid {
			t.Fatalf("corrupted op %d (drop=%v) not caught: %s", st.op, drop, ckDump(res))
		}
	})
}

// A history of about 50k events (10k under the race detector) checks in
// reasonable time.
func TestListAppendLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	r := rand.New(rand.NewPCG(1, 2))
	s := &serialLA{store: map[int][]int{}, okWriter: map[int]int{}}
	n := 25_000 // transactions: 50k events
	if ckRaceEnabled {
		n = 5_000
	}
	for i := 0; i < n; i++ {
		base := i / 200
		mops := make([]Mop, 1+r.IntN(4))
		for j := range mops {
			k := base + r.IntN(8)
			if r.IntN(2) == 0 {
				s.next++
				mops[j] = Mop{F: "append", K: k, V: s.next}
			} else {
				mops[j] = Mop{F: "r", K: k}
			}
		}
		switch r.IntN(20) {
		case 0:
			s.run(i%10, Fail, false, mops)
		case 1:
			s.run(1000+i, Info, r.IntN(2) == 0, mops)
		default:
			c := s.run(i%10, OK, true, mops)
			for _, m := range mops {
				if m.F == "append" {
					s.okWriter[m.V] = c
				}
			}
		}
	}
	start := time.Now()
	res := laCheck(s.h, ListAppendConfig{Process: true, RealTime: true})
	el := time.Since(start)
	t.Logf("%d events in %v", len(s.h), el)
	if !res.Valid || len(res.Anomalies) > 0 {
		t.Fatal(ckDump(res))
	}

	// A stale read in the middle: a large strongly connected component
	// (real-time edges), in which the cycle search finds a G-single.
	h := slices.Clone(s.h)
	corrupted := false
	for i := len(h) / 2; i < len(h); i++ {
		if h[i].Type != OK {
			continue
		}
		var mops []Mop
		if err := h[i].Decode(&mops); err != nil {
			t.Fatal(err)
		}
		j := slices.IndexFunc(mops, func(m Mop) bool {
			if m.F != "r" || len(m.R) < 2 {
				return false
			}
			w, ok := s.okWriter[m.R[len(m.R)-1]]
			return ok && w != i && w < i-100
		})
		if j < 0 {
			continue
		}
		mops[j].R = mops[j].R[:len(mops[j].R)-1]
		h[i] = h[i].WithValue(mops)
		corrupted = true
		break
	}
	if !corrupted {
		t.Fatal("no read to corrupt")
	}
	start = time.Now()
	res = laCheck(h, ListAppendConfig{Process: true, RealTime: true})
	t.Logf("corrupted: %v: %.300s", time.Since(start), ckDump(res))
	if res.Valid || len(res.Anomalies) == 0 {
		t.Fatal("stale read not caught")
	}
	if len(res.Anomalies[0].Ops) == 0 {
		t.Fatal("no witness")
	}
}

// Concurrent executions in which each transaction takes effect atomically
// at one instant between its invoke and its completion (an info one at
// any instant after its invoke, or never) are strictly serializable: no
// anomaly under any configuration.
func TestListAppendPropConcurrentValid(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := &serialLA{store: map[int][]int{}, okWriter: map[int]int{}}
		keys := rapid.IntRange(1, 3).Draw(t, "keys")
		type running struct {
			mops    []Mop
			applied bool
			out     []Mop
		}
		apply := func(mops []Mop) []Mop {
			out := slices.Clone(mops)
			for i, m := range out {
				switch m.F {
				case "append":
					s.store[m.K] = append(slices.Clone(s.store[m.K]), m.V)
				case "r":
					out[i].R = slices.Clone(s.store[m.K])
					if out[i].R == nil {
						out[i].R = []int{}
					}
				}
			}
			return out
		}
		nproc := rapid.IntRange(1, 4).Draw(t, "procs")
		procID := make([]int, nproc)
		for i := range procID {
			procID[i] = i
		}
		nextID := nproc
		run := make([]*running, nproc)
		var late [][]Mop // info transactions that may still apply
		for step, n := 0, rapid.IntRange(1, 80).Draw(t, "steps"); step < n; step++ {
			if len(late) > 0 && rapid.IntRange(0, 5).Draw(t, "late") == 0 {
				apply(late[0])
				late = late[1:]
			}
			p := rapid.IntRange(0, nproc-1).Draw(t, "proc")
			r := run[p]
			switch {
			case r == nil:
				mops := make([]Mop, rapid.IntRange(1, 3).Draw(t, "mops"))
				for j := range mops {
					k := rapid.IntRange(0, keys-1).Draw(t, "key")
					if rapid.Bool().Draw(t, "append") {
						s.next++
						mops[j] = Mop{F: "append", K: k, V: s.next}
					} else {
						mops[j] = Mop{F: "r", K: k}
					}
				}
				s.record(Invoke, procID[p], ckStrip(mops))
				run[p] = &running{mops: mops}
			case !r.applied && rapid.IntRange(0, 9).Draw(t, "fail") == 0:
				s.record(Fail, procID[p], ckStrip(r.mops))
				run[p] = nil
			case !r.applied && rapid.IntRange(0, 9).Draw(t, "info") == 0:
				if rapid.Bool().Draw(t, "later") {
					late = append(late, r.mops)
				}
				s.record(Info, procID[p], ckStrip(r.mops))
				procID[p] = nextID
				nextID++
				run[p] = nil
			case !r.applied:
				r.out = apply(r.mops)
				r.applied = true
			case rapid.IntRange(0, 9).Draw(t, "lost") == 0:
				// Applied, but the client never learned it.
				s.record(Info, procID[p], ckStrip(r.mops))
				procID[p] = nextID
				nextID++
				run[p] = nil
			default:
				s.record(OK, procID[p], r.out)
				run[p] = nil
			}
		}
		for _, cfg := range laPropConfigs {
			if r := laCheck(s.h, cfg); !r.Valid || len(r.Anomalies) > 0 {
				t.Fatalf("config %+v: %s", cfg, ckDump(r))
			}
		}
	})
}

// dropReads removes random read micro-ops from the ok transactions of a
// serial history (from invoke and completion alike, the final read-all
// included), so that many appends are shown by no read.
func dropReads(t *rapid.T, h []Op) []Op {
	out := slices.Clone(h)
	for i, o := range out {
		if o.Type != OK {
			continue
		}
		var mops []Mop
		if err := o.Decode(&mops); err != nil {
			t.Fatal(err)
		}
		var keep []Mop
		for _, m := range mops {
			if m.F == "r" && rapid.IntRange(0, 2).Draw(t, "drop") == 0 {
				continue
			}
			keep = append(keep, m)
		}
		if len(keep) == len(mops) {
			continue
		}
		if keep == nil {
			keep = []Mop{}
		}
		// The serial history records each invoke right before its
		// completion.
		if out[i-1].Type != Invoke || out[i-1].Process != o.Process {
			t.Fatalf("op %d: no invoke before it", i)
		}
		out[i] = o.WithValue(keep)
		out[i-1] = out[i-1].WithValue(ckStrip(keep))
	}
	return out
}

// (a) A serial execution with random reads dropped, whatever failed or
// ended in info (applied or not), has no anomaly under any
// configuration: the inferences are sound, in particular that a read
// precedes every committed append of an element it does not show, shown
// by another read or by none.
func TestListAppendPropDroppedReadsValid(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genSerialLA(t)
		h := dropReads(t, s.h)
		for _, cfg := range laPropConfigs {
			if r := laCheck(h, cfg); !r.Valid || len(r.Anomalies) > 0 {
				t.Fatalf("config %+v: %s", cfg, ckDump(r))
			}
		}
	})
}

// (b) A fractured read injected into a serial execution (reads dropped
// at random): a transaction R that reads key k1 in a state after an ok
// transaction W's append to it, and key k2 in a state before W's append
// to it, is found as G-single, under every configuration, whether or not
// any read shows W's append to k2. (Nothing else is reported: every new
// cycle goes through R, whose only outgoing edges are rw, and a failing
// cycle of data edges hides the -process and -realtime ones.)
func TestListAppendPropFracturedRead(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genSerialLA(t)
		type site struct{ w, k1, k2 int }
		var sites []site
		for wi, w := range s.oks {
			var ks []int
			for _, m := range w.mops {
				if m.F == "append" && !slices.Contains(ks, m.K) {
					ks = append(ks, m.K)
				}
			}
			for _, k1 := range ks {
				for _, k2 := range ks {
					if k1 != k2 {
						sites = append(sites, site{wi, k1, k2})
					}
				}
			}
		}
		if len(sites) == 0 {
			t.Skip("no transaction appends to two keys")
		}
		st := sites[rapid.IntRange(0, len(sites)-1).Draw(t, "site")]
		w := s.oks[st.w]
		// k1 as W, or any ok transaction after it, left it; k2 as the
		// initial state, or any ok transaction before W, left it.
		l1 := s.oks[rapid.IntRange(st.w, len(s.oks)-1).Draw(t, "after")].after[st.k1]
		var l2 []int
		if b := rapid.IntRange(-1, st.w-1).Draw(t, "before"); b >= 0 {
			l2 = s.oks[b].after[st.k2]
		}
		if l2 == nil {
			l2 = []int{}
		}
		reads := []Mop{{F: "r", K: st.k1, R: slices.Clone(l1)}, {F: "r", K: st.k2, R: slices.Clone(l2)}}
		if rapid.Bool().Draw(t, "k2 first") {
			reads[0], reads[1] = reads[1], reads[0]
		}
		h := dropReads(t, s.h)
		// R runs concurrently with W, by a process of its own.
		p := 1 << 20
		ri := Op{Type: Invoke, Process: p, F: "txn"}.WithValue(ckStrip(reads))
		rc := Op{Type: OK, Process: p, F: "txn"}.WithValue(reads)
		var out []Op
		for i, o := range h {
			if i == w.complete-1 {
				out = append(out, ri)
			}
			out = append(out, o)
			if i == w.complete {
				out = append(out, rc)
			}
		}
		for i := range out {
			out[i].Index, out[i].Time = i, int64(10*(i+1))
		}
		for _, cfg := range laPropConfigs {
			r := laCheck(out, cfg)
			if got := ckNameSet(r, false); !slices.Equal(got, []string{"G-single"}) {
				t.Fatalf("config %+v: R reads key %d = %v, key %d = %v around op %d: %s",
					cfg, st.k1, l1, st.k2, l2, w.complete, ckDump(r))
			}
		}
	})
}
