package check

import (
	"slices"
	"strings"
	"testing"
)

// The fractured read of the unobserved-append rule: T1 appends 1 to key 1
// and 5 to key 2; T2 reads key 1 = [1] and key 2 = []: it saw half of T1.
// No read shows the 5, yet T2's read of key 2 lacks it, so T2 precedes T1
// (rw) while it read T1's append to key 1 (wr): G-single.
func TestListAppendFracturedReadOfUnobservedAppend(t *testing.T) {
	var b ckHist
	b.txn(0, OK, ckAp(kx, 1), ckAp(ky, 5))
	b.txn(1, OK, ckRd(kx, 1), ckRd(ky))
	r := laDefault(b.h)
	a := ckExpect(t, r, "G-single", false)
	if got := ckNameSet(r, false); !slices.Equal(got, []string{"G-single"}) {
		t.Fatal(ckDump(r))
	}
	// T2 then T1, as the cycle's witness, each edge explained.
	if !slices.Equal(ckOpIndexes(a.Ops), []int{3, 1}) ||
		!strings.Contains(a.Explain, "without the 5") || !strings.Contains(a.Explain, "no read of key 2 shows 5") {
		t.Fatalf("witness %v: %s", ckOpIndexes(a.Ops), a.Explain)
	}
	// A third transaction that shows the 5: the same verdict.
	b.txn(2, OK, ckRd(ky, 5))
	r = laDefault(b.h)
	if got := ckNameSet(r, false); !slices.Equal(got, []string{"G-single"}) {
		t.Fatal(ckDump(r))
	}
	// An ok read of null is the empty list, as Elle reads it: the same.
	var n ckHist
	n.txn(0, OK, ckAp(kx, 1), ckAp(ky, 5))
	n.txn(1, OK, ckRd(kx, 1), Mop{F: "r", K: ky})
	if !strings.Contains(string(n.h[3].Value), `["r",2,null]`) {
		t.Fatalf("completion %s", n.h[3].Value)
	}
	if r := laDefault(n.h); !slices.Equal(ckNameSet(r, false), []string{"G-single"}) {
		t.Fatal(ckDump(r))
	}
	// Had T2 read key 1 before T1 too, with nothing of T1: no anomaly.
	var c ckHist
	c.txn(0, OK, ckAp(kx, 1), ckAp(ky, 5))
	c.txn(1, OK, ckRd(kx), ckRd(ky))
	ckClean(t, laDefault(c.h))
}

// laCase is a hand-written history and the exact set of anomaly names
// the list-append checker reports for it.
type laCase struct {
	name  string
	cfg   ListAppendConfig
	h     func() []Op
	want  []string // every anomaly's name, each once, sorted
	valid bool
}

var (
	cfgNone     = ListAppendConfig{}
	cfgProcess  = ListAppendConfig{Process: true}
	cfgRealtime = ListAppendConfig{RealTime: true}
)

