package check

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func laCheck(h []Op, cfg ListAppendConfig) Result {
	return (&ListAppendChecker{Config: cfg}).Check(h)
}

func laDefault(h []Op) Result { return NewListAppendChecker().Check(h) }

// Keys.
const (
	kx = 1
	ky = 2
	kz = 3
	kw = 4
)

func TestListAppendSerialValid(t *testing.T) {
	var b ckHist
	b.txn(0, OK, ckAp(kx, 1), ckRd(kx, 1))
	b.txn(1, OK, ckRd(kx, 1), ckAp(kx, 2), ckAp(ky, 1))
	b.txn(0, OK, ckRd(ky, 1), ckRd(kx, 1, 2))
	b.txn(2, Fail, ckAp(kx, 3))
	b.txn(1, OK, ckRd(kx, 1, 2), ckAp(kx, 4), ckRd(kx, 1, 2, 4))
	for _, cfg := range []ListAppendConfig{{}, DefaultListAppendConfig(), {Process: true, RealTime: true, Serializable: true}} {
		r := laCheck(b.h, cfg)
		ckClean(t, r)
		if r.OK != 4 || r.Fail != 1 || r.Info != 0 {
			t.Fatalf("counts %d %d %d", r.OK, r.Fail, r.Info)
		}
	}
}

// Concurrent transactions that snapshot isolation allows, with info
// transactions whose appends nobody read and one whose append was read.
func TestListAppendConcurrentSIValid(t *testing.T) {
	var b ckHist
	b.tInv(0, ckRd(kx), ckAp(kx, 1))
	b.tInv(1, ckRd(ky), ckAp(ky, 1))
	b.tInv(2, ckAp(kx, 9))                     // info, never read
	b.tDone(OK, 0, ckRd(kx), ckAp(kx, 1))      // x = [1]
	b.tInv(3, ckAp(ky, 2), ckAp(kz, 1))        // info, read later
	b.tDone(OK, 1, ckRd(ky), ckAp(ky, 1))      // y = [1]
	b.tDone(Info, 2, ckAp(kx, 9))              //
	b.tDone(Info, 3, ckAp(ky, 2), ckAp(kz, 1)) //
	b.tInv(4, ckAp(kz, 7))                     // never completes, never read
	b.tInv(5, ckRd(kx), ckRd(ky), ckRd(kz))    //
	b.tDone(OK, 5, ckRd(kx, 1), ckRd(ky, 1, 2), ckRd(kz, 1))
	b.txn(6, OK, ckRd(kx, 1), ckAp(kx, 3), ckRd(kz, 1))
	b.txn(5, OK, ckRd(kx, 1, 3), ckRd(ky, 1, 2))
	for _, cfg := range []ListAppendConfig{DefaultListAppendConfig(), {Process: true, RealTime: true}} {
		r := laCheck(b.h, cfg)
		ckClean(t, r)
		if r.Info != 3 {
			t.Fatalf("info count %d", r.Info)
		}
	}
}

func TestListAppendG0(t *testing.T) {
	var b ckHist
	b.tInv(0, ckAp(kx, 1), ckAp(ky, 1))
	b.tInv(1, ckAp(kx, 2), ckAp(ky, 2))
	b.tDone(OK, 0, ckAp(kx, 1), ckAp(ky, 1))
	b.tDone(OK, 1, ckAp(kx, 2), ckAp(ky, 2))
	b.txn(2, OK, ckRd(kx, 1, 2), ckRd(ky, 2, 1))
	a := ckExpect(t, laDefault(b.h), "G0", false)
	if got := ckOpIndexes(a.Ops); len(got) != 2 {
		t.Fatalf("witness %v", got)
	}
	if !strings.Contains(a.Explain, "ww") {
		t.Fatalf("explain %s", a.Explain)
	}
}

func TestListAppendG1a(t *testing.T) {
	var b ckHist
	b.txn(0, Fail, ckAp(kx, 1))
	b.txn(1, OK, ckRd(kx, 1))
	a := ckExpect(t, laDefault(b.h), "G1a", false)
	if !slices.Equal(ckOpIndexes(a.Ops), []int{1, 3}) {
		t.Fatalf("witness %v", ckOpIndexes(a.Ops))
	}
}

