package backendtest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/faulty"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// testScenarios are the named anomalies that need a fault injector.
func testScenarios(t *testing.T, newDriver NewDriver) {
	t.Run("ZombieLockAfterCrashedCommitter", func(t *testing.T) { testZombieLock(t, newDriver(t)) })
	for _, p := range paths {
		t.Run("DoubleApplyAfterUnknownOutcome/"+p.name, func(t *testing.T) { testDoubleApply(t, newDriver(t), p.opts) })
	}
	t.Run("WatchGapNotice", func(t *testing.T) { testWatchGap(t, open(t, newDriver(t))) })
	t.Run("RecoveryAroundUnknownBackend", func(t *testing.T) { testRecoverUnknown(t, newDriver(t), newDriver(t)) })
	t.Run("OlderWins", func(t *testing.T) { testOlderWins(t, newDriver(t)) })
}

// testOlderWins: a younger transaction holds its intent on x and stalls
// just before its commit point; an older one that wants x does not wait for
// the younger's lease: it aborts the younger and commits. The younger then
// fails its commit point, retries, and commits after it.
func testOlderWins(t *testing.T, raw backend.Driver) {
	w := faulty.Wrap(raw)
	s := open(t, w, stm.WithGeneralPath(), stm.WithLease(time.Hour))
	x := newRef(t, s, uniq("x"), "init")
	z := newRef(t, s, uniq("z"), 0)
	var armed atomic.Bool
	stalled, release := make(chan struct{}), make(chan struct{})
	w.SetHook(func(c faulty.Call) faulty.Fault {
		// Only the first commit point after arming (the younger's) stalls.
		if c.Op == faulty.OpCommitRecord && armed.CompareAndSwap(true, false) {
			close(stalled)
			<-release
		}
		return faulty.Pass
	})
	oStarted := make(chan struct{})
	oDone := make(chan error, 1)
	go func() {
		first := true
		oDone <- s.Dosync(tctx(t), func(tx *txn.Tx) error {
			x.Get(tx)
			if first {
				first = false
				close(oStarted)
				<-stalled // the younger now holds x's intent
			}
			x.Set(tx, "older")
			return nil
		})
	}()
	<-oStarted
	// A commit elsewhere, so the younger's read point is strictly later.
	if err := s.Dosync(tctx(t), func(tx *txn.Tx) error { z.Set(tx, 1); return nil }); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	yDone := make(chan error, 1)
	yRuns := 0
	go func() {
		yDone <- s.Dosync(tctx(t), func(tx *txn.Tx) error {
			yRuns++
			x.Set(tx, "younger")
			return nil
		})
	}()
	if err := recv(t, oDone, "the older transaction's commit while the younger stalls"); err != nil {
		t.Fatalf("older: %v", err)
	}
	close(release)
	if err := recv(t, yDone, "the younger transaction"); err != nil {
		t.Fatalf("younger: %v", err)
	}
	if yRuns < 2 {
		t.Fatalf("the younger ran %d times; it was aborted and must have retried", yRuns)
	}
	h, err := x.History(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if h[0].Value != "younger" {
		t.Fatalf("newest x = %q, want the younger's retry after the older", h[0].Value)
	}
}

// testRecoverUnknown: a dead process leaves two pending records, one of a
// transaction that spanned another backend. A process that does not know
// that backend opens fine, recovers the other record, and leaves the first;
// a process that knows both (stm.WithBackends) finishes it.
func testRecoverUnknown(t *testing.T, rawA, rawB backend.Driver) {
	wall := clock.NewFake(time.Now())
	opts := []stm.Option{stm.WithWallClock(wall), stm.WithLease(lease), stm.WithGeneralPath()}
	wA, wB := faulty.Wrap(rawA), faulty.Wrap(rawB)
	p1 := open(t, wA, opts...)
	an, bn, cn := uniq("a"), uniq("b"), uniq("c")
	a := newRef(t, p1, an, 1)
	b := newRef(t, p1, bn, 1, refs.On(wB))
	c := newRef(t, p1, cn, 1)
	die := func(c faulty.Call) faulty.Fault {
		if c.Op == faulty.OpLock {
			return faulty.CrashAfter
		}
		return faulty.Pass
	}
	for _, f := range []func(tx *txn.Tx){
		func(tx *txn.Tx) { a.Set(tx, 2); b.Set(tx, 2) }, // spans A and B
		func(tx *txn.Tx) { c.Set(tx, 2) },               // A only
	} {
		wA.SetHook(die)
		wB.SetHook(die)
		_ = p1.Dosync(tctx(t), func(tx *txn.Tx) error { f(tx); return nil })
		wA.SetHook(nil) // a new incarnation of the dead process's connections
		wB.SetHook(nil)
	}
	wall.Advance(lease + time.Second)

	p2, err := stm.Open(tctx(t), rawA, opts...)
	if err != nil {
		t.Fatalf("Open with a record naming an unknown backend: %v", err)
	}
	defer p2.Close()
	n, err := p2.Recover(tctx(t))
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if vr, _ := rawA.Versions(tctx(t), cn); vr.Intent != nil {
		t.Fatalf("the A-only record was not recovered (n=%d): intent %+v", n, vr.Intent)
	}
	if vr, _ := rawB.Versions(tctx(t), bn); vr.Intent == nil {
		t.Fatal("an intent on the unknown backend disappeared")
	}
	p3 := open(t, rawA, append(opts, stm.WithBackends(rawB))...)
	for _, x := range []struct {
		d    backend.Driver
		name string
	}{{rawA, an}, {rawB, bn}} {
		if vr, _ := x.d.Versions(tctx(t), x.name); vr.Intent != nil || string(vr.Versions[0].Value) != string(mustEncode(t, 1)) {
			t.Fatalf("after recovery by a process that knows both backends, %s: %+v", x.name, vr)
		}
	}
	b3 := newRef(t, p3, bn, 0, refs.On(rawB))
	if v := deref(t, b3); v != 1 {
		t.Fatalf("b = %d, want 1 (the dead transaction rolled back)", v)
	}
}

func mustEncode(t *testing.T, v any) []byte {
	t.Helper()
	data, err := refs.Msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// testZombieLock: a committer dies holding intents (after its lock step).
// Until its lease runs out a younger writer yields to it; once the lease is
// over the writer aborts the dead transaction, rolls it back and commits
// (I4). Readers meanwhile never wait.
func testZombieLock(t *testing.T, raw backend.Driver) {
	w := faulty.Wrap(raw)
	wall := clock.NewFake(time.Now())
	opts := []stm.Option{stm.WithWallClock(wall), stm.WithLease(lease), stm.WithGeneralPath(), stm.WithMaxRetries(5), stm.WithBackoff(time.Microsecond, time.Millisecond)}
	p1 := open(t, w, opts...)
	name := uniq("x")
	x1 := newRef(t, p1, name, 1)
	w.SetHook(func(c faulty.Call) faulty.Fault {
		if c.Op == faulty.OpLock {
			return faulty.CrashAfter // intents taken, then the process dies
		}
		return faulty.Pass
	})
	if err := p1.Dosync(tctx(t), func(tx *txn.Tx) error { x1.Set(tx, 2); return nil }); err == nil {
		t.Fatal("the crashed committer's Dosync succeeded")
	}
	p2 := open(t, raw, opts...)
	x2 := newRef(t, p2, name, 0)
	// A commit elsewhere moves the clock, so that P2 is strictly younger
	// than the dead transaction (priorities are read points).
	y := newRef(t, p2, uniq("y"), 0)
	if err := p2.Dosync(tctx(t), func(tx *txn.Tx) error { y.Set(tx, 1); return nil }); err != nil {
		t.Fatal(err)
	}
	if v := deref(t, x2); v != 1 {
		t.Fatalf("reader saw %d past a dead writer's intent, want 1", v)
	}
	write := func() error {
		return p2.Dosync(tctx(t), func(tx *txn.Tx) error { x2.Set(tx, 3); return nil })
	}
	if err := write(); !errors.Is(err, stm.ErrRetryLimit) {
		t.Fatalf("writing within the dead committer's lease: %v, want ErrRetryLimit (it still holds the lock)", err)
	}
	wall.Advance(lease + time.Millisecond)
	if err := write(); err != nil {
		t.Fatalf("zombie lock: writing after the lease ran out: %v", err)
	}
	if v := deref(t, x2); v != 3 {
		t.Fatalf("x = %d, want 3", v)
	}
}

// testDoubleApply: the commit step is applied but reported failed (a
// timeout). The engine must learn that it committed and return success
// without running the transaction again (I7).
func testDoubleApply(t *testing.T, raw backend.Driver, opts []stm.Option) {
	w := faulty.Wrap(raw)
	s := open(t, w, opts...)
	ctr := newRef(t, s, uniq("ctr"), 0)
	var once sync.Once
	w.SetHook(func(c faulty.Call) faulty.Fault {
		f := faulty.Pass
		if c.Op == faulty.OpCommitOnePhase || c.Op == faulty.OpCommitRecord {
			once.Do(func() { f = faulty.FailAfter })
		}
		return f
	})
	runs := 0
	err := s.Dosync(tctx(t), func(tx *txn.Tx) error {
		runs++
		ctr.Alter(tx, func(v int) int { return v + 1 })
		return nil
	})
	if err != nil {
		t.Fatalf("Dosync after an applied-but-failed commit: %v", err)
	}
	if runs != 1 {
		t.Fatalf("the committed transaction ran %d times", runs)
	}
	if v := deref(t, ctr); v != 1 {
		t.Fatalf("double apply: counter = %d after one increment", v)
	}
	if s.Stats().Unknown < 1 {
		t.Fatal("the fault was not met (the test did not test anything)")
	}
}

// testWatchGap: a watcher whose callback is stuck while thousands of
// changes commit (history keeps only the newest) either still gets every
// change, in order, or is told of each gap before the change after it: it
// never loses one silently.
func testWatchGap(t *testing.T, s *stm.STM) {
	ctx := tctx(t)
	r := newRef(t, s, uniq("x"), 0) // MinHistory 0: only the newest version kept
	const last = 5000
	release := make(chan struct{})
	type call struct{ old, new int }
	calls := make(chan call, last+10)
	gaps := make(chan clock.Point, last+10)
	r.AddWatch("slow", func(_ string, _ *refs.Ref[int], old, new int) {
		calls <- call{old, new}
		if new == 1 {
			<-release // stuck while the rest commit
		}
	}, refs.OnGap(func(_ string, _, to clock.Point) { gaps <- to }))
	defer r.RemoveWatch("slow")
	for v := 1; v <= last; v++ {
		if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, v); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	prev := 0
	jumps := 0
	for prev != last {
		c := recv(t, calls, fmt.Sprintf("the watch call after %d", prev))
		if c.old != prev || c.new <= prev {
			t.Fatalf("watch call %d -> %d after %d: out of order", c.old, c.new, prev)
		}
		if c.new != prev+1 {
			jumps++
		}
		prev = c.new
	}
	if n := len(gaps); n < jumps {
		t.Fatalf("%d jumps over lost changes but only %d gap notices: a silent loss", jumps, n)
	}
	t.Logf("%d changes: %d jumps, %d gap notices", last, jumps, len(gaps))
}
