package check

import (
	"strings"
	"testing"
)

// watchHist builds watch histories: increments, watcher events (each an
// operation that completes at once) and final reads.
type watchHist struct{ ckHist }

func (b *watchHist) incr(p, k, v int, typ Type) *watchHist {
	b.inv(p, "incr", CounterValue{K: k, Delta: 1})
	b.done(typ, p, "incr", CounterValue{K: k, Delta: 1, V: v})
	return b
}

func (b *watchHist) event(p int, f string, v WatchValue) *watchHist {
	b.inv(p, f, v)
	b.done(OK, p, f, v)
	return b
}

func (b *watchHist) deliver(p, k, old, new int) *watchHist {
	return b.event(p, "deliver", WatchValue{K: k, Old: old, New: new})
}

func (b *watchHist) gap(p, k int, from, to uint64) *watchHist {
	return b.event(p, "gap", WatchValue{K: k, From: from, To: to})
}

func (b *watchHist) final(k, v int) *watchHist {
	b.inv(99, "read", CounterValue{K: k})
	b.done(OK, 99, "read", CounterValue{K: k, V: v})
	b.h[len(b.h)-1].Final, b.h[len(b.h)-2].Final = true, true
	return b
}

// clean is a run with two watchers of counter 0 (processes 10 and 11):
// both deliver 1, 2, 3 in order, one starting at 0, one at 1; both
// settle.
func watchClean() *watchHist {
	var b watchHist
	b.event(10, "watch-start", WatchValue{K: 0, V: 0})
	b.incr(0, 0, 1, OK)
	b.deliver(10, 0, 0, 1)
	b.event(11, "watch-start", WatchValue{K: 0, V: 1})
	b.incr(1, 0, 2, OK)
	b.deliver(11, 0, 1, 2)
	b.deliver(10, 0, 1, 2)
	b.incr(0, 0, 3, Info) // applied: everyone delivers it
	b.deliver(10, 0, 2, 3)
	b.deliver(11, 0, 2, 3)
	return &b
}

func watchSettled(b *watchHist, last10, last11 int) *watchHist {
	b.event(10, "watch-end", WatchValue{K: 0, V: 3, Last: last10, Delivered: true})
	b.event(11, "watch-end", WatchValue{K: 0, V: 3, Last: last11, Delivered: true})
	return b.final(0, 3)
}

func TestWatchClean(t *testing.T) {
	r := NewWatchChecker().Check(watchSettled(watchClean(), 3, 3).h)
	ckClean(t, r)
	if r.OK != 3 || r.Info != 1 {
		t.Fatalf("counts: %+v", r)
	}
}

func TestWatchSilentHole(t *testing.T) {
	var b watchHist
	b.event(10, "watch-start", WatchValue{K: 0, V: 0})
	for v := 1; v <= 4; v++ {
		b.incr(0, 0, v, OK)
	}
	b.deliver(10, 0, 0, 1)
	b.deliver(10, 0, 1, 4) // 2 and 3 skipped, nothing said
	b.event(10, "watch-end", WatchValue{K: 0, V: 4, Last: 4, Delivered: true})
	b.final(0, 4)
	r := NewWatchChecker().Check(b.h)
	a := ckExpect(t, r, "watch-hole", false)
	if len(r.Anomalies) != 1 || !strings.Contains(a.Explain, "versions 2 to 3") || a.Ops[0].Index != 13 {
		t.Fatal(ckDump(r), ckOpIndexes(a.Ops))
	}
}