func TestListAppendG1b(t *testing.T) {
	var b ckHist
	b.tInv(0, ckAp(kx, 1), ckAp(kx, 2))
	b.txn(1, OK, ckRd(kx, 1))
	b.tDone(OK, 0, ckAp(kx, 1), ckAp(kx, 2))
	a := ckExpect(t, laDefault(b.h), "G1b", false)
	if !strings.Contains(a.Explain, "intermediate") {
		t.Fatal(a.Explain)
	}
}

func TestListAppendG1c(t *testing.T) {
	var b ckHist
	b.tInv(0, ckAp(kx, 1), ckRd(ky))
	b.tInv(1, ckAp(ky, 1), ckRd(kx))
	b.tDone(OK, 0, ckAp(kx, 1), ckRd(ky, 1))
	b.tDone(OK, 1, ckAp(ky, 1), ckRd(kx, 1))
	a := ckExpect(t, laDefault(b.h), "G1c", false)
	if !strings.Contains(a.Explain, "wr") || len(a.Ops) != 2 {
		t.Fatal(a.Explain)
	}
}

// Read skew: T1 sees T2's append to x but not its append to y.
func TestListAppendGSingle(t *testing.T) {
	var b ckHist
	b.tInv(0, ckRd(kx), ckRd(ky))
	b.txn(1, OK, ckAp(kx, 1), ckAp(ky, 1))
	b.tDone(OK, 0, ckRd(kx, 1), ckRd(ky))
	b.txn(2, OK, ckRd(ky, 1))
	a := ckExpect(t, laDefault(b.h), "G-single", false)
	if !strings.Contains(a.Explain, "rw") || !strings.Contains(a.Explain, "wr") {
		t.Fatal(a.Explain)
	}
	// T1 (the reader, op 3) then T2 (the appender, op 2).
	if !slices.Equal(ckOpIndexes(a.Ops), []int{3, 2}) {
		t.Fatalf("witness %v: %s", ckOpIndexes(a.Ops), a.Explain)
	}
}

// T1 -rw-> T2 -wr-> T3 -rw-> T4 -wr-> T1.
func TestListAppendGNonadjacent(t *testing.T) {
	var b ckHist
	b.tInv(0, ckRd(kx), ckRd(kw))
	b.tInv(1, ckAp(kx, 2), ckAp(ky, 2))
	b.tInv(2, ckRd(ky), ckRd(kz))
	b.tInv(3, ckAp(kz, 4), ckAp(kw, 4))
	b.tDone(OK, 0, ckRd(kx), ckRd(kw, 4))
	b.tDone(OK, 1, ckAp(kx, 2), ckAp(ky, 2))
	b.tDone(OK, 2, ckRd(ky, 2), ckRd(kz))
	b.tDone(OK, 3, ckAp(kz, 4), ckAp(kw, 4))
	b.txn(4, OK, ckRd(kx, 2), ckRd(kz, 4))
	r := laDefault(b.h)
	a := ckExpect(t, r, "G-nonadjacent", false)
	if len(a.Ops) != 4 || len(r.Anomalies) != 1 {
		t.Fatal(ckDump(r))
	}
}

func writeSkew() []Op {
	var b ckHist
	b.tInv(0, ckRd(kx), ckRd(ky), ckAp(kx, 1))
	b.tInv(1, ckRd(kx), ckRd(ky), ckAp(ky, 1))
	b.tDone(OK, 0, ckRd(kx), ckRd(ky), ckAp(kx, 1))
	b.tDone(OK, 1, ckRd(kx), ckRd(ky), ckAp(ky, 1))
	b.txn(4, OK, ckRd(kx, 1), ckRd(ky, 1))
	return b.h
}

// Write skew: allowed under snapshot isolation, not under
// serializability.
func TestListAppendG2Item(t *testing.T) {
	r := laDefault(writeSkew())
	a := ckExpect(t, r, "G2-item", true)
	if !a.Allowed || len(r.Anomalies) != 1 {
		t.Fatal(ckDump(r))
	}
	cfg := DefaultListAppendConfig()
	cfg.Serializable = true
	a = ckExpect(t, laCheck(writeSkew(), cfg), "G2-item", false)
	if a.Allowed {
		t.Fatal("allowed under serializability")
	}
}

