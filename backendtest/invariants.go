package backendtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// testInvariants checks the invariants of docs/design.md through the public API,
// each under the name of the anomaly it rules out, on both commit paths and
// across two backends.
func testInvariants(t *testing.T, newDriver NewDriver) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			t.Run("LostUpdate", func(t *testing.T) { testLostUpdate(t, open(t, newDriver(t), p.opts...)) })
			t.Run("CommuteNeverConflicts", func(t *testing.T) { testCommute(t, open(t, newDriver(t), p.opts...), nil) })
			t.Run("ReadSkew", func(t *testing.T) {
				s := open(t, newDriver(t), p.opts...)
				testReadSkew(t, s, s.Coordinator())
			})
			t.Run("TornWrite", func(t *testing.T) { testTornWrite(t, open(t, newDriver(t), p.opts...)) })
			t.Run("DirtyRead", func(t *testing.T) { testDirtyRead(t, open(t, newDriver(t), p.opts...)) })
			t.Run("WriteSkewWithEnsure", func(t *testing.T) { testWriteSkew(t, open(t, newDriver(t), p.opts...)) })
			t.Run("ValidatorAbort", func(t *testing.T) { testValidator(t, open(t, newDriver(t), p.opts...)) })
			t.Run("PanicReleasesLocks", func(t *testing.T) { testPanic(t, open(t, newDriver(t), p.opts...)) })
		})
	}
	t.Run("MixedBackends", func(t *testing.T) {
		coord, other := newDriver(t), newDriver(t)
		s := open(t, coord)
		testReadSkew(t, s, other)
		t.Run("CommuteNeverConflicts", func(t *testing.T) { testCommute(t, s, other) })
	})
	t.Run("ForeignClocks", func(t *testing.T) { testForeignClocks(t, newDriver) })
	t.Run("DosyncReturnsAfterCommutePanics", func(t *testing.T) { testCommutePanicsReturn(t, newDriver) })
	t.Run("MonotonicReadPoint", func(t *testing.T) { testMonotonic(t, open(t, newDriver(t))) })
	t.Run("WatchAfterCommit", func(t *testing.T) { testWatch(t, open(t, newDriver(t))) })
	t.Run("Watches", func(t *testing.T) { testWatches(t, newDriver) })
	t.Run("ReadFaultGrowsHistory", func(t *testing.T) {
		d := newDriver(t)
		testReadFault(t, open(t, d), open(t, d))
	})
	t.Run("NestedDosyncJoins", func(t *testing.T) { testNested(t, open(t, newDriver(t))) })
	t.Run("TxOutsideDosync", func(t *testing.T) { testOutside(t, open(t, newDriver(t))) })
	t.Run("BadInput", func(t *testing.T) { testBadInput(t, newDriver) })
	t.Run("RetryLimit", func(t *testing.T) { testRetryLimit(t, open(t, newDriver(t), stm.WithMaxRetries(0))) })
	t.Run("HistoryAndAt", func(t *testing.T) { testHistory(t, open(t, newDriver(t))) })
	t.Run("Meta", func(t *testing.T) { testMeta(t, open(t, newDriver(t))) })
	t.Run("Prefetch", func(t *testing.T) { testPrefetch(t, newDriver(t), newDriver(t)) })
	t.Run("ManySTMsOneBackend", func(t *testing.T) {
		d := newDriver(t)
		testLostUpdate(t, open(t, d), open(t, d), open(t, d))
	})
}

// parallel runs f(i) on n goroutines and waits for them.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i)
		}()
	}
	wg.Wait()
}

// testLostUpdate: concurrent read-modify-writes of one ref, from one or more
// STMs, lose no increment (I3).
func testLostUpdate(t *testing.T, ss ...*stm.STM) {
	ctx := tctx(t)
	name := uniq("counter")
	var ctr []*refs.Ref[int]
	for _, s := range ss {
		ctr = append(ctr, newRef(t, s, name, 0))
	}
	const workers, each = 6, 25
	var errs atomic.Int64
	parallel(workers, func(i int) {
		s, r := ss[i%len(ss)], ctr[i%len(ss)]
		for j := 0; j < each; j++ {
			if err := s.Dosync(ctx, func(tx *txn.Tx) error {
				r.Set(tx, r.Get(tx)+1)
				return nil
			}); err != nil {
				t.Errorf("Dosync: %v", err)
				errs.Add(1)
			}
		}
	})
	if got := deref(t, ctr[0]); got != workers*each-int(errs.Load()) {
		t.Fatalf("lost update: counter = %d after %d committed increments", got, workers*each-int(errs.Load()))
	}
}