func TestWatchGapCoversJump(t *testing.T) {
	var b watchHist
	b.event(10, "watch-start", WatchValue{K: 0, V: 0})
	for v := 1; v <= 4; v++ {
		b.incr(0, 0, v, OK)
	}
	b.deliver(10, 0, 0, 1)
	b.gap(10, 0, 1001, 1004) // told: what came after point 1001 up to 1004
	b.deliver(10, 0, 1, 4)
	b.event(10, "watch-end", WatchValue{K: 0, V: 4, Last: 4, Delivered: true})
	b.final(0, 4)
	r := NewWatchChecker().Check(b.h)
	a := ckExpect(t, r, "announced-gap", true)
	if !a.Allowed || len(r.Anomalies) != 1 || len(a.Ops) != 2 || a.Ops[0].F != "gap" {
		t.Fatal(ckDump(r))
	}
	// A gap notice covers the delivery right after it, not a later one.
	var c watchHist
	c.event(10, "watch-start", WatchValue{K: 0, V: 0})
	for v := 1; v <= 4; v++ {
		c.incr(0, 0, v, OK)
	}
	c.gap(10, 0, 1000, 1001)
	c.deliver(10, 0, 0, 1)
	c.deliver(10, 0, 1, 4)
	c.event(10, "watch-end", WatchValue{K: 0, V: 4, Last: 4, Delivered: true})
	c.final(0, 4)
	ckExpect(t, NewWatchChecker().Check(c.h), "watch-hole", false)
	// A notice that names nothing covers nothing.
	var d watchHist
	d.event(10, "watch-start", WatchValue{K: 0, V: 0})
	d.incr(0, 0, 1, OK).incr(0, 0, 2, OK)
	d.gap(10, 0, 1002, 1002)
	d.deliver(10, 0, 0, 2)
	d.event(10, "watch-end", WatchValue{K: 0, V: 2, Last: 2, Delivered: true})
	d.final(0, 2)
	r = NewWatchChecker().Check(d.h)
	ckExpect(t, r, "watch-inconsistent", false)
	ckExpect(t, r, "watch-hole", false)
}

func TestWatchDuplicate(t *testing.T) {
	b := watchClean()
	b.deliver(11, 0, 3, 3)
	r := NewWatchChecker().Check(watchSettled(b, 3, 3).h)
	a := ckExpect(t, r, "watch-duplicate", false)
	if len(a.Ops) != 2 || a.Ops[0].Index != 19 || a.Ops[1].Index != 21 {
		t.Fatal(ckDump(r), ckOpIndexes(a.Ops))
	}
}

func TestWatchOutOfOrder(t *testing.T) {
	var b watchHist
	b.event(10, "watch-start", WatchValue{K: 0, V: 0})
	b.incr(0, 0, 1, OK).incr(0, 0, 2, OK).incr(0, 0, 3, OK)
	b.deliver(10, 0, 0, 1)
	b.gap(10, 0, 1001, 1003)
	b.deliver(10, 0, 1, 3)
	b.deliver(10, 0, 3, 2) // late
	b.event(10, "watch-end", WatchValue{K: 0, V: 3, Last: 2, Delivered: true})
	b.final(0, 3)
	r := NewWatchChecker().Check(b.h)
	a := ckExpect(t, r, "watch-out-of-order", false)
	if !strings.Contains(a.Explain, "after it had delivered 3") {
		t.Fatal(ckDump(r))
	}
}

func TestWatchUndelivered(t *testing.T) {
	// Watcher 11 settles at 2 although the counter ended at 3.
	r := NewWatchChecker().Check(watchSettled(watchClean().deliver(12, 0, 0, 1), 3, 3).h)
	ckClean(t, r) // 12 never settled (its process was killed): not required
	b := watchClean()
	b.h = b.h[:len(b.h)-2] // 11 never delivers 3
	r = NewWatchChecker().Check(watchSettled(b, 3, 2).h)
	a := ckExpect(t, r, "watch-undelivered", false)
	if !strings.Contains(a.Explain, "process 11") || !strings.Contains(a.Explain, "version 3 committed") {
		t.Fatal(ckDump(r))
	}
	// A watcher that delivered nothing, having started below the end.
	var c watchHist
	c.event(10, "watch-start", WatchValue{K: 0, V: 0})
	c.incr(0, 0, 1, OK)
	c.event(11, "watch-start", WatchValue{K: 0, V: 0})
	c.deliver(11, 0, 0, 1)
	c.event(10, "watch-end", WatchValue{K: 0, V: 1})
	c.event(11, "watch-end", WatchValue{K: 0, V: 1, Last: 1, Delivered: true})
	c.final(0, 1)
	a = ckExpect(t, NewWatchChecker().Check(c.h), "watch-undelivered", false)
	if !strings.Contains(a.Explain, "delivered nothing") {
		t.Fatal(a.Explain)
	}
}

