package check

import (
	"strings"
	"testing"
)

// lockHist builds lock histories by hand on a ckHist.
type lockHist struct{ ckHist }

func (b *lockHist) acq(p int, typ Type, k int, h string, tok uint64) *lockHist {
	b.inv(p, "acquire", LockValue{K: k, Holding: h})
	b.done(typ, p, "acquire", LockValue{K: k, Holding: h, Token: tok})
	return b
}

// acqInv and acqDone split an acquire, for concurrency.
func (b *lockHist) acqInv(p, k int, h string) *lockHist {
	b.inv(p, "acquire", LockValue{K: k, Holding: h})
	return b
}

func (b *lockHist) acqDone(p int, typ Type, k int, h string, tok uint64) *lockHist {
	b.done(typ, p, "acquire", LockValue{K: k, Holding: h, Token: tok})
	return b
}

// write records a fenced write; heldAt < 0 means "certified at its
// invoke".
func (b *lockHist) write(p int, typ Type, k int, h string, tok, seen uint64, heldAt int64) *lockHist {
	b.inv(p, "write", LockValue{K: k, Holding: h, Token: tok})
	if heldAt < 0 {
		heldAt = b.t
	}
	b.done(typ, p, "write", LockValue{K: k, Holding: h, Token: tok, Seen: seen, HeldAt: heldAt})
	return b
}

func (b *lockHist) rel(p int, typ Type, k int, h string, tok uint64, lost bool, heldAt int64) *lockHist {
	b.inv(p, "release", LockValue{K: k, Holding: h, Token: tok})
	if heldAt < 0 {
		heldAt = b.t
	}
	b.done(typ, p, "release", LockValue{K: k, Holding: h, Token: tok, Lost: lost, HeldAt: heldAt})
	return b
}

func (b *lockHist) read(p int, k int, seen uint64) *lockHist {
	b.inv(p, "read", LockValue{K: k})
	b.done(OK, p, "read", LockValue{K: k, Seen: seen})
	return b
}

func checkLock(h []Op) (mutex, fencing Result) {
	return NewMutexChecker().Check(h), NewFencingChecker().Check(h)
}

func wantLockValid(t *testing.T, h []Op) {
	t.Helper()
	m, f := checkLock(h)
	if !m.Valid || len(m.Anomalies) > 0 || !f.Valid || len(f.Anomalies) > 0 {
		t.Fatalf("want valid:\n%s\n%s", ckDump(m), ckDump(f))
	}
}

func wantLockAnomaly(t *testing.T, r Result, name string, witnesses ...int) Anomaly {
	t.Helper()
	a, ok := ckFind(r, name)
	if r.Valid || !ok {
		t.Fatalf("want %s:\n%s", name, ckDump(r))
	}
	if len(witnesses) > 0 {
		var got []int
		for _, o := range a.Ops {
			got = append(got, o.Index)
		}
		for _, w := range witnesses {
			found := false
			for _, g := range got {
				found = found || g == w
			}
			if !found {
				t.Fatalf("%s witness %v lacks op %d: %s", name, got, w, a.Explain)
			}
		}
	}
	return a
}

func TestLockCheckersClean(t *testing.T) {
	var b lockHist
	b.acq(1, OK, 0, "a.1", 1).write(1, OK, 0, "a.1", 1, 0, -1).rel(1, OK, 0, "a.1", 1, false, -1)
	b.acq(2, Fail, 0, "b.1", 0)
	b.acq(2, OK, 0, "b.2", 2).write(2, OK, 0, "b.2", 2, 1, -1).rel(2, OK, 0, "b.2", 2, false, -1)
	b.acq(1, OK, 1, "a.2", 1).rel(1, OK, 1, "a.2", 1, false, -1) // another lock
	b.read(3, 0, 2).read(3, 1, 0)
	wantLockValid(t, b.h)
}

// A holder whose lease ran out (it certified HeldAt, then saw Lost) and a
// second holder that acquired the lock after HeldAt, before the first one
// noticed: no violation. The first holder's stale write is refused.
func TestLockCheckersLostLeaseThenAcquire(t *testing.T) {
	var b lockHist
	b.acq(1, OK, 0, "a.1", 1)
	b.write(1, OK, 0, "a.1", 1, 0, -1)
	heldAt := b.t - 10 // the write's invoke
	b.acq(2, OK, 0, "b.1", 2)
	b.write(2, OK, 0, "b.1", 2, 1, -1)
	b.write(1, Fail, 0, "a.1", 1, 2, heldAt) // stale, refused
	b.rel(1, OK, 0, "a.1", 1, true, heldAt)
	b.rel(2, OK, 0, "b.1", 2, false, -1)
	b.read(3, 0, 2)
	wantLockValid(t, b.h)

	// The release of a lost lease whose acquire is concurrent with the
	// next holder's.
	var c lockHist
	c.acqInv(1, 0, "a.1").acqInv(2, 0, "b.1").acqDone(1, OK, 0, "a.1", 1).acqDone(2, OK, 0, "b.1", 2)
	c.rel(1, OK, 0, "a.1", 1, true, 1) // never certified after its acquire
	c.rel(2, OK, 0, "b.1", 2, false, -1)
	wantLockValid(t, c.h)
}