func TestListAppendLostUpdate(t *testing.T) {
	// The second append is never read; still, each transaction read the
	// empty list, so precedes the other's append: T2 -rw-> T1 (the append
	// of 1, which a read shows first) and T1 -ww-> T2 (2 is after every
	// element a read shows): a G-single besides the lost update, as Elle
	// infers.
	var b ckHist
	b.tInv(0, ckRd(kx), ckAp(kx, 1))
	b.tInv(1, ckRd(kx), ckAp(kx, 2))
	b.tDone(OK, 0, ckRd(kx), ckAp(kx, 1))
	b.tDone(OK, 1, ckRd(kx), ckAp(kx, 2))
	b.txn(2, OK, ckRd(kx, 1))
	r := laDefault(b.h)
	ckExpect(t, r, "lost-update", false)
	ckExpect(t, r, "G-single", false)
	if got := ckNames(r); !slices.Equal(got, []string{"G-single", "lost-update"}) {
		t.Fatal(ckDump(r))
	}
	// Both read: the same.
	b.txn(2, OK, ckRd(kx, 1, 2))
	r = laDefault(b.h)
	if got := ckNames(r); !slices.Equal(got, []string{"G-single", "lost-update"}) {
		t.Fatal(ckDump(r))
	}
}

func TestListAppendIncompatibleOrder(t *testing.T) {
	var b ckHist
	b.txn(0, OK, ckAp(kx, 1))
	b.txn(1, OK, ckAp(kx, 2))
	b.txn(2, OK, ckRd(kx, 1, 2))
	b.txn(3, OK, ckRd(kx, 2, 1))
	a := ckExpect(t, laDefault(b.h), "incompatible-order", false)
	if !strings.Contains(a.Explain, "[1 2]") || !strings.Contains(a.Explain, "[2 1]") {
		t.Fatal(a.Explain)
	}
}

func TestListAppendGarbage(t *testing.T) {
	var b ckHist
	b.txn(0, OK, ckAp(kx, 1))
	b.txn(1, OK, ckRd(kx, 1, 99))
	a := ckExpect(t, laDefault(b.h), "garbage", false)
	if !strings.Contains(a.Explain, "99") {
		t.Fatal(a.Explain)
	}
}

func TestListAppendDuplicate(t *testing.T) {
	var b ckHist
	b.txn(0, OK, ckAp(kx, 1))
	b.txn(1, OK, ckRd(kx, 1, 1))
	ckExpect(t, laDefault(b.h), "duplicate-elements", false)
}

func TestListAppendInternal(t *testing.T) {
	var b ckHist
	b.txn(0, OK, ckAp(kx, 1), ckRd(kx))
	ckExpect(t, laDefault(b.h), "internal", false)
	var c ckHist
	c.txn(0, OK, ckRd(kx), ckAp(kx, 1), ckRd(kx, 1), ckAp(kx, 2), ckRd(kx, 1, 2))
	ckClean(t, laDefault(c.h))
}

// A stale read: a process reads x without the append it made before.
// Fine under plain serializability, a G-single-process with process
// order, and a G-single-realtime across processes with real-time order.
func TestListAppendStaleRead(t *testing.T) {
	var b ckHist
	b.txn(0, OK, ckAp(kx, 1))
	b.txn(0, OK, ckRd(kx))
	b.txn(1, OK, ckRd(kx, 1))
	ckClean(t, laCheck(b.h, ListAppendConfig{}))
	ckExpect(t, laCheck(b.h, ListAppendConfig{Process: true}), "G-single-process", false)

	var c ckHist
	c.txn(0, OK, ckAp(kx, 1))
	c.txn(1, OK, ckRd(kx))
	c.txn(2, OK, ckRd(kx, 1))
	ckClean(t, laCheck(c.h, DefaultListAppendConfig()))
	a := ckExpect(t, laCheck(c.h, ListAppendConfig{RealTime: true}), "G-single-realtime", false)
	if !strings.Contains(a.Explain, "realtime") {
		t.Fatal(a.Explain)
	}
}

// A component with a G0 cycle (ww only) and a G-single: both are
// reported (G0 does not imply G-single), as Elle does; its G2-item cycle
// is not, the G-single implies it.
func TestListAppendPrefersSerious(t *testing.T) {
	var b ckHist
	b.tInv(0, ckRd(kz), ckAp(kw, 6), ckAp(kx, 1), ckAp(ky, 1))
	b.tInv(1, ckRd(kw), ckAp(kz, 5), ckAp(kx, 2), ckAp(ky, 2))
	b.tDone(OK, 0, ckRd(kz), ckAp(kw, 6), ckAp(kx, 1), ckAp(ky, 1))
	b.tDone(OK, 1, ckRd(kw), ckAp(kz, 5), ckAp(kx, 2), ckAp(ky, 2))
	b.txn(2, OK, ckRd(kx, 1, 2), ckRd(ky, 2, 1), ckRd(kz, 5), ckRd(kw, 6))
	r := laDefault(b.h)
	ckExpect(t, r, "G0", false)
	if got := ckNames(r); !slices.Equal(got, []string{"G-single", "G0"}) {
		t.Fatal(ckDump(r))
	}
}