func TestWatchGarbageAndLostUpdate(t *testing.T) {
	var b watchHist
	b.event(10, "watch-start", WatchValue{K: 0, V: 0})
	b.incr(0, 0, 1, OK).incr(1, 0, 1, OK) // both committed 1
	b.deliver(10, 0, 0, 1)
	b.deliver(10, 0, 1, 2) // never committed
	b.event(10, "watch-end", WatchValue{K: 0, V: 1, Last: 2, Delivered: true})
	b.final(0, 1)
	r := NewWatchChecker().Check(b.h)
	ckExpect(t, r, "lost-update", false)
	ckExpect(t, r, "watch-garbage", false)
}

// What could not be checked makes the result UNKNOWN: not valid, not
// failed.
func TestWatchUnchecked(t *testing.T) {
	// No final read.
	b := watchClean()
	b.event(10, "watch-end", WatchValue{K: 0, V: 3, Last: 3, Delivered: true})
	r := NewWatchChecker().Check(b.h)
	if a := ckExpect(t, r, "watch-unchecked", false); !a.Unknown || r.Verdict() != VerdictUnknown {
		t.Fatal(ckDump(r))
	}
	// No watcher settled.
	r = NewWatchChecker().Check(watchClean().final(0, 3).h)
	if a, ok := ckFind(r, "watch-unchecked"); !ok || !a.Unknown || r.Verdict() != VerdictUnknown {
		t.Fatal(ckDump(r))
	}
	// Nothing at all.
	var c watchHist
	c.incr(0, 0, 1, OK).final(0, 1)
	r = NewWatchChecker().Check(c.h)
	if a, ok := ckFind(r, "watch-unchecked"); !ok || !a.Unknown || r.Verdict() != VerdictUnknown {
		t.Fatal(ckDump(r))
	}
}

// TestWatchFirstDeliveryHole: a watcher's first delivery is checked
// against what it started from (watch-start V, at most its true start): a
// watcher that started at 0 and first delivered 2 -> 3 with no gap
// notice skipped 1 and 2 silently (only the jump within a delivery was
// checked before). The start may be recorded after the first delivery
// (the watcher runs as soon as AddWatch began); a first delivery whose
// old value is at or below the start is not a hole, and a gap notice
// before it announces the jump.
func TestWatchFirstDeliveryHole(t *testing.T) {
	run := func(startFirst, gap bool, start, old int) Result {
		var b watchHist
		if startFirst {
			b.event(10, "watch-start", WatchValue{K: 0, V: start})
		}
		for v := 1; v <= 3; v++ {
			b.incr(0, 0, v, OK)
		}
		if gap {
			b.gap(10, 0, 1000, 1002)
		}
		b.deliver(10, 0, old, old+1)
		if !startFirst {
			b.event(10, "watch-start", WatchValue{K: 0, V: start})
		}
		for v := old + 1; v < 3; v++ {
			b.deliver(10, 0, v, v+1)
		}
		b.event(10, "watch-end", WatchValue{K: 0, V: 3, Last: 3, Delivered: true})
		return NewWatchChecker().Check(b.final(0, 3).h)
	}
	for _, startFirst := range []bool{true, false} {
		r := run(startFirst, false, 0, 2)
		a := ckExpect(t, r, "watch-hole", false)
		if len(r.Anomalies) != 1 || !strings.Contains(a.Explain, "versions 1 to 2") || !strings.Contains(a.Explain, "started at most at 0") {
			t.Fatalf("start recorded first %v: %s", startFirst, ckDump(r))
		}
		ckClean(t, run(startFirst, false, 2, 2))
		ckClean(t, run(startFirst, false, 2, 1)) // started at 1, recorded 2 once the watch was on
		a = ckExpect(t, run(startFirst, true, 0, 2), "announced-gap", true)
		if !strings.Contains(a.Explain, "versions 1 to 2") {
			t.Fatalf("start recorded first %v: %s", startFirst, a.Explain)
		}
	}
}