// testCommute: commutes from many goroutines all land, and never fail first
// committer wins (I3: "Commute never conflicts with another Commute").
func testCommute(t *testing.T, s *stm.STM, other backend.Driver) {
	ctx := tctx(t)
	r := newRef(t, s, uniq("hits"), 0)
	// With other, each transaction also commutes a counter there: it
	// takes the general path, locking both backends.
	var r2 *refs.Ref[int]
	if other != nil {
		r2 = newRef(t, s, uniq("hits2"), 0, refs.On(other))
	}
	before := s.Stats()
	const workers, each = 6, 25
	var runs atomic.Int64
	parallel(workers, func(int) {
		for j := 0; j < each; j++ {
			if err := s.Dosync(ctx, func(tx *txn.Tx) error {
				runs.Add(1)
				r.Commute(tx, func(v int) int { return v + 1 })
				if r2 != nil {
					r2.Commute(tx, func(v int) int { return v + 1 })
				}
				return nil
			}); err != nil {
				t.Errorf("Dosync: %v", err)
			}
		}
	})
	if got := deref(t, r); got != workers*each {
		t.Fatalf("commute lost updates: %d, want %d", got, workers*each)
	}
	if r2 != nil {
		if got := deref(t, r2); got != workers*each {
			t.Fatalf("commute on the second backend lost updates: %d, want %d", got, workers*each)
		}
	}
	st := s.Stats()
	if c := st.Conflicts - before.Conflicts; c != 0 {
		t.Fatalf("%d first-committer-wins conflicts among pure commutes, want 0", c)
	}
	// I3: a commute never conflicts with another, so no transaction of
	// pure commutes runs its function twice, whether the commutes waited
	// for each other's intents or not.
	if n, rt, y := runs.Load(), st.Retries-before.Retries, st.Yields-before.Yields; n != workers*each || rt != 0 || y != 0 {
		t.Fatalf("pure commutes ran their functions %d times for %d commits (%d retries, %d yields), want once per commit", n, workers*each, rt, y)
	}
}

// testReadSkew: transfers keep a sum constant; every transaction that reads
// both refs sees the same sum (I1, I2). The second ref lives in other,
// which may be another backend than the coordinator.
func testReadSkew(t *testing.T, s *stm.STM, other backend.Driver) {
	ctx := tctx(t)
	a := newRef(t, s, uniq("a"), 500)
	b := newRef(t, s, uniq("b"), 500, refs.On(other))
	var stop atomic.Bool
	var skew atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if err := s.Dosync(ctx, func(tx *txn.Tx) error {
					if sum := a.Get(tx) + b.Get(tx); sum != 1000 {
						skew.Add(1)
					}
					return nil
				}); err != nil {
					t.Errorf("reader: %v", err)
					return
				}
			}
		}()
	}
	parallel(4, func(i int) {
		rnd := rand.New(rand.NewPCG(uint64(i), 7))
		for j := 0; j < 40; j++ {
			n := rnd.IntN(20) - 10
			if err := s.Dosync(ctx, func(tx *txn.Tx) error {
				a.Alter(tx, func(v int) int { return v - n })
				b.Alter(tx, func(v int) int { return v + n })
				return nil
			}); err != nil {
				t.Errorf("transfer: %v", err)
			}
		}
	})
	stop.Store(true)
	wg.Wait()
	if n := skew.Load(); n > 0 {
		t.Fatalf("read skew: %d transactions saw a sum other than 1000", n)
	}
	if sum := deref(t, a) + deref(t, b); sum != 1000 {
		t.Fatalf("sum after transfers = %d, want 1000", sum)
	}
}

// testTornWrite: a transaction writes the same value to three refs; no
// reader sees them differ (I1).
func testTornWrite(t *testing.T, s *stm.STM) {
	ctx := tctx(t)
	rs := []*refs.Ref[int]{newRef(t, s, uniq("x"), 0), newRef(t, s, uniq("y"), 0), newRef(t, s, uniq("z"), 0)}
	var stop atomic.Bool
	var torn atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			_ = s.Dosync(ctx, func(tx *txn.Tx) error {
				v0 := rs[0].Get(tx)
				if rs[1].Get(tx) != v0 || rs[2].Get(tx) != v0 {
					torn.Add(1)
				}
				return nil
			})
		}
	}()
	parallel(3, func(int) {
		for j := 0; j < 30; j++ {
			if err := s.Dosync(ctx, func(tx *txn.Tx) error {
				n := rs[0].Get(tx) + 1
				for _, r := range rs {
					r.Set(tx, n)
				}
				return nil
			}); err != nil {
				t.Errorf("writer: %v", err)
			}
		}
	})
	stop.Store(true)
	<-done
	if torn.Load() > 0 {
		t.Fatalf("torn write: %d reads saw the three refs differ", torn.Load())
	}
	if v := deref(t, rs[2]); v != 90 {
		t.Fatalf("z = %d after 90 increments", v)
	}
}

