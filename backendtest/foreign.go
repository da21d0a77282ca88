package backendtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// testForeignClocks runs ForeignClocks with two backends of the driver under
// test.
func testForeignClocks(t *testing.T, newDriver NewDriver) {
	ForeignClocks(t, newDriver(t), newDriver(t))
}

// ForeignClocks checks that points of two clocks never mix. Atoms, promises
// and delays change by compare-and-sets on their own backend, at points of
// that backend's clock; transactions read at points of the coordinator's
// clock. A reference of the first kind on other, a backend that is not the
// coordinator, must not move the read points of transactions (a review
// found it did: every later transaction then read at a foreign point far
// ahead of the coordinator's commits, so "a version newer than the read
// point" never fired, and updates were lost and reads torn).
//
// other's clock is first moved well past coord's, as a ZooKeeper clock (a
// zxid) always is. Then, after one change of an atom, a promise or a delay
// on other, two constructions that force a conflict by nesting an
// independent commit inside an attempt must still see it: a
// read-modify-write retries (LostUpdate), and a reader of two refs always
// written together sees both or neither (TornRead). The same
// constructions on an engine with the bug reintroduced
// (engine.Faults.ObserveForeignPoints) must fail, which shows they can.
// Backend packages call it with drivers of two kinds (Redis and
// ZooKeeper).
func ForeignClocks(t *testing.T, coord, other backend.Driver) {
	ahead := advancePast(t, other, coord)
	for _, kind := range []string{"atom", "promise", "delay"} {
		for _, p := range paths {
			t.Run(kind+"/"+p.name, func(t *testing.T) {
				t.Run("LostUpdate", func(t *testing.T) {
					s := open(t, coord, p.opts...)
					touchForeign(t, s, other, kind)
					if n, runs := lostUpdate(t, s); n != 2 || runs != 2 {
						t.Fatalf("after a %s changed on another backend: counter = %d after 2 increments (the first ran %d times), want 2 (and 2 runs): the foreign point raised the read point", kind, n, runs)
					}
				})
				t.Run("TornRead", func(t *testing.T) {
					s := open(t, coord, p.opts...)
					touchForeign(t, s, other, kind)
					if x, y := tornRead(t, s); x != y {
						t.Fatalf("after a %s changed on another backend: read x=%d, y=%d of two refs always written together", kind, x, y)
					}
				})
			})
		}
	}
	t.Run("SeededBugIsCaught", func(t *testing.T) {
		if !ahead {
			// other's clock is far behind coord's (a ZooKeeper
			// coordinator's zxids are above 2^32), or is the same clock
			// (two roots on one ZooKeeper ensemble): its points cannot
			// raise the read point past coord's commits even with the bug.
			t.Logf("%s's clock cannot be moved past %s's for good: the bug has no effect in this pair", other.ID(), coord.ID())
			return
		}
		s := open(t, coord, engine.WithFaults(engine.Faults{ObserveForeignPoints: true}))
		touchForeign(t, s, other, "atom")
		if n, _ := lostUpdate(t, s); n != 1 {
			t.Fatalf("with ObserveForeignPoints the counter is %d, want 1 (a lost update): the construction no longer reaches the bug", n)
		}
		s = open(t, coord, engine.WithFaults(engine.Faults{ObserveForeignPoints: true}))
		touchForeign(t, s, other, "promise")
		if x, y := tornRead(t, s); x == y {
			t.Fatalf("with ObserveForeignPoints the reader saw x=%d, y=%d, want a torn read: the construction no longer reaches the bug", x, y)
		}
	})
	t.Run("OwnFloorPerClock", func(t *testing.T) {
		// The newest point of other's clock this process saw is kept
		// apart (a watcher of an atom on other that cannot start in time
		// starts from it): after swaps, that point is the last swap's.
		s := open(t, coord)
		a, err := refs.NewAtom(tctx(t), s, uniq("foreign-atom"), 0, refs.On(other))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if _, err := a.Swap(tctx(t), func(v int) int { return v + 1 }); err != nil {
				t.Fatal(err)
			}
		}
		h, err := a.History(tctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if got := engine.Of(s).Env().FloorOf(other); got != h[0].Point {
			t.Fatalf("floor of %s's clock = %d, want the last swap's point %d", other.ID(), got, h[0].Point)
		}
	})
}

