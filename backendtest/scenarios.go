package backendtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/faulty"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/engine"
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
	// The older commits on the fast path, and meets the younger's
	// general-path intent in its one-phase commit.
	t.Run("OlderWins/OnePhase", func(t *testing.T) { testOlderWins(t, newDriver(t), stm.WithSweepInterval(0)) })
	t.Run("StaleCommuteRecomputedOnce", func(t *testing.T) { testCommuteStale(t, newDriver(t), 1) })
	t.Run("StaleCommuteEscalates", func(t *testing.T) { testCommuteStale(t, newDriver(t), stm.DefaultCommuteRounds) })
	t.Run("AcknowledgedCommitLostToStaleMissingRecord", func(t *testing.T) { testStaleMissingRecord(t, newDriver) })
	t.Run("ReaderFinishesFinalIntentsAtOnce", func(t *testing.T) { testReaderFinishesIntents(t, newDriver) })
	t.Run("TombstoneOfFinishedWriterIsNoAbort", func(t *testing.T) {
		if v := tombstoneOfFinishedWriter(t, newDriver(t), engine.Faults{}); v != 1 {
			t.Fatalf("the reader saw %d, want 1: it took a tombstone for the committed writer's abort and read under its intent", v)
		}
		t.Run("SeededBugIsCaught", func(t *testing.T) {
			if v := tombstoneOfFinishedWriter(t, newDriver(t), engine.Faults{TrustAbortedRecord: true}); v != 0 {
				t.Fatalf("with TrustAbortedRecord the reader saw %d, want 0 (the construction no longer reaches the bug)", v)
			}
		})
	})
	t.Run("PrefetchedReadFaultGrowsHistoryOnce", func(t *testing.T) { testPrefetchFaultOnce(t, newDriver(t)) })
	t.Run("PriorityKeptFromReadPointZero", func(t *testing.T) { testPriorityKept(t, newDriver(t)) })
	t.Run("ReadCalls", func(t *testing.T) { testReadCalls(t, newDriver(t)) })
	t.Run("ReadCalls/PrefetchTwoBackends", func(t *testing.T) { testPrefetchMixedCalls(t, newDriver(t), newDriver(t)) })
	t.Run("StalledStepKeepsDeadline", func(t *testing.T) { testStalledStep(t, newDriver) })
	t.Run("OrphanEntryOfDelayedAdd", func(t *testing.T) { testOrphanOfDelayedAdd(t, newDriver) })
	t.Run("RejoinOutlivesRetriedLeave", func(t *testing.T) { testRejoinDuringLeaveRetry(t, newDriver) })
	t.Run("DelayedGiveBackKeepsRetakenIntents", func(t *testing.T) {
		if x, y, ok := testDelayedGiveBack(t, newDriver(t), newDriver(t), engine.Faults{}); !ok || x != 1 || y != 1 {
			t.Fatalf("after a commit of x = y = 1 whose give-back arrived again late: x = %d, y = %d (a give-back seen: %v)", x, y, ok)
		}
		t.Run("SeededBugIsCaught", func(t *testing.T) {
			if x, y, ok := testDelayedGiveBack(t, newDriver(t), newDriver(t), engine.Faults{GiveBackEveryRound: true}); !ok || y != 0 {
				t.Fatalf("with GiveBackEveryRound: x = %d, y = %d (a give-back seen: %v); want y = 0 (the construction no longer reaches the bug)", x, y, ok)
			}
		})
	})
}