// laAnomalyCases holds a history for every anomaly the checker names,
// and clean ones.
func laAnomalyCases() []laCase {
	return []laCase{
		// Cycles of data edges.
		{name: "G0", cfg: cfgNone, want: []string{"G0"},
			h: func() []Op { return elTxns("ax1ay1", "ax2ay2", "rx12ry21") }},
		{name: "G1c", cfg: cfgNone, want: []string{"G1c"},
			h: func() []Op { return elTxns("ax1ry1", "ax2ay1", "rx12") }},
		{name: "G-single", cfg: cfgNone, want: []string{"G-single"},
			h: func() []Op { return elTxns("ax1ay5", "rx1ry") }},
		{name: "G-nonadjacent", cfg: cfgNone, want: []string{"G-nonadjacent"},
			h: func() []Op { return elTxns("ax1", "rx1ry", "ay1", "ry1rx") }},
		{name: "G2-item", cfg: cfgNone, want: []string{"G2-item"}, valid: true,
			h: func() []Op { return elTxns("rxay1", "ryax1") }},
		// Not cycles.
		{name: "G1a", cfg: cfgNone, want: []string{"G1a"},
			h: func() []Op {
				var b ckHist
				b.txn(0, Fail, el("ax1")...)
				b.txn(1, OK, el("rx1")...)
				return b.h
			}},
		{name: "G1b", cfg: cfgNone, want: []string{"G-single", "G1b"},
			h: func() []Op { return elTxns("ax1ax2", "rx1") }},
		{name: "lost-update", cfg: cfgNone, want: []string{"G2-item", "lost-update"},
			h: func() []Op { return elTxns("ax0", "rx0ax1", "rx0ax2") }},
		{name: "lost-append", cfg: cfgNone, want: []string{"lost-append"},
			h: func() []Op {
				var b ckHist
				b.txn(0, OK, el("ax1ay1")...)
				b.txn(1, OK, el("ax2")...)
				b.txn(2, OK, el("rx1ry1")...).final()
				return b.h
			}},
		{name: "unread-key", cfg: cfgNone, want: []string{"unread-key"},
			h: func() []Op {
				var b ckHist
				b.txn(0, OK, el("ax1")...)
				b.txn(1, OK, el("ry")...).final()
				return b.h
			}},
		{name: "duplicate-elements", cfg: cfgNone, want: []string{"duplicate-elements"},
			h: func() []Op { return elTxns("ax1", "rx11") }},
		{name: "garbage", cfg: cfgNone, want: []string{"garbage"},
			h: func() []Op { return elTxns("ax1", "rx19") }},
		{name: "incompatible-order", cfg: cfgNone, want: []string{"incompatible-order"},
			h: func() []Op { return elTxns("ax1", "ax2", "rx12", "rx21") }},
		{name: "internal", cfg: cfgNone, want: []string{"internal"},
			h: func() []Op { return elTxns("ax1rx") }},
		{name: "future-read", cfg: cfgNone, want: []string{"future-read"},
			h: func() []Op { return elTxns("rx1ax1") }},
		{name: "dirty-update", cfg: cfgNone, want: []string{"G1a", "dirty-update"},
			h: func() []Op {
				var b ckHist
				b.txn(0, Fail, el("ax1")...)
				b.txn(1, OK, el("ax2")...)
				b.txn(2, OK, el("rx12")...)
				return b.h
			}},
		{name: "malformed", cfg: cfgNone, want: []string{"malformed"},
			h: func() []Op {
				var b ckHist
				b.inv(0, "txn", "not micro-ops").done(OK, 0, "txn", "not micro-ops")
				return b.h
			}},
		// Cycles that need process order: the same process ran T1 then T2.
		{name: "G0-process", cfg: cfgProcess, want: []string{"G0-process"},
			h: func() []Op {
				var b ckHist
				b.txn(0, OK, el("ax1")...).txn(0, OK, el("ax2")...).txn(1, OK, el("rx21")...)
				return b.h
			}},
		{name: "G1c-process", cfg: cfgProcess, want: []string{"G1c-process"},
			h: func() []Op {
				var b ckHist
				b.txn(0, OK, el("ry1")...).txn(0, OK, el("ay1")...)
				return b.h
			}},
		{name: "G-single-process", cfg: cfgProcess, want: []string{"G-single-process"},
			h: func() []Op {
				var b ckHist
				b.txn(0, OK, el("ax1")...).txn(0, OK, el("rx")...).txn(1, OK, el("rx1")...)
				return b.h
			}},
		{name: "G-nonadjacent-process", cfg: cfgProcess, want: []string{"G-nonadjacent-process"},
			h: func() []Op {
				var b ckHist
				b.txn(0, OK, el("rxrz1")...).txn(1, OK, el("ax1")...).txn(1, OK, el("rz")...).txn(2, OK, el("az1")...)
				return b.h
			}},
		{name: "G2-item-process", cfg: cfgProcess, want: []string{"G2-item-process"}, valid: true,
			h: func() []Op {
				var b ckHist
				b.txn(0, OK, el("ay1")...).txn(0, OK, el("rx")...).txn(1, OK, el("ax1ry")...)
				return b.h
			}},
		// Cycles that need real-time order: T1 completed before T2 was
		// invoked.
		{name: "G0-realtime", cfg: cfgRealtime, want: []string{"G0-realtime"},
			h: func() []Op {
				var b ckHist
				b.txn(0, OK, el("ax1")...).txn(1, OK, el("ax2")...).txn(2, OK, el("rx21")...)
				return b.h
			}},
		{name: "G1c-realtime", cfg: cfgRealtime, want: []string{"G1c-realtime"},
			h: func() []Op {
				var b ckHist
				b.txn(0, OK, el("ry1")...).txn(1, OK, el("ay1")...)
				return b.h
			}},
		{name: "G-single-realtime", cfg: cfgRealtime, want: []string{"G-single-realtime"},
			h: func() []Op {
				var b ckHist
				b.txn(0, OK, el("ax1")...).txn(1, OK, el("rx")...).txn(2, OK, el("rx1")...)
				return b.h
			}},
		{name: "G-nonadjacent-realtime", cfg: cfgRealtime, want: []string{"G-nonadjacent-realtime"},
			h: func() []Op {
				// T0 and T3 span the run; T1 completes before T2 begins.
				var b ckHist
				b.tInv(0, el("rxrz")...).tInv(3, el("az1")...)
				b.txn(1, OK, el("ax1")...).txn(2, OK, el("rz")...)
				b.tDone(OK, 3, el("az1")...).tDone(OK, 0, el("rxrz1")...)
				return b.h
			}},
		{name: "G2-item-realtime", cfg: cfgRealtime, want: []string{"G2-item-realtime"}, valid: true,
			h: func() []Op {
				var b ckHist
				b.tInv(1, el("ax1ry")...)
				b.txn(2, OK, el("ay1")...).txn(0, OK, el("rx")...)
				b.tDone(OK, 1, el("ax1ry")...)
				return b.h
			}},
		// Clean.
		{name: "clean serial", cfg: ListAppendConfig{Process: true, RealTime: true, Serializable: true}, valid: true,
			h: func() []Op { return elTxns("ax1", "rx1ax2", "rx12ry", "ay1rx12", "ry1") }},
		{name: "clean double append", cfg: ListAppendConfig{Process: true, RealTime: true, Serializable: true}, valid: true,
			h: func() []Op { return elTxns("rxax1ax2", "rx12") }},
		{name: "clean info appends", cfg: ListAppendConfig{Process: true, RealTime: true, Serializable: true}, valid: true,
			h: func() []Op {
				var b ckHist
				b.txn(0, Info, el("ax1ay1")...) // may have happened: it did
				b.txn(1, Info, el("ax2")...)    // may have happened: no one knows
				b.txn(2, Fail, el("ax3")...)
				b.txn(3, OK, el("rx1ry1")...)
				return b.h
			}},
	}
}