// advancePast moves drv's clock on, by one-phase commits of a scratch ref
// through the driver itself (no STM sees those points), until it is well
// past coord's, and reports whether it got there (at most 200 commits) and
// coord's clock is not the same clock (two ZooKeeper roots on one ensemble
// share the zxids, so coord's next commit is past drv's anyway).
func advancePast(t *testing.T, drv, coord backend.Driver) bool {
	t.Helper()
	target, err := coord.ReadPoint(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	target += 50
	commit := scratchCommitter(t, drv)
	for i := 0; i < 200; i++ {
		if cp := commit(); cp > target {
			return scratchCommitter(t, coord)() < cp
		}
	}
	return false
}

// scratchCommitter returns a function that commits a new version of a
// scratch ref of drv through the driver itself and returns its point.
func scratchCommitter(t *testing.T, drv backend.Driver) func() clock.Point {
	t.Helper()
	one, ok := drv.(backend.OnePhase)
	if !ok {
		t.Fatalf("%s has no one-phase commit", drv.ID())
	}
	name := uniq("clock-advance")
	if _, err := drv.Create(tctx(t), backend.CreateRequest{Name: name, Kind: backend.KindRef, Value: mustEncode(t, 0)}); err != nil {
		t.Fatal(err)
	}
	i := 0
	return func() clock.Point {
		i++
		res, err := one.CommitOnePhase(tctx(t), backend.OnePhaseRequest{Txn: fmt.Sprintf("%s-%d", name, i), RP: ^clock.Point(0), Time: time.Now(),
			Items: []backend.OnePhaseItem{{Name: name, Mode: backend.ModeWrite, Value: mustEncode(t, i)}}})
		if err != nil || res.Status != backend.Committed {
			t.Fatalf("advancing %s's clock: %+v, %v", drv.ID(), res, err)
		}
		return res.CP
	}
}

// touchForeign changes a reference of kind on other once, through s.
func touchForeign(t *testing.T, s *stm.STM, other backend.Driver, kind string) {
	t.Helper()
	ctx := tctx(t)
	var err error
	switch kind {
	case "atom":
		var a *refs.Atom[int]
		if a, err = refs.NewAtom(ctx, s, uniq("foreign-atom"), 0, refs.On(other)); err == nil {
			_, err = a.Swap(ctx, func(v int) int { return v + 1 })
		}
	case "promise":
		var p *refs.Promise[int]
		if p, err = refs.NewPromise[int](ctx, s, uniq("foreign-promise"), refs.On(other)); err == nil {
			_, err = p.Deliver(ctx, 1)
		}
	case "delay":
		var d *refs.Delay[int]
		if d, err = refs.NewDelay(ctx, s, uniq("foreign-delay"), func(context.Context) (int, error) { return 1, nil }, refs.On(other)); err == nil {
			_, err = d.Deref(ctx)
		}
	}
	if err != nil {
		t.Fatalf("changing a %s on %s: %v", kind, other.ID(), err)
	}
}

// lostUpdate increments a counter twice, the second time by a Dosync nested
// (independently, not joined) inside the first's first attempt, between its
// read and its write: the first must retry. It returns the counter and how
// often the first function ran.
func lostUpdate(t *testing.T, s *stm.STM) (int, int) {
	t.Helper()
	ctx := tctx(t)
	c := newRef(t, s, uniq("ctr"), 0)
	runs := 0
	err := s.Dosync(ctx, func(tx *txn.Tx) error {
		runs++
		v := c.Get(tx)
		if runs == 1 {
			if err := s.Dosync(ctx, func(tx *txn.Tx) error { c.Alter(tx, func(v int) int { return v + 1 }); return nil }); err != nil {
				return err
			}
		}
		c.Set(tx, v+1)
		return nil
	})
	if err != nil {
		t.Fatalf("increment: %v", err)
	}
	return deref(t, c), runs
}

// tornRead reads x, lets an independent Dosync set x and y to 1 together,
// then reads y, in one attempt: it must see both or neither.
func tornRead(t *testing.T, s *stm.STM) (int, int) {
	t.Helper()
	ctx := tctx(t)
	x, y := newRef(t, s, uniq("x"), 0), newRef(t, s, uniq("y"), 0)
	var vx, vy int
	runs := 0
	err := s.Dosync(ctx, func(tx *txn.Tx) error {
		runs++
		vx = x.Get(tx)
		if runs == 1 {
			if err := s.Dosync(ctx, func(tx *txn.Tx) error { x.Set(tx, 1); y.Set(tx, 1); return nil }); err != nil {
				return err
			}
		}
		vy = y.Get(tx)
		return nil
	})
	if err != nil {
		t.Fatalf("reader: %v", err)
	}
	return vx, vy
}