// A process killed while it held the lock (no release in the history) and
// an info release: the next acquires are no violations; an acquire whose
// outcome is unknown holds nothing.
func TestLockCheckersKilledAndUnknown(t *testing.T) {
	var b lockHist
	b.acq(1, OK, 0, "a.1", 1).write(1, OK, 0, "a.1", 1, 0, -1)
	b.inv(1, "write", LockValue{K: 0, Holding: "a.1", Token: 1}) // killed mid-write
	b.acq(2, OK, 0, "b.1", 2).rel(2, Info, 0, "b.1", 2, false, -1)
	b.acqInv(3, 0, "c.1") // never completes
	b.acq(4, OK, 0, "d.1", 3).rel(4, OK, 0, "d.1", 3, false, -1)
	wantLockValid(t, b.h)
}

func TestLockCheckersDoubleHolder(t *testing.T) {
	var b lockHist
	b.acq(1, OK, 0, "a.1", 1) // ops 0, 1
	b.acq(2, OK, 0, "b.1", 2) // ops 2, 3: while a.1 certainly holds
	b.write(1, OK, 0, "a.1", 1, 0, -1)
	b.rel(1, OK, 0, "a.1", 1, false, -1)
	b.rel(2, OK, 0, "b.1", 2, false, -1)
	m, f := checkLock(b.h)
	a := wantLockAnomaly(t, m, "double-holder", 1, 3)
	if !strings.Contains(a.Explain, "a.1") || !strings.Contains(a.Explain, "b.1") {
		t.Fatalf("explanation names neither holding: %s", a.Explain)
	}
	if !f.Valid {
		t.Fatalf("fencing: %s", ckDump(f))
	}

	// A lost lease whose holder certified HeldAt after the other's
	// acquire completed: still a double holder.
	var c lockHist
	c.acq(1, OK, 0, "a.1", 1).acq(2, OK, 0, "b.1", 2)
	c.rel(1, OK, 0, "a.1", 1, true, -1) // HeldAt: its invoke, after b.1's acquire
	c.rel(2, OK, 0, "b.1", 2, false, -1)
	m, _ = checkLock(c.h)
	wantLockAnomaly(t, m, "double-holder", 1, 3)

	// A killed holder that certified after the other's acquire.
	var d lockHist
	d.acq(1, OK, 0, "a.1", 1).acq(2, OK, 0, "b.1", 2).rel(2, OK, 0, "b.1", 2, false, -1)
	d.write(1, Info, 0, "a.1", 1, 0, -1)
	m, _ = checkLock(d.h)
	wantLockAnomaly(t, m, "double-holder", 1, 3)
}

// An acquire that completed while another holding's certain interval is
// not known to cover it, but that no order explains: a release that
// succeeded after another holder had acquired.
func TestLockCheckersNonlinearizable(t *testing.T) {
	var b lockHist
	b.acq(1, OK, 0, "a.1", 1)
	b.acq(2, OK, 0, "b.1", 2)
	b.rel(2, OK, 0, "b.1", 2, true, 1) // b.1 never certified
	b.rel(1, OK, 0, "a.1", 1, false, -1)
	m, _ := checkLock(b.h)
	wantLockAnomaly(t, m, "nonlinearizable")
}

func TestLockCheckersTokenOrder(t *testing.T) {
	var b lockHist
	b.acq(1, OK, 0, "a.1", 5).rel(1, OK, 0, "a.1", 5, false, -1)
	b.acq(2, OK, 0, "b.1", 3).rel(2, OK, 0, "b.1", 3, false, -1) // ops 4..7
	b.acq(1, OK, 1, "a.2", 7).rel(1, OK, 1, "a.2", 7, false, -1)
	m, f := checkLock(b.h)
	if !m.Valid {
		t.Fatalf("mutex: %s", ckDump(m))
	}
	wantLockAnomaly(t, f, "token-order", 1, 5)

	// Two holdings with one token, even concurrent ones.
	var c lockHist
	c.acqInv(1, 0, "a.1").acqInv(2, 0, "b.1").acqDone(1, OK, 0, "a.1", 4).acqDone(2, OK, 0, "b.1", 4)
	_, f = checkLock(c.h)
	wantLockAnomaly(t, f, "token-order", 2, 3)
}

func TestLockCheckersStaleWriteAccepted(t *testing.T) {
	var b lockHist
	b.acq(1, OK, 0, "a.1", 1)
	b.acq(2, OK, 0, "b.1", 2) // a.1's lease was lost (not certified since)
	b.write(2, OK, 0, "b.1", 2, 0, -1)
	b.write(1, OK, 0, "a.1", 1, 2, 1) // accepted although the fence had 2
	b.rel(1, OK, 0, "a.1", 1, true, 1)
	b.rel(2, OK, 0, "b.1", 2, false, -1)
	b.read(3, 0, 1)
	m, f := checkLock(b.h)
	if !m.Valid {
		t.Fatalf("mutex: %s", ckDump(m))
	}
	wantLockAnomaly(t, f, "stale-write-accepted", 5, 7)
	wantLockAnomaly(t, f, "fence-regressed", 5)
}