// testDirtyRead: writes of a transaction that aborts (its function returns
// an error, or a validator rejects at commit) are never seen (I1, I4).
func testDirtyRead(t *testing.T, s *stm.STM) {
	ctx := tctx(t)
	r := newRef(t, s, uniq("x"), 0)
	errAbort := errors.New("abort")
	var stop atomic.Bool
	var dirty atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			if v, err := r.Deref(ctx); err == nil && v < 0 {
				dirty.Add(1)
			}
		}
	}()
	parallel(3, func(i int) {
		for j := 0; j < 30; j++ {
			err := s.Dosync(ctx, func(tx *txn.Tx) error {
				r.Set(tx, -1)
				if j%2 == 0 {
					return errAbort
				}
				r.Set(tx, j)
				return nil
			})
			if j%2 == 0 && !errors.Is(err, errAbort) {
				t.Errorf("aborting Dosync returned %v", err)
			}
		}
	})
	stop.Store(true)
	<-done
	if dirty.Load() > 0 {
		t.Fatalf("dirty read: an aborted or intermediate value was seen %d times", dirty.Load())
	}
	hist, err := r.History(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range hist {
		if v.Value < 0 {
			t.Fatalf("aborted value in history: %+v", v)
		}
	}
}

// testWriteSkew: the classic on-call anomaly. Two transactions each read
// both refs and clear one. Snapshot isolation allows both to commit (write
// skew); Ensure on the ref read but not written rules it out (I3).
func testWriteSkew(t *testing.T, s *stm.STM) {
	run := func(ensure bool) (int, int) {
		ctx := tctx(t)
		a := newRef(t, s, uniq("alice-on-call"), 1)
		b := newRef(t, s, uniq("bob-on-call"), 1)
		goOff := func(ctx context.Context, me, other *refs.Ref[int], between func()) error {
			return s.Dosync(ctx, func(tx *txn.Tx) error {
				if ensure {
					other.Ensure(tx)
				}
				if me.Get(tx)+other.Get(tx) < 2 {
					return nil // someone must stay on call
				}
				if between != nil {
					between()
				}
				me.Set(tx, 0)
				return nil
			})
		}
		first := true
		// Alice's transaction reads, then Bob's runs and commits entirely
		// inside it (a Dosync of its own, on a fresh ctx), then Alice's
		// commits: a deterministic interleaving of two concurrent
		// transactions.
		err := goOff(ctx, a, b, func() {
			if first {
				first = false
				if err := goOff(context.Background(), b, a, nil); err != nil {
					t.Errorf("bob: %v", err)
				}
			}
		})
		if err != nil {
			t.Fatalf("alice: %v", err)
		}
		return deref(t, a), deref(t, b)
	}
	if a, b := run(false); a != 0 || b != 0 {
		t.Fatalf("without Ensure: alice %d, bob %d; snapshot isolation allows write skew and this interleaving must show it", a, b)
	}
	if a, b := run(true); a+b != 1 {
		t.Fatalf("write skew with Ensure: alice %d, bob %d; exactly one must stay on call", a, b)
	}
}

// testValidator: a rejecting validator aborts without retry and without any
// visible write, on Set and on a commute computed at commit (I6).
func testValidator(t *testing.T, s *stm.STM) {
	ctx := tctx(t)
	errNeg := errors.New("negative")
	nonNeg := func(v int) error {
		if v < 0 {
			return errNeg
		}
		return nil
	}
	r := newRef(t, s, uniq("x"), 5, refs.WithValidator(nonNeg))
	other := newRef(t, s, uniq("y"), 0)
	for _, op := range []string{"set", "commute"} {
		runs := 0
		err := s.Dosync(ctx, func(tx *txn.Tx) error {
			runs++
			other.Set(tx, 99)
			if op == "set" {
				r.Set(tx, -1)
			} else {
				r.Commute(tx, func(v int) int { return v - 10 })
			}
			return nil
		})
		if !errors.Is(err, refs.ErrValidation) || !errors.Is(err, errNeg) {
			t.Fatalf("%s: Dosync = %v, want ErrValidation wrapping the validator's error", op, err)
		}
		if runs != 1 {
			t.Fatalf("%s: the function ran %d times; a validation failure is not retried", op, runs)
		}
		if v := deref(t, r); v != 5 {
			t.Fatalf("%s: rejected value visible: %d", op, v)
		}
		if v := deref(t, other); v != 0 {
			t.Fatalf("%s: the other write of a rejected transaction is visible: %d", op, v)
		}
	}
	if _, err := refs.New(ctx, s, uniq("bad"), -3, refs.WithValidator(nonNeg)); !errors.Is(err, refs.ErrValidation) {
		t.Fatalf("refs.New with an invalid initial value: %v", err)
	}
}

