package stm_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// Local turns (engine.Turns, docs/design.md "Local turns"): transactions of
// one process that write the same ref take turns in the process.

func openTurns(t *testing.T, opts ...stm.Option) (*stm.STM, []*refs.Ref[int]) {
	t.Helper()
	ctx := context.Background()
	be := mem.New()
	t.Cleanup(func() { _ = be.Close() })
	s, err := stm.Open(ctx, be, append([]stm.Option{stm.WithSweepInterval(0), stm.WithLocalTurns()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	rs := make([]*refs.Ref[int], 3)
	for i := range rs {
		if rs[i], err = refs.New(ctx, s, fmt.Sprintf("turns/%d", i), 100); err != nil {
			t.Fatal(err)
		}
	}
	return s, rs
}

// holdTurn starts a Dosync that alters r (taking its local turn), then
// waits for proceed to be closed and returns end(tx). holdTurn returns
// once the alter is done (the first time, should the Dosync run again);
// done then gets what the Dosync returned or panicked with (nil when it
// committed).
func holdTurn(s *stm.STM, r *refs.Ref[int], end func(*txn.Tx) error) (proceed chan struct{}, done <-chan any) {
	proceed = make(chan struct{})
	claimed := make(chan struct{})
	var once sync.Once
	out := make(chan any, 1)
	go func() {
		var err error
		defer func() {
			if p := recover(); p != nil {
				out <- p
			} else if err != nil {
				out <- err
			} else {
				out <- nil
			}
		}()
		err = s.Dosync(context.Background(), func(tx *txn.Tx) error {
			r.Alter(tx, dec)
			once.Do(func() { close(claimed) })
			<-proceed
			return end(tx)
		})
	}()
	<-claimed
	return proceed, out
}

func commits(*txn.Tx) error { return nil }

// untilWaits returns once n waits for a local turn have begun (a waiter
// counts its wait before it blocks), yielding meanwhile: no sleep, no
// timing.
func untilWaits(t *testing.T, s *stm.STM, n int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for s.Stats().TurnWaits < n {
		if time.Now().After(deadline) {
			t.Fatalf("no %d waits for a local turn (%d)", n, s.Stats().TurnWaits)
		}
		runtime.Gosched()
	}
}

func dec(v int) int { return v - 1 }
func inc(v int) int { return v + 1 }

// TestTurnsQueueInsteadOfRetry: a transaction that alters a ref another
// transaction of the process is altering waits for it and then reads what
// it committed: neither retries, whether the waiter had drawn its read
// point before it waited (it moves it: Extended) or not. Without local
// turns the second would commit on a stale read point and fail.
func TestTurnsQueueInsteadOfRetry(t *testing.T) {
	for _, readFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("readFirst=%v", readFirst), func(t *testing.T) {
			s, rs := openTurns(t)
			a, b := rs[0], rs[1]
			ctx := context.Background()
			proceed, first := holdTurn(s, a, commits)
			second := make(chan error, 1)
			go func() {
				second <- s.Dosync(ctx, func(tx *txn.Tx) error {
					if readFirst {
						b.Alter(tx, inc) // draws the read point before a's wait
					}
					a.Alter(tx, dec)
					return nil
				})
			}()
			untilWaits(t, s, 1)
			close(proceed)
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			if err := <-second; err != nil {
				t.Fatal(err)
			}
			st := s.Stats()
			if st.Retries != 0 || st.Conflicts != 0 || st.Commits != 2 {
				t.Fatalf("retries %d, conflicts %d, commits %d: want 0, 0, 2 (%+v)", st.Retries, st.Conflicts, st.Commits, st)
			}
			if readFirst && st.Extended != 1 {
				t.Fatalf("extended %d read points, want 1", st.Extended)
			}
			if v, _ := a.Deref(ctx); v != 98 {
				t.Fatalf("a = %d, want 98", v)
			}
		})
	}
}

// TestTurnsCommuteNeverRecomputes: commutes to a ref that the process's
// transactions commit to all the time never find their base stale (they
// take the ref's turn before reading it), so the one-phase commit never
// recomputes, escalates or retries, and the count is exact.
func TestTurnsCommuteNeverRecomputes(t *testing.T) {
	s, rs := openTurns(t)
	const workers, each = 8, 200
	transfers(t, s, rs, workers, each, 7, func(tx *txn.Tx, i, j int) error {
		rs[i].Alter(tx, dec)
		rs[j].Commute(tx, inc)
		return nil
	})
	st := s.Stats()
	if st.Conflicts != 0 || st.Recomputes != 0 || st.Escalated != 0 || st.Retries != st.Wounds {
		t.Fatalf("conflicts %d, recomputes %d, escalated %d, retries %d (wounds %d): want 0, 0, 0, only wounds", st.Conflicts, st.Recomputes, st.Escalated, st.Retries, st.Wounds)
	}
	checkTotal(t, s, rs, 300)
}

// TestTurnsContendedTransfersNeverConflict: transfers in one process over
// three accounts: every collision is settled by local turns, none on the
// backend (no commit ever fails for a newer version), and the total holds.
// The only retries are of transactions that gave way to an older one.
func TestTurnsContendedTransfersNeverConflict(t *testing.T) {
	s, rs := openTurns(t)
	const workers, each = 8, 300
	transfers(t, s, rs, workers, each, 9, func(tx *txn.Tx, i, j int) error {
		rs[i].Alter(tx, dec)
		runtime.Gosched()
		rs[j].Alter(tx, inc)
		return nil
	})
	st := s.Stats()
	if st.Conflicts != 0 || st.Retries != st.Wounds || st.Commits != workers*each {
		t.Fatalf("conflicts %d, retries %d, wounds %d, commits %d: want 0 conflicts, only wounds, %d commits", st.Conflicts, st.Retries, st.Wounds, st.Commits, workers*each)
	}
	checkTotal(t, s, rs, 300)
}

// transfers runs workers goroutines, each doing each Dosyncs of
// body(tx, i, j) with i and j two distinct refs of rs chosen at random
// (worker w drawing from seed, w), and waits for them.
func transfers(t *testing.T, s *stm.STM, rs []*refs.Ref[int], workers, each int, seed uint64, body func(tx *txn.Tx, i, j int) error) {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range workers {
		r := rand.New(rand.NewPCG(uint64(w), seed))
		wg.Go(func() {
			for range each {
				i := r.IntN(len(rs))
				j := (i + 1 + r.IntN(len(rs)-1)) % len(rs)
				if err := s.Dosync(ctx, func(tx *txn.Tx) error { return body(tx, i, j) }); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func checkTotal(t *testing.T, s *stm.STM, rs []*refs.Ref[int], want int) {
	t.Helper()
	total := 0
	if err := s.Dosync(context.Background(), func(tx *txn.Tx) error {
		total = 0
		for _, r := range rs {
			total += r.Get(tx)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if total != want {
		t.Fatalf("total %d, want %d", total, want)
	}
}

// TestTurnsReleasedByHolderEnd: a transaction waiting for a turn gets it
// when the holder's Dosync ends in any way (a panic in its function, an
// error), and a waiter whose ctx ends stops waiting with the ctx's error
// and leaves the queue.
func TestTurnsReleasedByHolderEnd(t *testing.T) {
	holders := map[string]func(tx *txn.Tx) error{
		"panic": func(*txn.Tx) error { panic("holder panics") },
		"error": func(*txn.Tx) error { return errors.New("holder fails") },
	}
	for name, end := range holders {
		t.Run(name, func(t *testing.T) {
			s, rs := openTurns(t)
			a := rs[0]
			ctx := context.Background()
			proceed, first := holdTurn(s, a, end)
			second := make(chan error, 1)
			go func() { second <- s.Dosync(ctx, func(tx *txn.Tx) error { a.Alter(tx, inc); return nil }) }()
			untilWaits(t, s, 1)
			close(proceed)
			<-first
			if err := <-second; err != nil {
				t.Fatal(err)
			}
			if v, _ := a.Deref(ctx); v != 101 {
				t.Fatalf("a = %d, want 101 (only the waiter committed)", v)
			}
		})
	}
	t.Run("waiterCtx", func(t *testing.T) {
		s, rs := openTurns(t)
		a := rs[0]
		ctx := context.Background()
		proceed, first := holdTurn(s, a, commits)
		wctx, cancel := context.WithCancel(ctx)
		second := make(chan error, 1)
		go func() { second <- s.Dosync(wctx, func(tx *txn.Tx) error { a.Alter(tx, inc); return nil }) }()
		untilWaits(t, s, 1)
		cancel()
		if err := <-second; !errors.Is(err, context.Canceled) {
			t.Fatalf("waiter: %v, want context.Canceled", err)
		}
		close(proceed)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		// The canceled waiter left the queue: the next claim is served.
		if err := s.Dosync(ctx, func(tx *txn.Tx) error { a.Alter(tx, dec); return nil }); err != nil {
			t.Fatal(err)
		}
		if v, _ := a.Deref(ctx); v != 98 {
			t.Fatalf("a = %d, want 98", v)
		}
	})
}

// TestTurnsNoDeadlock: two goroutines alter two refs in opposite orders,
// many times, yielding between the two: local turns never leave them
// waiting for each other (the older is served; the younger gives way when
// it would wait while the older waits for it).
func TestTurnsNoDeadlock(t *testing.T) {
	s, rs := openTurns(t)
	a, b := rs[0], rs[1]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 2000
	var wg sync.WaitGroup
	for _, order := range [][2]*refs.Ref[int]{{a, b}, {b, a}} {
		wg.Go(func() {
			for range n {
				if err := s.Dosync(ctx, func(tx *txn.Tx) error {
					order[0].Alter(tx, dec)
					runtime.Gosched()
					order[1].Alter(tx, inc)
					return nil
				}); err != nil {
					t.Errorf("deadlocked or failed: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	checkTotal(t, s, rs, 300)
}

// TestTurnsNestedDosyncDoesNotWaitForItsOuter: a Dosync that does not join
// the transaction of its goroutine (another ctx) never waits for that
// transaction's turns, which cannot be released before it returns: it
// commits, and the outer one retries on its newer version.
func TestTurnsNestedDosyncDoesNotWaitForItsOuter(t *testing.T) {
	s, rs := openTurns(t)
	a := rs[0]
	ctx := context.Background()
	runs := 0
	if err := s.Dosync(ctx, func(tx *txn.Tx) error {
		runs++
		a.Alter(tx, dec)
		if runs == 1 {
			if err := s.Dosync(ctx, func(tx2 *txn.Tx) error { a.Alter(tx2, inc); return nil }); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if v, _ := a.Deref(ctx); v != 100 || runs != 2 {
		t.Fatalf("a = %d after %d runs, want 100 after 2", v, runs)
	}
}

// TestTurnsCheckThenAlter: transfers written as "Get the source, check
// it, Alter both" (the read comes before the claim of Alter). Once an
// attempt of the process has read a ref and then claimed it to write, the
// next plain reads of that ref claim its turn first, so they read the
// value of the transaction they waited for: only the attempts that read
// a ref before the first such claim can fail on the backend (at most one
// per worker and account), not one in every collision.
func TestTurnsCheckThenAlter(t *testing.T) {
	s, rs := openTurns(t)
	const workers, each = 8, 300
	transfers(t, s, rs, workers, each, 11, func(tx *txn.Tx, i, j int) error {
		if rs[i].Get(tx) < -1000000 {
			return errors.New("overdrawn")
		}
		runtime.Gosched()
		rs[i].Alter(tx, dec)
		rs[j].Alter(tx, inc)
		return nil
	})
	st := s.Stats()
	if bound := int64(workers * len(rs)); st.Conflicts > bound || st.Commits != workers*each {
		t.Fatalf("conflicts %d (at most %d expected), commits %d (want %d)", st.Conflicts, bound, st.Commits, workers*each)
	}
	checkTotal(t, s, rs, 300)
}

// TestTurnsOffInProcessByDefault: with an in-process coordinator
// (backend/mem) local turns are off unless asked for: contended
// read-modify-writes never wait for a turn; with WithLocalTurns they do.
func TestTurnsOffInProcessByDefault(t *testing.T) {
	for _, on := range []bool{false, true} {
		ctx := context.Background()
		be := mem.New()
		opts := []stm.Option{stm.WithSweepInterval(0)}
		if on {
			opts = append(opts, stm.WithLocalTurns())
		}
		s, err := stm.Open(ctx, be, opts...)
		if err != nil {
			t.Fatal(err)
		}
		r, err := refs.New(ctx, s, "counter", 0)
		if err != nil {
			t.Fatal(err)
		}
		release, done := holdTurn(s, r, commits)
		second := make(chan error, 1)
		// Bounded so that a wait where none is expected fails the test
		// (with its ctx's error) instead of hanging it.
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		go func() { second <- s.Dosync(sctx, func(tx *txn.Tx) error { r.Alter(tx, inc); return nil }) }()
		if on {
			untilWaits(t, s, 1) // the second waits for the first's turn
		} else if err := <-second; err != nil { // it commits at once: nothing holds it
			t.Fatal(err)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if on {
			if err := <-second; err != nil {
				t.Fatal(err)
			}
		}
		if w := s.Stats().TurnWaits; on != (w > 0) {
			t.Errorf("WithLocalTurns %v: %d waits for a turn", on, w)
		}
		_ = s.Close()
		_ = be.Close()
	}
}
