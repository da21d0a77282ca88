package backendtest

import (
	"errors"
	"fmt"
	"sync"
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

var faults = []struct {
	name string
	f    faulty.Fault
}{
	{"crash-before", faulty.Crash},     // the committer dies before step k reaches the store
	{"crash-after", faulty.CrashAfter}, // step k is applied, then the committer dies
	{"fail-before", faulty.FailBefore}, // step k fails, nothing applied; the committer lives on
	{"fail-after", faulty.FailAfter},   // step k is applied but reported failed: an unknown outcome
}

const lease = 10 * time.Second

// testCrash stops a transfer's commit at every step k, for every kind of
// fault, on the fast path, the general path and across two backends, then
// checks what another process sees (I4 no zombie state, I7 no double apply):
// the total is conserved, the transfer applied at most once (exactly once
// if its Dosync said so), readers never wait, and no ref stays locked
// longer than the lease.
func testCrash(t *testing.T, newDriver NewDriver) {
	for _, mode := range []struct {
		name           string
		general, mixed bool
	}{{"fastpath", false, false}, {"general", true, false}, {"mixed", true, true}} {
		t.Run(mode.name, func(t *testing.T) {
			steps := crashRun(t, newDriver, mode.general, mode.mixed, 0, faulty.Pass)
			if steps < 1 {
				t.Fatalf("a transfer made %d mutating calls", steps)
			}
			for k := 1; k <= steps; k++ {
				for _, f := range faults {
					t.Run(fmt.Sprintf("step%d/%s", k, f.name), func(t *testing.T) {
						crashRun(t, newDriver, mode.general, mode.mixed, k, f.f)
					})
				}
			}
		})
	}
}

// crashRun runs one transfer in process P1 with fault f at mutating call k
// (k == 0: no fault) and checks the aftermath from process P2. It returns
// how many mutating calls P1's commit made.
func crashRun(t *testing.T, newDriver NewDriver, general, mixed bool, k int, f faulty.Fault) int {
	rawA := newDriver(t)
	rawB := rawA
	if mixed {
		rawB = newDriver(t)
	}
	wA, wB := faulty.Wrap(rawA), faulty.Wrap(rawB)
	if !mixed {
		wB = wA
	}
	wall := clock.NewFake(time.Now())
	opts := []stm.Option{engine.WithWallClock(wall), stm.WithLease(lease), stm.WithMaxRetries(20)}
	if general {
		opts = append(opts, engine.WithGeneralPath())
	}
	an, bn := uniq("a"), uniq("b")

	// Process P1, whose connections all go through the fault injectors.
	p1 := open(t, wA, opts...)
	a1 := newRef(t, p1, an, 100)
	b1 := newRef(t, p1, bn, 100, refs.On(wB))

	var mu sync.Mutex
	calls, crashed := 0, false
	hook := func(c faulty.Call) faulty.Fault {
		mu.Lock()
		defer mu.Unlock()
		if crashed {
			return faulty.Crash // a dead process sends nothing, anywhere
		}
		if !c.Op.Mutating() {
			return faulty.Pass
		}
		calls++
		if calls != k {
			return faulty.Pass
		}
		if f == faulty.Crash || f == faulty.CrashAfter {
			crashed = true
		}
		return f
	}
	wA.SetHook(hook)
	wB.SetHook(hook)
	runs := 0
	err1 := p1.Dosync(tctx(t), func(tx *txn.Tx) error {
		runs++
		a1.Alter(tx, func(v int) int { return v - 10 })
		b1.Commute(tx, func(v int) int { return v + 10 })
		return nil
	})
	wA.SetHook(nil)
	wB.SetHook(nil)
	mu.Lock()
	steps := calls
	mu.Unlock()
	if k == 0 {
		if err1 != nil || runs != 1 {
			t.Fatalf("the clean transfer: %v after %d runs", err1, runs)
		}
		return steps
	}
	dead := f == faulty.Crash || f == faulty.CrashAfter
	if !dead && errors.Is(err1, stm.ErrOutcomeUnknown) {
		t.Fatalf("a single failed call left the outcome unknown to a live committer: %v", err1)
	}

	// Process P2, on the same storage.
	p2 := open(t, rawA, opts...)
	a2 := newRef(t, p2, an, 0)
	b2 := newRef(t, p2, bn, 0, refs.On(rawB))
	snapshot := func() (int, int) {
		t.Helper()
		var a, b int
		if err := p2.Dosync(tctx(t), func(tx *txn.Tx) error {
			a, b = a2.Get(tx), b2.Get(tx)
			return nil
		}); err != nil {
			t.Fatalf("P2 snapshot read: %v", err)
		}
		if a+b != 200 {
			t.Fatalf("torn state after the fault (P1: %v): a=%d b=%d", err1, a, b)
		}
		return a, b
	}
	// Readers never wait for a dead writer: this read comes before its
	// lease runs out.
	a, _ := snapshot()
	applied := a == 90
	switch {
	case !applied && a != 100:
		t.Fatalf("a = %d: the transfer applied more than once or partly", a)
	case err1 == nil && !applied:
		t.Fatalf("lost committed write: Dosync returned nil but a = %d", a)
	case err1 != nil && applied && !errors.Is(err1, stm.ErrOutcomeUnknown):
		t.Fatalf("Dosync returned %v but the transfer applied", err1)
	}
	if dead {
		// Nothing may stay locked past the lease.
		wall.Advance(lease + time.Second)
	}
	if err := p2.Dosync(tctx(t), func(tx *txn.Tx) error {
		a2.Alter(tx, func(v int) int { return v - 10 })
		b2.Alter(tx, func(v int) int { return v + 10 })
		return nil
	}); err != nil {
		t.Fatalf("P2 could not write after the fault (P1: %v): %v", err1, err)
	}
	if a2, _ := snapshot(); (applied && a2 != 80) || (!applied && a2 != 90) {
		t.Fatalf("after P2's transfer a = %d (P1's applied: %v)", a2, applied)
	}
	// Recovery leaves no record with work to do and no intent behind.
	wall.Advance(lease + time.Second)
	if _, err := p2.Recover(tctx(t)); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	recs, err := rawA.ListRecords(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Status == backend.Pending || (r.Status == backend.Committed && len(r.Refs) > 0) {
			t.Errorf("record left after recovery: %+v", r)
		}
	}
	for _, x := range []struct {
		d    backend.Driver
		name string
	}{{rawA, an}, {rawB, bn}} {
		vr, err := x.d.Versions(tctx(t), x.name)
		if err != nil {
			t.Fatal(err)
		}
		if vr.Intent != nil {
			t.Errorf("intent left on %s after recovery: %+v", x.name, vr.Intent)
		}
	}
	return steps
}