// testPanic: a user's panic propagates out of Dosync, even from a commute
// function run at commit, and leaves nothing locked: the next transaction
// on the ref commits at once.
func testPanic(t *testing.T, s *stm.STM) {
	ctx := tctx(t)
	r := newRef(t, s, uniq("x"), 1)
	boom := func() (v any) {
		defer func() { v = recover() }()
		_ = s.Dosync(ctx, func(tx *txn.Tx) error {
			calls := 0
			r.Commute(tx, func(v int) int {
				// The first call computes the in-transaction value; the
				// second runs at commit, with intents possibly held.
				if calls++; calls == 2 {
					panic("user panic")
				}
				return v
			})
			return nil
		})
		return nil
	}
	if v := boom(); v != "user panic" {
		t.Fatalf("recovered %v, want the user's panic", v)
	}
	vr, err := r.Backend().Versions(ctx, r.Name())
	if err != nil {
		t.Fatal(err)
	}
	if vr.Intent != nil {
		t.Fatalf("a panic left an intent: %+v", vr.Intent)
	}
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, 2); return nil }); err != nil {
		t.Fatal(err)
	}
	if v := deref(t, r); v != 2 {
		t.Fatalf("after the panic, x = %d, want 2", v)
	}
}

// testMonotonic: a process's read points never go backwards, and each
// Dosync sees the one before it (I5).
func testMonotonic(t *testing.T, s *stm.STM) {
	ctx := tctx(t)
	r := newRef(t, s, uniq("x"), 0)
	var last clock.Point
	for i := 1; i <= 20; i++ {
		var rp clock.Point
		if err := s.Dosync(ctx, func(tx *txn.Tx) error {
			rp = tx.ReadPoint()
			if v := r.Get(tx); v != i-1 {
				return fmt.Errorf("dosync %d read %d: it does not see the one before it", i, v)
			}
			r.Set(tx, i)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if rp < last {
			t.Fatalf("read point went back from %d to %d", last, rp)
		}
		hist, _ := r.History(ctx)
		last = hist[0].Point
	}
}

// testWatch: watches fire after commit (a deref in the callback sees the new
// value), once per change, in commit order, with old and new (I6).
func testWatch(t *testing.T, s *stm.STM) {
	ctx := tctx(t)
	r := newRef(t, s, uniq("x"), 0, refs.WithMinHistory(100), refs.WithMaxHistory(100))
	type change struct {
		old, new, seen int
		err            error
	}
	// Callbacks report through channels, never through t: one may still
	// run after the test has returned (RemoveWatch does not wait for it).
	ch := make(chan change, 100)
	gaps := make(chan [2]clock.Point, 100)
	r.AddWatch("w", func(key string, rr *refs.Ref[int], old, new int) {
		seen, err := rr.Deref(context.Background())
		select {
		case ch <- change{old, new, seen, err}:
		default:
		}
	}, refs.OnGap(func(key string, from, to clock.Point) {
		select {
		case gaps <- [2]clock.Point{from, to}:
		default:
		}
	}))
	defer r.RemoveWatch("w")
	const n = 20
	for i := 1; i <= n; i++ {
		if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, i); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= n; i++ {
		c := recv(t, ch, fmt.Sprintf("watch call %d", i))
		if c.err != nil {
			t.Fatalf("deref in watch call %d: %v", i, c.err)
		}
		if c.old != i-1 || c.new != i {
			t.Fatalf("watch call %d: old %d new %d, want %d -> %d (once per change, in order)", i, c.old, c.new, i-1, i)
		}
		if c.seen < c.new {
			t.Fatalf("watch for %d ran before the commit was visible: deref saw %d", c.new, c.seen)
		}
	}
	// A watch on a second handle sees changes from this one.
	r2 := newRef(t, s, r.Name(), 0)
	got := make(chan int, 10)
	r2.AddWatch("w2", func(_ string, _ *refs.Ref[int], _, new int) {
		select {
		case got <- new:
		default:
		}
	})
	defer r2.RemoveWatch("w2")
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, 100); return nil }); err != nil {
		t.Fatal(err)
	}
	if v := recv(t, got, "watch on another handle"); v != 100 {
		t.Fatalf("second handle's watch got %d", v)
	}
	select {
	case g := <-gaps:
		t.Fatalf("gap %v although history keeps every version", g)
	default:
	}
}