func TestPairOps(t *testing.T) {
	h := []Op{
		{Type: Invoke, Process: 1, F: "txn", Time: 1},
		{Type: Invoke, Process: 2, F: "txn", Time: 2},
		{Type: OK, Process: 2, F: "txn", Time: 3},
		{Type: OK, Process: 9, F: "txn", Time: 4}, // no invoke
		{Type: Invoke, Process: 2, F: "txn", Time: 5},
	}
	ps := PairOps(h)
	if len(ps) != 3 {
		t.Fatalf("%d pairs", len(ps))
	}
	if !ps[0].Synthetic || ps[0].Type() != Info || ps[0].Complete.Time <= 5 {
		t.Fatalf("%+v", ps[0])
	}
	if ps[1].Type() != OK || ps[1].CompletePos != 2 || ps[1].Invoke.Index != 1 {
		t.Fatalf("%+v", ps[1])
	}
	if !ps[2].Synthetic {
		t.Fatalf("%+v", ps[2])
	}
}

// final marks the last transaction recorded (invoke and completion) as a
// final read.
func (b *ckHist) final() *ckHist {
	b.h[len(b.h)-1].Final = true
	b.h[len(b.h)-2].Final = true
	return b
}

func TestListAppendLostAppend(t *testing.T) {
	var b ckHist
	b.txn(0, OK, ckAp(kx, 1), ckAp(ky, 1))
	b.txn(1, OK, ckAp(kx, 2))
	b.txn(1, Info, ckAp(kx, 3)) // unknown: may be missing
	b.txn(2, OK, ckRd(kx, 1, 2), ckRd(ky, 1))
	// Not a final read: it may see an older snapshot.
	b.txn(4, OK, ckRd(kx, 1), ckRd(ky, 1))
	ckClean(t, laDefault(b.h))

	// The final read lacks the acknowledged append 2 to kx.
	b.txn(3, OK, ckRd(kx, 1), ckRd(ky, 1)).final()
	r := laDefault(b.h)
	a := ckExpect(t, r, "lost-append", false)
	if len(r.Anomalies) != 1 || !strings.Contains(a.Explain, "2 by op 3") || len(a.Ops) != 2 || !a.Ops[1].Final {
		t.Fatal(ckDump(r), ckOpIndexes(a.Ops))
	}

	// A final read with every acknowledged append passes.
	var c ckHist
	c.txn(0, OK, ckAp(kx, 1), ckAp(ky, 1))
	c.txn(1, OK, ckAp(kx, 2))
	c.txn(1, Info, ckAp(kx, 3))
	c.txn(3, OK, ckRd(kx, 1, 2), ckRd(ky, 1)).final()
	ckClean(t, laDefault(c.h))
}

// TestListAppendUnreadKey: with final reads in the history, a key with
// acknowledged appends that no final read reads was lost from the final
// state (the final reads read every key the backends list): unread-key,
// failing. Without any final read there is nothing to compare with.
func TestListAppendUnreadKey(t *testing.T) {
	var b ckHist
	b.txn(0, OK, ckAp(kx, 1), ckAp(ky, 1))
	b.txn(1, OK, ckAp(kz, 2))
	b.txn(1, Info, ckAp(kw, 3)) // maybe applied: its key may be missing
	ckClean(t, laDefault(b.h))
	b.txn(3, OK, ckRd(kx, 1), ckRd(ky, 1)).final()
	r := laDefault(b.h)
	a := ckExpect(t, r, "unread-key", false)
	if len(r.Anomalies) != 1 || !strings.Contains(a.Explain, fmt.Sprintf("key %d", kz)) || len(a.Ops) != 1 || a.Ops[0].Process != 1 {
		t.Fatal(ckDump(r), ckOpIndexes(a.Ops))
	}
	b.txn(3, OK, ckRd(kz, 2)).final()
	ckClean(t, laDefault(b.h))
}