// testOlderWins: a younger transaction holds its intent on x and stalls
// just before its commit point; an older one that wants x does not wait for
// the younger's lease: it aborts the younger and commits. The younger then
// fails its commit point, retries, and commits after it.
func testOlderWins(t *testing.T, raw backend.Driver, olderOpts ...stm.Option) {
	w := faulty.Wrap(raw)
	ys := open(t, w, engine.WithGeneralPath(), stm.WithLease(time.Hour))
	s := ys
	if len(olderOpts) > 0 {
		s = open(t, w, append(olderOpts, stm.WithLease(time.Hour))...)
	}
	x := newRef(t, s, uniq("x"), "init")
	yx := newRef(t, ys, x.Name(), "")
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
		yDone <- ys.Dosync(tctx(t), func(tx *txn.Tx) error {
			yRuns++
			yx.Set(tx, "younger")
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
	opts := []stm.Option{engine.WithWallClock(wall), stm.WithLease(lease), engine.WithGeneralPath()}
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
// Until its lease runs out a younger writer waits for it (and commits
// nothing); once the lease is over the waiting writer aborts the dead
// transaction, rolls it back and commits (I4). Readers meanwhile never
// wait.
func testZombieLock(t *testing.T, raw backend.Driver) {
	w := faulty.Wrap(raw)
	wall := clock.NewFake(time.Now())
	opts := []stm.Option{engine.WithWallClock(wall), stm.WithLease(lease), engine.WithGeneralPath(), stm.WithMaxRetries(5), stm.WithBackoff(time.Microsecond, time.Millisecond)}
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
	write := func(ctx context.Context) error {
		return p2.Dosync(ctx, func(tx *txn.Tx) error { x2.Set(tx, 3); return nil })
	}
	// The fake wall clock stands still: within the lease the writer waits
	// until its own deadline ends the wait.
	short, cancel := context.WithTimeout(tctx(t), 200*time.Millisecond)
	err := write(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("writing within the dead committer's lease: %v, want it to wait for the lock (context.DeadlineExceeded)", err)
	}
	if v := deref(t, x2); v != 1 {
		t.Fatalf("x = %d after a write that waited for the dead writer's lock, want 1", v)
	}
	done := make(chan error, 1)
	go func() { done <- write(tctx(t)) }()
	wall.Advance(lease + time.Millisecond)
	if err := recv(t, done, "a writer waiting for a dead transaction's lease to end"); err != nil {
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

// testStaleMissingRecord: a lookup of records served from a stale copy (a
// ZooKeeper follower without sync) reports a live pending record as
// missing. Whoever meets the record's intent then (a reader, a writer, a
// history read) must not believe it and roll the intent back: the holder
// would still commit, its Dosync would return nil, and its write would
// never appear (an acknowledged commit lost). The meeter confirms with a
// linearizable AbortRecord first, which aborts the holder instead: it
// retries and its write lands. The same run with the bug reintroduced
// (engine.Faults.TrustMissingRecord) must lose the write, which shows the
// construction reaches it.
func testStaleMissingRecord(t *testing.T, newDriver NewDriver) {
	meeters := []struct {
		name string
		meet func(ctx context.Context, s *stm.STM, x *refs.Ref[string]) error
	}{
		{"Reader", func(ctx context.Context, s *stm.STM, x *refs.Ref[string]) error {
			_, err := x.Deref(ctx)
			return err
		}},
		{"Writer", func(ctx context.Context, s *stm.STM, x *refs.Ref[string]) error {
			return s.Dosync(ctx, func(tx *txn.Tx) error { x.Set(tx, "other"); return nil })
		}},
		{"History", func(ctx context.Context, s *stm.STM, x *refs.Ref[string]) error {
			_, err := x.History(ctx)
			return err
		}},
	}
	for _, m := range meeters {
		t.Run(m.name, func(t *testing.T) {
			if got := acknowledgedWrite(t, newDriver(t), m.meet, engine.Faults{}); got != "holder" {
				t.Fatalf("the holder's Dosync returned nil, yet x = %q, want %q: its commit was lost to a stale missing record", got, "holder")
			}
		})
	}
	t.Run("SeededBugIsCaught", func(t *testing.T) {
		if got := acknowledgedWrite(t, newDriver(t), meeters[0].meet, engine.Faults{TrustMissingRecord: true}); got == "holder" {
			t.Fatalf("with TrustMissingRecord x = %q, want the holder's write lost: the construction no longer reaches the bug", got)
		}
	})
}

// acknowledgedWrite runs a holder that sets x to "holder" on the general
// path and, while it holds x's intent (before its commit point), a meeter
// whose record lookups are stale. It returns x once the holder's Dosync
// succeeded, and what the meeter wrote is left out of it: a meeter that
// writes does so before the holder retries, so the holder's value is the
// newest when all went well.
func acknowledgedWrite(t *testing.T, raw backend.Driver, meet func(context.Context, *stm.STM, *refs.Ref[string]) error, faults engine.Faults) string {
	t.Helper()
	w := faulty.Wrap(raw)
	s := open(t, w, engine.WithGeneralPath(), stm.WithLease(time.Hour), engine.WithFaults(faults))
	x := newRef(t, s, uniq("x"), "init")
	var holding, stale atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	w.SetHook(func(c faulty.Call) faulty.Fault {
		switch {
		case c.Op == faulty.OpCommitRecord && holding.CompareAndSwap(true, false):
			close(held) // the holder's intent is on x, its record pending
			<-release
		case c.Op == faulty.OpRecords && stale.Load():
			return faulty.Stale
		}
		return faulty.Pass
	})
	holding.Store(true)
	done := make(chan error, 1)
	go func() { done <- s.Dosync(tctx(t), func(tx *txn.Tx) error { x.Set(tx, "holder"); return nil }) }()
	<-held
	stale.Store(true)
	merr := make(chan error, 1)
	go func() { merr <- meet(tctx(t), s, x) }()
	// A meeter that waits for the holder (a writer, once it is sure the
	// holder is pending) ends after the holder does; others end first.
	select {
	case err := <-merr:
		stale.Store(false)
		close(release)
		if err != nil {
			t.Fatalf("meeter: %v", err)
		}
	case err := <-done:
		t.Fatalf("the holder finished before it was released: %v", err)
	case <-time.After(wait):
		stale.Store(false)
		close(release)
		if err := recv(t, merr, "the meeter"); err != nil {
			t.Fatalf("meeter: %v", err)
		}
	}
	if err := recv(t, done, "the holder's Dosync"); err != nil {
		t.Fatalf("holder: %v", err)
	}
	w.SetHook(nil)
	return deref(t, x)
}

// testReaderFinishesIntents: a reader that meets the intent of a
// transaction whose record is final rolls it forward (committed) or back
// (aborted) at once, without waiting for the holder's lease: the record
// already says what the intent becomes, and the next reader is spared the
// lookup. The holder here dies right after its record became final, with
// an hour's lease left.
func testReaderFinishesIntents(t *testing.T, newDriver NewDriver) {
	for _, final := range []string{"committed", "aborted"} {
		t.Run(final, func(t *testing.T) {
			raw := newDriver(t)
			w := faulty.Wrap(raw)
			opts := []stm.Option{engine.WithGeneralPath(), stm.WithLease(time.Hour), engine.WithWallClock(fakeClock())}
			p1 := open(t, w, opts...)
			name := uniq("x")
			x1 := newRef(t, p1, name, 1)
			die := faulty.OpCommitRecord // after it the record is committed
			if final == "aborted" {
				die = faulty.OpLock // after it the intent is on x, the record pending
			}
			w.SetHook(func(c faulty.Call) faulty.Fault {
				if c.Op == die {
					return faulty.CrashAfter
				}
				return faulty.Pass
			})
			if err := p1.Dosync(tctx(t), func(tx *txn.Tx) error { x1.Set(tx, 2); return nil }); err == nil {
				t.Fatal("the dying committer's Dosync succeeded")
			}
			want := 2
			if final == "aborted" {
				// Another aborts the dead transaction's record.
				recs, err := raw.ListRecords(tctx(t))
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					if r.Status == backend.Pending {
						if _, err := raw.AbortRecord(tctx(t), r.ID); err != nil {
							t.Fatal(err)
						}
					}
				}
				want = 1
			}
			p2 := open(t, raw, opts...)
			x2 := newRef(t, p2, name, 0)
			vr, err := raw.Versions(tctx(t), name)
			if err != nil || vr.Intent == nil {
				t.Fatalf("before the read: %+v, %v; want the dead transaction's intent on x", vr, err)
			}
			if v := deref(t, x2); v != want {
				t.Fatalf("reader saw %d, want %d", v, want)
			}
			if h := p2.Stats().Helped; h < 1 {
				t.Fatalf("the reader finished the intent, but Stats.Helped = %d", h)
			}
			vr, err = raw.Versions(tctx(t), name)
			if err != nil {
				t.Fatal(err)
			}
			if vr.Intent != nil {
				t.Fatalf("the reader left the %s transaction's intent on x: %+v", final, vr.Intent)
			}
			if got := mustDecode[int](t, vr.Versions[0].Value); got != want {
				t.Fatalf("newest version of x = %d, want %d", got, want)
			}
		})
	}
}

// testPrefetchFaultOnce: a read ahead of the function (refs.Prefetch) that
// faults grows the ref's kept history by one, as any read fault does, not
// by two (a review found the fault was then read again by Get, which made
// the driver grow the history a second time).
func testPrefetchFaultOnce(t *testing.T, raw backend.Driver) {
	s := open(t, raw)
	x := newRef(t, s, uniq("x"), 0)
	y := newRef(t, s, uniq("y"), 0)
	attempts := 0
	err := s.Dosync(tctx(t), func(tx *txn.Tx) error {
		attempts++
		y.Get(tx) // the read point
		if attempts == 1 {
			// x gets a version after our read point; with no older
			// version kept, a read of x at it faults.
			if err := s.Dosync(context.Background(), func(tx2 *txn.Tx) error { x.Set(tx2, 1); return nil }); err != nil {
				return err
			}
		}
		refs.Prefetch(tx, x)
		x.Get(tx)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if attempts != 2 {
		t.Fatalf("%d attempts, want 2 (one read fault)", attempts)
	}
	vr, err := raw.Versions(tctx(t), x.Name())
	if err != nil {
		t.Fatal(err)
	}
	if vr.Keep != 1 {
		t.Fatalf("after one read fault x keeps %d older versions, want 1", vr.Keep)
	}
}

// testPriorityKept: a Dosync's priority is the read point of its first
// attempt, kept by every retry, also when that point is 0 (a fresh
// coordinator), which once counted as "not set yet" and was replaced by
// the retry's newer point.
func testPriorityKept(t *testing.T, raw backend.Driver) {
	w := faulty.Wrap(raw)
	s := open(t, w, engine.WithGeneralPath())
	x := newRef(t, s, uniq("x"), 0)
	var mu sync.Mutex
	prio := map[string]clock.Point{} // record id -> priority, seen at its commit point
	w.SetHook(func(c faulty.Call) faulty.Fault {
		if c.Op == faulty.OpCommitRecord {
			recs, err := raw.ListRecords(context.Background())
			if err == nil {
				mu.Lock()
				for _, r := range recs {
					if r.Status == backend.Pending {
						prio[r.ID] = r.Priority
					}
				}
				mu.Unlock()
			}
		}
		return faulty.Pass
	})
	defer w.SetHook(nil)
	var ids []string
	var first clock.Point
	err := s.Dosync(tctx(t), func(tx *txn.Tx) error {
		ids = append(ids, tx.ID())
		v := x.Get(tx)
		if len(ids) == 1 {
			first = tx.ReadPoint()
			if err := s.Dosync(context.Background(), func(tx2 *txn.Tx) error { x.Set(tx2, 1); return nil }); err != nil {
				return err
			}
		}
		x.Set(tx, v+10)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 {
		t.Fatalf("%d attempts, want 2", len(ids))
	}
	mu.Lock()
	got, ok := prio[ids[1]]
	mu.Unlock()
	if !ok || got != first {
		t.Fatalf("the retry's record has priority %d (seen: %v), want the first attempt's read point %d", got, ok, first)
	}
}

// mustDecode decodes msgpack data as a T.
func mustDecode[T any](t *testing.T, data []byte) T {
	t.Helper()
	var v T
	if err := refs.Msgpack.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// testCommuteStale: another process commits the counter right before each
// of the first rounds one-phase commits of a commute, so each finds its
// base stale. The commute is computed again from the newest version each
// time, never running the function again (Recomputes); after
// stm.DefaultCommuteRounds stale rounds in a row the commit takes the
// counter with an intent instead (the general path: Escalated), which
// holds the others off. No increment is lost.
func testCommuteStale(t *testing.T, raw backend.Driver, rounds int) {
	w := faulty.Wrap(raw)
	s := open(t, w)
	ctr := newRef(t, s, uniq("ctr"), 0)
	other := open(t, raw)
	octr := newRef(t, other, ctr.Name(), 0)
	var sends atomic.Int64
	w.SetHook(func(c faulty.Call) faulty.Fault {
		if c.Op == faulty.OpCommitOnePhase && sends.Add(1) <= int64(rounds) {
			if err := other.Dosync(context.Background(), func(tx *txn.Tx) error { octr.Alter(tx, func(v int) int { return v + 100 }); return nil }); err != nil {
				t.Error(err)
			}
		}
		return faulty.Pass
	})
	defer w.SetHook(nil)
	before := s.Stats()
	runs := 0
	if err := s.Dosync(tctx(t), func(tx *txn.Tx) error {
		runs++
		ctr.Commute(tx, func(v int) int { return v + 1 })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	escalated := int64(0)
	if rounds >= stm.DefaultCommuteRounds {
		escalated = 1
	}
	if runs != 1 || st.Recomputes-before.Recomputes != int64(rounds) || st.Escalated-before.Escalated != escalated {
		t.Fatalf("%d stale rounds: the function ran %d times, %d recomputes, %d escalations; want 1, %d, %d",
			rounds, runs, st.Recomputes-before.Recomputes, st.Escalated-before.Escalated, rounds, escalated)
	}
	if v := deref(t, ctr); v != 100*rounds+1 {
		t.Fatalf("counter = %d, want %d", v, 100*rounds+1)
	}
}

// testReadCalls counts the read calls a transaction makes on the
// coordinator: the read point comes with the first read (one call), a
// refs.Prefetch of three refs is one call and their Gets none, and a
// retried attempt reads what the previous one read in one call, with its
// read point, and its Gets none. (The counts are the round trips of a
// server backend: docs/design.md, "Scripts and round trips".)
func testReadCalls(t *testing.T, raw backend.Driver) {
	w := faulty.Wrap(raw)
	s := open(t, w)
	x, y, z := newRef(t, s, uniq("x"), 0), newRef(t, s, uniq("y"), 0), newRef(t, s, uniq("z"), 0)
	var reads atomic.Int64
	w.SetHook(func(c faulty.Call) faulty.Fault {
		if c.Op == faulty.OpRead {
			reads.Add(1)
		}
		return faulty.Pass
	})
	defer w.SetHook(nil)
	count := func(what string, want int64, fn func(tx *txn.Tx) error) {
		t.Helper()
		reads.Store(0)
		if err := s.Dosync(tctx(t), fn); err != nil {
			t.Fatal(err)
		}
		if got := reads.Load(); got != want {
			t.Errorf("%s: %d read calls, want %d", what, got, want)
		}
	}
	count("two Gets", 2, func(tx *txn.Tx) error { x.Get(tx); y.Get(tx); return nil })
	count("a Prefetch of three refs, then their Gets", 1, func(tx *txn.Tx) error {
		refs.Prefetch(tx, x, y, z)
		x.Get(tx)
		y.Get(tx)
		z.Get(tx)
		return nil
	})
	attempts := 0
	// The nested Dosync is a blind write: it reads nothing.
	count("an attempt that reads two refs and must retry, then its retry", 3, func(tx *txn.Tx) error {
		attempts++
		v := x.Get(tx)
		y.Get(tx)
		if attempts == 1 {
			if err := s.Dosync(context.Background(), func(tx2 *txn.Tx) error { x.Set(tx2, -1); return nil }); err != nil {
				return err
			}
		}
		x.Set(tx, v+1)
		return nil
	})
	if attempts != 2 {
		t.Fatalf("%d attempts, want 2", attempts)
	}
}

// testPrefetchMixedCalls: a refs.Prefetch of refs on two backends reads
// the coordinator's first, with the read point (one call, no separate read
// point), then the other backend's at it.
func testPrefetchMixedCalls(t *testing.T, raw, raw2 backend.Driver) {
	w := faulty.Wrap(raw)
	s := open(t, w)
	x := newRef(t, s, uniq("x"), 0)
	y := newRef(t, s, uniq("y"), 0, refs.On(raw2))
	var reads, points atomic.Int64
	w.SetHook(func(c faulty.Call) faulty.Fault {
		switch c.Op {
		case faulty.OpRead:
			reads.Add(1)
		case faulty.OpReadPoint:
			points.Add(1)
		}
		return faulty.Pass
	})
	defer w.SetHook(nil)
	if err := s.Dosync(tctx(t), func(tx *txn.Tx) error {
		refs.Prefetch(tx, y, x)
		x.Get(tx)
		y.Get(tx)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if r, p := reads.Load(), points.Load(); r != 1 || p != 0 {
		t.Fatalf("a Prefetch over two backends made %d read calls and %d read-point calls on the coordinator, want 1 and 0", r, p)
	}
}

// tombstoneOfFinishedWriter: a reader sees a committed writer's intent;
// before it looks up the writer's record, the writer finishes (rolls the
// intent forward, deletes its record) and another reader, confirming the
// record missing, writes an aborted tombstone for its id. The reader then
// finds "aborted": that is no proof the writer did not commit, and it must
// read again (finding the writer's version), not take the value under the
// intent it saw (a read skew that a review of the fix for stale missing
// records caught in MixedBackends). It returns what the reader saw.
func tombstoneOfFinishedWriter(t *testing.T, raw backend.Driver, faults engine.Faults) int {
	w := faulty.Wrap(raw)
	s := open(t, w, engine.WithGeneralPath(), stm.WithLease(time.Hour), engine.WithFaults(faults))
	x := newRef(t, s, uniq("x"), 0)
	var armWriter, armReader atomic.Bool
	resolving, looking, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
	w.SetHook(func(c faulty.Call) faulty.Fault {
		switch {
		case c.Op == faulty.OpResolve && armWriter.CompareAndSwap(true, false):
			close(resolving) // committed, the intent still on x
			<-looking
		case c.Op == faulty.OpRecords && armReader.CompareAndSwap(true, false):
			close(looking) // the reader saw the intent
			<-release
		}
		return faulty.Pass
	})
	defer w.SetHook(nil)
	armWriter.Store(true)
	var writer string
	wdone := make(chan error, 1)
	go func() {
		wdone <- s.Dosync(tctx(t), func(tx *txn.Tx) error { writer = tx.ID(); x.Set(tx, 1); return nil })
	}()
	<-resolving
	armReader.Store(true)
	got := make(chan int, 1)
	rerr := make(chan error, 1)
	go func() {
		v, err := x.Deref(tctx(t))
		got <- v
		rerr <- err
	}()
	if err := recv(t, wdone, "the writer's Dosync"); err != nil {
		t.Fatal(err)
	}
	// The writer has finished and deleted its record; another reader's
	// confirmation writes a tombstone for its id.
	if rec, err := raw.AbortRecord(tctx(t), writer); err != nil || rec.Status == backend.Committed {
		t.Fatalf("confirming the finished writer's record: %+v, %v (want it gone, so a tombstone)", rec, err)
	}
	close(release)
	v := recv(t, got, "the reader's Deref")
	if err := <-rerr; err != nil {
		t.Fatal(err)
	}
	return v
}

// testDelayedGiveBack: a transaction writes x on the first backend (by ID)
// and y on the second. x is held by another's intent, so the second
// backend's intents are given back and taken again once x is free, under
// the same transaction id. Every Resolve of the second backend arrives
// once more right after its next call (a delayed copy of a request, as a
// client's retry delivers it): the give-back's copy lands after the
// intents were taken again. A give-back names its Lock round, so the copy
// drops nothing, and the commit writes both refs. It returns x and y
// after the commit (1 and 1) and whether the construction reached the
// give-back.
func testDelayedGiveBack(t *testing.T, rawA, rawB backend.Driver, faults engine.Faults) (x, y int, gaveBack bool) {
	if rawA.ID() > rawB.ID() {
		rawA, rawB = rawB, rawA
	}
	ctx := tctx(t)
	wB := faulty.Wrap(rawB)
	var resolves atomic.Int32
	wB.SetHook(func(c faulty.Call) faulty.Fault {
		if c.Op == faulty.OpResolve {
			resolves.Add(1)
			return faulty.Duplicate
		}
		return faulty.Pass
	})
	s := open(t, rawA, engine.WithFaults(faults), stm.WithBackends(wB), stm.WithLease(time.Hour))
	xr := newRef(t, s, uniq("x"), 0)
	yr := newRef(t, s, uniq("y"), 0, refs.On(wB))
	// The blocker: a younger pending transaction's ensure on x.
	const far = clock.Point(1) << 62
	now := time.Now()
	blocker := uniq("blocker")
	if _, err := rawA.PutRecord(ctx, backend.Record{ID: blocker, RP: far, Priority: far, Created: now, Lease: now.Add(time.Hour),
		Refs: []backend.RefAddr{{Backend: rawA.ID(), Name: xr.Name()}}}); err != nil {
		t.Fatal(err)
	}
	if res, err := rawA.Lock(ctx, backend.LockRequest{Txn: blocker, Coord: rawA.ID(), RP: far, Round: 1,
		Items: []backend.LockItem{{Name: xr.Name(), Mode: backend.ModeEnsure}}}); err != nil || len(res.Conflicts) > 0 {
		t.Fatalf("the blocker's Lock: %+v, %v", res, err)
	}
	if err := s.Dosync(ctx, func(tx *txn.Tx) error {
		xr.Set(tx, 1)
		yr.Set(tx, 1)
		return nil
	}); err != nil {
		t.Fatalf("Dosync: %v", err)
	}
	var err error
	if x, err = xr.Deref(ctx); err != nil {
		t.Fatal(err)
	}
	if y, err = yr.Deref(ctx); err != nil {
		t.Fatal(err)
	}
	// A give-back, then the roll-forward: two Resolves at least.
	return x, y, resolves.Load() >= 2
}