// testReadFault: a long transaction reading at an old point while others
// write faults, retries, and grows the ref's history until it succeeds (I2).
//
// The writer is another STM (another process): one of this process would
// hand the reader its local turn of x, and the reader would move its read
// point past the writes instead of faulting (docs/design.md, local turns).
func testReadFault(t *testing.T, s, other *stm.STM) {
	ctx := tctx(t)
	x := newRef(t, s, uniq("x"), 0)
	y := newRef(t, s, uniq("y"), 0)
	xw := newRef(t, other, x.Name(), 0)
	attempts := 0
	err := s.Dosync(ctx, func(tx *txn.Tx) error {
		attempts++
		y.Get(tx)
		if attempts <= 3 {
			// Another transaction writes x after our read point, and
			// history keeps only what it has grown to.
			for i := 0; i < attempts; i++ {
				if err := other.Dosync(context.Background(), func(tx2 *txn.Tx) error { xw.Set(tx2, xw.Get(tx2)+1); return nil }); err != nil {
					t.Errorf("writer: %v", err)
				}
			}
		}
		x.Get(tx)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if attempts < 2 {
		t.Fatalf("the reader never faulted (%d attempts)", attempts)
	}
	if st := s.Stats(); st.ReadFaults < 1 || st.MaxRetries < int64(attempts-1) {
		t.Fatalf("stats %+v: want the read faults counted and MaxRetries >= %d", st, attempts-1)
	}
	vr, err := x.Backend().Versions(ctx, x.Name())
	if err != nil {
		t.Fatal(err)
	}
	if vr.Keep < 1 {
		t.Fatalf("after read faults history keep = %d, want grown", vr.Keep)
	}
}

// testNested: a Dosync with tx.Context() on the same goroutine joins the
// outer transaction; with another ctx, or on another goroutine, it is a
// transaction of its own.
func testNested(t *testing.T, s *stm.STM) {
	ctx := tctx(t)
	a := newRef(t, s, uniq("a"), 0)
	b := newRef(t, s, uniq("b"), 0)
	errBoom := errors.New("boom")
	err := s.Dosync(ctx, func(tx *txn.Tx) error {
		a.Set(tx, 1)
		if err := s.Dosync(tx.Context(), func(inner *txn.Tx) error {
			if inner != tx {
				return errors.New("inner Dosync did not join")
			}
			if a.Get(inner) != 1 {
				return errors.New("inner does not see the outer's write")
			}
			b.Set(inner, 1)
			return nil
		}); err != nil {
			return err
		}
		return errBoom // the outer aborts: the inner's write goes too
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Dosync = %v", err)
	}
	if deref(t, a) != 0 || deref(t, b) != 0 {
		t.Fatal("writes of an aborted outer transaction (and its joined inner) are visible")
	}
	// A joined Dosync whose function fails dooms the outer one: the
	// writes it made before failing cannot be taken back alone, so the
	// outer commits nothing and returns that error, even if its function
	// goes on and returns nil.
	err = s.Dosync(ctx, func(tx *txn.Tx) error {
		a.Set(tx, 2)
		inner := s.Dosync(tx.Context(), func(inner *txn.Tx) error {
			b.Set(inner, 2)
			return errBoom
		})
		if !errors.Is(inner, errBoom) {
			return fmt.Errorf("inner Dosync = %v, want its function's error", inner)
		}
		return nil // the function handles the error and carries on
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("outer Dosync after a joined Dosync failed = %v, want the inner error", err)
	}
	if deref(t, a) != 0 || deref(t, b) != 0 {
		t.Fatal("a failed joined Dosync's half-done writes were committed by the outer one")
	}
	// Another goroutine with the same ctx runs a transaction of its own.
	err = s.Dosync(ctx, func(tx *txn.Tx) error {
		done := make(chan error, 1)
		go func() {
			done <- s.Dosync(tx.Context(), func(other *txn.Tx) error {
				if other == tx {
					return errors.New("a second goroutine joined the transaction")
				}
				b.Set(other, 7)
				return nil
			})
		}()
		return recv(t, done, "the other goroutine's Dosync")
	})
	if err != nil {
		t.Fatal(err)
	}
	if deref(t, b) != 7 {
		t.Fatal("the other goroutine's transaction did not commit")
	}
}

// testOutside: a Tx used after its Dosync panics with ErrOutsideTx and
// writes nothing; Set after Commute ends the Dosync without retry.
func testOutside(t *testing.T, s *stm.STM) {
	ctx := tctx(t)
	r := newRef(t, s, uniq("x"), 0)
	var kept *txn.Tx
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { kept = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			err, _ := recover().(error)
			if !errors.Is(err, txn.ErrOutsideTx) {
				t.Fatalf("using a Tx after its Dosync: recovered %v, want ErrOutsideTx", err)
			}
		}()
		r.Set(kept, 5)
	}()
	if v := deref(t, r); v != 0 {
		t.Fatalf("a write through a finished Tx is visible: %d", v)
	}
	// A commute function must be a pure function of the value: one that
	// uses the Tx when it runs again at commit gets ErrOutsideTx (and does
	// not deadlock).
	other := newRef(t, s, uniq("o"), 3)
	func() {
		defer func() {
			err, _ := recover().(error)
			if !errors.Is(err, txn.ErrOutsideTx) {
				t.Fatalf("a commute function using its Tx at commit: recovered %v, want ErrOutsideTx", err)
			}
		}()
		_ = s.Dosync(ctx, func(tx *txn.Tx) error {
			r.Commute(tx, func(v int) int { return v + other.Get(tx) })
			return nil
		})
	}()
	if v := deref(t, r); v != 0 {
		t.Fatalf("x = %d after a commute that panicked at commit", v)
	}
	runs := 0
	err := s.Dosync(ctx, func(tx *txn.Tx) error {
		runs++
		r.Commute(tx, func(v int) int { return v + 1 })
		r.Set(tx, 10)
		return nil
	})
	if !errors.Is(err, txn.ErrSetAfterCommute) || runs != 1 {
		t.Fatalf("Set after Commute: %v after %d runs; want ErrSetAfterCommute, no retry", err, runs)
	}
}

// testBadInput: each kind of bad input gets a clear error and writes
// nothing.
func testBadInput(t *testing.T, newDriver NewDriver) {
	ctx := tctx(t)
	d := newDriver(t)
	s := open(t, d, stm.WithMaxValueSize(64))
	r := newRef(t, s, uniq("x"), "ok")
	if err := s.Dosync(ctx, nil); !errors.Is(err, stm.ErrNilFunc) {
		t.Errorf("nil function: %v", err)
	}
	for _, name := range []string{"", "/a", "a/", "a//b", "a/../b", "sp ace", "new\nline", string(make([]byte, 300))} {
		if _, err := refs.New(ctx, s, name, 1); !errors.Is(err, refs.ErrName) {
			t.Errorf("refs.New(%q): %v, want ErrName", name, err)
		}
	}
	if _, err := refs.New(ctx, s, uniq("chan"), make(chan int)); !errors.Is(err, refs.ErrEncode) {
		t.Errorf("a value msgpack cannot encode: %v", err)
	}
	big := string(make([]byte, 100))
	if _, err := refs.New(ctx, s, uniq("big"), big); !errors.Is(err, refs.ErrTooLarge) {
		t.Errorf("an initial value over the limit: %v", err)
	}
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, big); return nil }); !errors.Is(err, refs.ErrTooLarge) {
		t.Errorf("a value over the limit: %v", err)
	}
	if v := deref(t, r); v != "ok" {
		t.Errorf("after refused writes, x = %q", v)
	}
	// Stored bytes that do not decode as T.
	asInt := newRef(t, s, r.Name(), 0)
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { asInt.Get(tx); return nil }); !errors.Is(err, refs.ErrType) {
		t.Errorf("reading a string ref as int: %v, want ErrType", err)
	}
	if _, err := asInt.Deref(ctx); !errors.Is(err, refs.ErrType) {
		t.Errorf("Deref of a string ref as int: %v, want ErrType", err)
	}
	// A name that holds another kind of reference.
	atomName := uniq("atom")
	if _, err := d.Create(ctx, backend.CreateRequest{Name: atomName, Kind: backend.KindAtom, Value: []byte{0}, MaxHistory: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := refs.New(ctx, s, atomName, 0); !errors.Is(err, refs.ErrType) {
		t.Errorf("refs.New over an atom: %v, want ErrType", err)
	}
	// A validator of the wrong type.
	if _, err := refs.New(ctx, s, uniq("v"), 1, refs.WithValidator(func(string) error { return nil })); !errors.Is(err, refs.ErrOption) {
		t.Errorf("validator of the wrong type: %v, want ErrOption", err)
	}
	// History bounds.
	if _, err := refs.New(ctx, s, uniq("h"), 1, refs.WithMinHistory(5), refs.WithMaxHistory(2)); err == nil {
		t.Error("MinHistory > MaxHistory accepted")
	}
	// A ctx already done: nothing runs, nothing is written.
	done, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	if err := s.Dosync(done, func(tx *txn.Tx) error { ran = true; r.Set(tx, "no"); return nil }); !errors.Is(err, context.Canceled) || ran {
		t.Errorf("Dosync with a done ctx: %v (ran %v)", err, ran)
	}
	// A ref that does not exist (created elsewhere and never here).
	ghost := newRef(t, open(t, newDriver(t)), "ghost", 0)
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { ghost.Get(tx); return nil }); !errors.Is(err, txn.ErrForeignRef) {
		t.Errorf("reading a ref of a backend this STM does not know: %v, want ErrForeignRef", err)
	}
	// A closed STM.
	s2 := open(t, d)
	r2 := newRef(t, s2, uniq("y"), 0)
	_ = s2.Close()
	if err := s2.Dosync(ctx, func(tx *txn.Tx) error { r2.Set(tx, 1); return nil }); !errors.Is(err, stm.ErrClosed) {
		t.Errorf("Dosync on a closed STM: %v", err)
	}
	if _, err := refs.New(ctx, s2, uniq("z"), 0); !errors.Is(err, stm.ErrClosed) {
		t.Errorf("refs.New on a closed STM: %v", err)
	}
	if _, err := r2.Deref(ctx); !errors.Is(err, stm.ErrClosed) {
		t.Errorf("Deref on a closed STM: %v", err)
	}
	if _, err := stm.Open(ctx, d, stm.WithMaxRetries(-1)); err == nil {
		t.Error("WithMaxRetries(-1) accepted")
	}
}