// Every anomaly the list-append checker names, each from a hand-written
// history, with the exact set of names reported; and clean histories.
func TestListAppendEveryAnomaly(t *testing.T) {
	named := map[string]bool{}
	for _, c := range laAnomalyCases() {
		t.Run(c.name, func(t *testing.T) {
			r := laCheck(c.h(), c.cfg)
			t.Log(ckDump(r))
			if got := ckNameSet(r, false); !slices.Equal(got, c.want) {
				t.Fatalf("names %v, want %v", got, c.want)
			}
			if r.Valid != c.valid {
				t.Fatalf("valid %v, want %v", r.Valid, c.valid)
			}
			for _, a := range r.Anomalies {
				if a.Explain == "" || len(a.Ops) == 0 {
					t.Fatalf("%s without explanation or witness", a.Name)
				}
				if a.Allowed != strings.HasPrefix(a.Name, "G2-item") {
					t.Fatalf("%s allowed=%v", a.Name, a.Allowed)
				}
			}
		})
		for _, n := range c.want {
			named[n] = true
		}
	}
	// Every name the checker can report has a case of its own.
	var missing []string
	for _, base := range []string{"G0", "G1c", "G-single", "G-nonadjacent", "G2-item"} {
		for _, n := range []string{base, base + "-process", base + "-realtime"} {
			if !named[n] {
				missing = append(missing, n)
			}
		}
	}
	for _, n := range []string{"G1a", "G1b", "lost-update", "lost-append", "unread-key", "duplicate-elements",
		"garbage", "incompatible-order", "internal", "future-read", "dirty-update", "malformed"} {
		if !named[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("no case for %v", missing)
	}
}