// testRetryLimit: a transaction that keeps conflicting ends in
// ErrRetryLimit.
func testRetryLimit(t *testing.T, s *stm.STM) {
	ctx := tctx(t)
	r := newRef(t, s, uniq("x"), 0)
	err := s.Dosync(ctx, func(tx *txn.Tx) error {
		r.Get(tx)
		// Someone else commits to r after our read point, every attempt.
		if err := s.Dosync(context.Background(), func(tx2 *txn.Tx) error { r.Set(tx2, r.Get(tx2)+1); return nil }); err != nil {
			return err
		}
		r.Set(tx, -1)
		return nil
	})
	if !errors.Is(err, stm.ErrRetryLimit) {
		t.Fatalf("Dosync = %v, want ErrRetryLimit", err)
	}
	if engine.IsRetry(err) {
		t.Fatal("ErrRetryLimit must not itself ask an outer Dosync to retry")
	}
	// It wraps the last reason to retry: here a conflict on x.
	if !errors.Is(err, txn.ErrConflict) || !strings.Contains(err.Error(), r.Name()) {
		t.Fatalf("ErrRetryLimit = %v, want it to wrap txn.ErrConflict naming %q", err, r.Name())
	}
	if v := deref(t, r); v != 1 {
		t.Fatalf("x = %d, want 1 (the inner commit only)", v)
	}
}

// testHistory: History is newest first; At returns the value as of a point,
// or ErrHistoryTrimmed.
func testHistory(t *testing.T, s *stm.STM) {
	ctx := tctx(t)
	r := newRef(t, s, uniq("x"), 0, refs.WithMinHistory(2))
	var pts []clock.Point
	for i := 1; i <= 4; i++ {
		if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, i*10); return nil }); err != nil {
			t.Fatal(err)
		}
		h, err := r.History(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pts = append(pts, h[0].Point)
		if h[0].Value != i*10 || h[0].Txn == "" {
			t.Fatalf("newest version %+v, want %d with its txn id", h[0], i*10)
		}
	}
	h, _ := r.History(ctx)
	if len(h) != 3 || h[0].Value != 40 || h[1].Value != 30 || h[2].Value != 20 {
		t.Fatalf("History = %+v, want 40, 30, 20", h)
	}
	for i, want := range map[int]int{1: 20, 2: 30, 3: 40} {
		if v, err := r.At(ctx, pts[i]); err != nil || v != want {
			t.Errorf("At(%d) = %d, %v; want %d", pts[i], v, err, want)
		}
	}
	if _, err := r.At(ctx, pts[0]); !errors.Is(err, refs.ErrHistoryTrimmed) {
		t.Errorf("At a trimmed point: %v", err)
	}
	if _, err := r.At(ctx, pts[3]+1000); err == nil {
		t.Error("At a future point succeeded")
	}
}

// testMeta: meta is stored beside the value and changed atomically.
func testMeta(t *testing.T, s *stm.STM) {
	ctx := tctx(t)
	r := newRef(t, s, uniq("x"), 0)
	if m, err := r.Meta(ctx); err != nil || m != nil {
		t.Fatalf("Meta of a new ref = %v, %v", m, err)
	}
	if err := r.ResetMeta(ctx, map[string]any{"owner": "alice"}); err != nil {
		t.Fatal(err)
	}
	parallel(4, func(int) {
		for j := 0; j < 10; j++ {
			if _, err := r.AlterMeta(ctx, func(m map[string]any) map[string]any {
				n, _ := m["n"].(int64)
				m["n"] = n + 1
				return m
			}); err != nil {
				t.Errorf("AlterMeta: %v", err)
			}
		}
	})
	m, err := r.Meta(ctx)
	if err != nil || m["owner"] != "alice" || m["n"] != int64(40) {
		t.Fatalf("Meta = %v, %v; want owner alice and n 40", m, err)
	}
}

// testPrefetch: refs.Prefetch reads refs of two backends at the read point,
// consistent with Get, and never overwrites the transaction's own write.
func testPrefetch(t *testing.T, coord, other backend.Driver) {
	ctx := tctx(t)
	s := open(t, coord)
	a := newRef(t, s, uniq("a"), 1)
	b := newRef(t, s, uniq("b"), 2, refs.On(other))
	c := newRef(t, s, uniq("c"), 3)
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { c.Set(tx, 30); return nil }); err != nil {
		t.Fatal(err)
	}
	err := s.Dosync(ctx, func(tx *txn.Tx) error {
		a.Set(tx, 10)
		refs.Prefetch(tx, a, b, c)
		if got := [3]int{a.Get(tx), b.Get(tx), c.Get(tx)}; got != [3]int{10, 2, 30} {
			return fmt.Errorf("after Prefetch: %v, want [10 2 30]", got)
		}
		b.Set(tx, 20)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if deref(t, a) != 10 || deref(t, b) != 20 {
		t.Fatal("the prefetching transaction's writes were lost")
	}
}

// testCommutePanicsReturn: a Commute that panics inside the engine must
// leave the transaction usable for cleanup, so that Dosync returns (a
// review found Commute held the transaction's mutex across calls that
// panic, and the Dosync then never returned): a ref of a backend the STM
// does not know, a Commute after the user swallowed the engine's unwinding
// panic, and a Commute called from a commute function at commit.
func testCommutePanicsReturn(t *testing.T, newDriver NewDriver) {
	b1, b2 := newDriver(t), newDriver(t)
	s := open(t, b1)
	x := newRef(t, s, uniq("x"), 0)
	// y lives in b2, which only s2 knows.
	s2 := open(t, b1, stm.WithBackends(b2))
	y := newRef(t, s2, uniq("y"), 0, refs.On(b2))
	run := func(t *testing.T, fn func(tx *txn.Tx) error) (err error, panicked any) {
		t.Helper()
		type result struct {
			err error
			v   any
		}
		done := make(chan result, 1)
		go func() {
			var r result
			defer func() { r.v = recover(); done <- r }()
			r.err = s.Dosync(tctx(t), fn)
		}()
		r := recv(t, done, "Dosync's return (it hung)")
		return r.err, r.v
	}
	t.Run("ForeignRef", func(t *testing.T) {
		err, v := run(t, func(tx *txn.Tx) error {
			y.Commute(tx, func(v int) int { return v + 1 })
			return nil
		})
		if v != nil || !errors.Is(err, txn.ErrForeignRef) {
			t.Fatalf("Commute of a ref of an unknown backend: %v (panic %v), want txn.ErrForeignRef", err, v)
		}
	})
	t.Run("AfterSwallowedUnwind", func(t *testing.T) {
		err, v := run(t, func(tx *txn.Tx) error {
			func() {
				defer func() { _ = recover() }() // wrong, but users do it
				y.Get(tx)
			}()
			x.Commute(tx, func(v int) int { return v + 1 })
			return nil
		})
		if v != nil || !errors.Is(err, txn.ErrForeignRef) {
			t.Fatalf("Commute after a swallowed unwind: %v (panic %v), want the unwound error, txn.ErrForeignRef", err, v)
		}
	})
	t.Run("FromCommuteFunction", func(t *testing.T) {
		calls := 0
		err, v := run(t, func(tx *txn.Tx) error {
			x.Commute(tx, func(v int) int {
				if calls++; calls == 2 { // at commit
					x.Commute(tx, func(v int) int { return v })
				}
				return v + 1
			})
			return nil
		})
		perr, _ := v.(error)
		if !errors.Is(perr, txn.ErrOutsideTx) {
			t.Fatalf("Commute from a commute function at commit: %v, panic %v; want a panic wrapping txn.ErrOutsideTx", err, v)
		}
	})
	if err := s.Dosync(tctx(t), func(tx *txn.Tx) error { x.Set(tx, 7); return nil }); err != nil {
		t.Fatalf("a Dosync after the panics: %v", err)
	}
	if v := deref(t, x); v != 7 {
		t.Fatalf("x = %d, want 7", v)
	}
}
