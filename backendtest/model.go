package backendtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/faulty"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/stm"
)

// modelTimeout bounds one model run, so a hung engine fails the check
// instead of the whole test binary.
const modelTimeout = 30 * time.Second

// testModel: property tests with rapid. Each check draws a whole plan
// (clients, their transactions and ops, fast or general path, which refs
// live on a second backend), runs it, reads every ref's history and checks
// snapshot isolation with first-committer-wins (checkModel). The two
// drivers are made once and shared by all checks, each check under fresh
// ref names, so a server backend serves them all. Use -rapid.checks to
// run fewer (CI against servers) or more checks.
func testModel(t *testing.T, newDriver NewDriver) {
	t.Run("SnapshotIsolation", func(t *testing.T) {
		b1, b2 := newDriver(t), newDriver(t)
		stms := map[bool]*stm.STM{} // by General
		for _, general := range []bool{false, true} {
			s, err := openModelSTM(context.Background(), b1, b2, general)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			stms[general] = s
		}
		var sum modelSummary
		defer func() { t.Logf("exercised: %s", sum.String()) }()
		rapid.Check(t, func(rt *rapid.T) {
			p := genPlan(genOpts{mixed: true, atomB2: true, watches: true}).Draw(rt, "plan")
			ctx, cancel := context.WithTimeout(context.Background(), modelTimeout)
			defer cancel()
			h, err := runPlan(ctx, stms[p.General], b2, modelPrefix("model"), p)
			if err != nil {
				rt.Fatalf("running the plan: %v", err)
			}
			sum.add(p, h)
			if vs := checkModel(h); len(vs) > 0 {
				rt.Fatalf("%d violation(s):\n%s\nhistory:\n%s", len(vs), strings.Join(vs, "\n"), h.dump())
			}
		})
	})
	t.Run("CheckerCatchesMutations", func(t *testing.T) { testModelMutations(t, newDriver) })
	t.Run("BrokenEngineCaught", func(t *testing.T) { testModelBroken(t, newDriver) })
	t.Run("ForeignAtomCaught", func(t *testing.T) { testModelForeignAtom(t, newDriver) })
	t.Run("WatchStartRaceCaught", func(t *testing.T) { testModelWatchRace(t, newDriver) })
	t.Run("DelayedGiveBackCaught", func(t *testing.T) { testModelGiveBack(t, newDriver) })
	t.Run("EnsureHoldsOffOlderWriter", func(t *testing.T) { testEnsureOlderWriter(t, newDriver) })
}

// testEnsureOlderWriter checks I3 for Ensure by construction (docs/design.md, I3:
// "of two concurrent attempts that Alter, RefSet or Ensure the same ref, at
// most one commits"): a writer reads at RP, then a transaction that ensures
// the ref (and commutes the counter, so it commits) commits at CP > RP,
// then the writer sets the ref. The writer must retry. (Clojure's ensure
// would let it commit: it holds writers off only until the ensurer
// commits. Epochal remembers the ref's newest ensuring commit point, so an
// ensure keeps protecting the ensurer's decision; see docs/design.md.)
func testEnsureOlderWriter(t *testing.T, newDriver NewDriver) {
	ensurer := []planOp{{Kind: opEnsure, Ref: 0}, {Kind: opCommute, Delta: 1}}
	ops := []planOp{{Kind: opNested, Inner: ensurer}, {Kind: opWrite, Ref: 0}}
	for _, tc := range []struct {
		name    string
		general bool
		onB2    []bool
	}{
		{"OnePhase", false, nil},
		{"General", true, nil},
		{"Mixed", false, []bool{true, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b1, b2 := newDriver(t), newDriver(t)
			p := modelPlan{Refs: 2, General: tc.general, OnB2: tc.onB2, Clients: [][]planTxn{{{Ops: ops}}}}
			ctx, cancel := context.WithTimeout(context.Background(), modelTimeout)
			defer cancel()
			h, err := runPlanOnce(ctx, b1, b2, p)
			if err != nil {
				t.Fatal(err)
			}
			if vs := checkModel(h); len(vs) > 0 {
				t.Fatalf("plan %#v: %d violation(s):\n%s\nhistory:\n%s"+
					"An ensurer committed between an older writer's read point and its commit, and the writer was not made to retry (I3).",
					p, len(vs), strings.Join(vs, "\n"), h.dump())
			}
		})
	}
}

// testModelBroken proves checkModel can fail: fixed plans whose conflict
// is made by construction (a nested independent Dosync commits between
// the outer attempt's read and its commit) are run on the correct engine,
// where the checker must find nothing and the outer must have retried, and
// on an engine with a deliberate protocol bug, where the checker must
// report the violation the bug causes.
func testModelBroken(t *testing.T, newDriver NewDriver) {
	rmw := []planOp{{Kind: opRead, Ref: 0}, {Kind: opNested, Ref: 0}, {Kind: opWrite, Ref: 0}}
	lostCommute := []planOp{{Kind: opCommute, Delta: 1}, {Kind: opNested, Delta: 2}}
	cases := []struct {
		name   string
		ops    []planOp
		onB2   []bool
		fault  engine.Faults
		want   string // a violation the fault must cause starts with this
		naming string // and contains this
		nFixed int    // attempts of the outer transaction on the correct engine
	}{
		{"LostUpdate/OnePhase", rmw, nil, engine.Faults{SkipReadPointCheck: true}, "I3 first committer wins", "c0-t0 attempt", 2},
		{"LostUpdate/General", rmw, nil, engine.Faults{SkipReadPointCheck: true}, "I3 first committer wins", "c0-t0 attempt", 2},
		{"LostUpdate/Mixed", rmw, []bool{true, false, false}, engine.Faults{SkipReadPointCheck: true}, "I3 first committer wins", "c0-t0 attempt", 2},
		// On the fast path a commute computed at read time is sent as a
		// checked write, so it takes both faults to lose an increment there.
		{"LostCommute/OnePhase", lostCommute, nil, engine.Faults{NoCommuteRecompute: true, SkipReadPointCheck: true}, "commute:", "", 1},
		{"LostCommute/General", lostCommute, nil, engine.Faults{NoCommuteRecompute: true}, "commute:", "", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b1, b2 := newDriver(t), newDriver(t)
			p := modelPlan{Refs: 2, General: strings.HasSuffix(tc.name, "/General"), OnB2: tc.onB2,
				Clients: [][]planTxn{{{Ops: tc.ops}}}}
			ctx, cancel := context.WithTimeout(context.Background(), modelTimeout)
			defer cancel()

			h, err := runPlanOnce(ctx, b1, b2, p)
			if err != nil {
				t.Fatalf("correct engine: %v", err)
			}
			if vs := checkModel(h); len(vs) > 0 {
				t.Fatalf("correct engine, plan %#v: %d violation(s):\n%s\nhistory:\n%s", p, len(vs), strings.Join(vs, "\n"), h.dump())
			}
			if n := len(modelTxn(t, h, "c0-t0").Attempts); n != tc.nFixed {
				t.Fatalf("correct engine: the outer transaction ran %d attempt(s), want %d (the nested commit must force exactly one retry of a read-modify-write, none of a commute):\n%s", n, tc.nFixed, h.dump())
			}

			h, err = runPlanOnce(ctx, b1, b2, p, engine.WithFaults(tc.fault))
			if err != nil {
				t.Fatalf("broken engine: %v", err)
			}
			vs := checkModel(h)
			found := false
			for _, v := range vs {
				if strings.HasPrefix(v, tc.want) && strings.Contains(v, tc.naming) {
					found = true
				}
			}
			if !found {
				t.Fatalf("engine with faults %+v: the checker did not report %q (naming %q); it reported %d violation(s):\n%s\nhistory:\n%s",
					tc.fault, tc.want, tc.naming, len(vs), strings.Join(vs, "\n"), h.dump())
			}
			t.Logf("faults %+v caught:\n%s", tc.fault, strings.Join(vs, "\n"))
		})
	}
}

// testModelForeignAtom: a fixed plan that swaps an atom on the second
// backend (whose clock is ahead of the coordinator's) and then runs a
// read-modify-write with a nested commit in between passes the checker on
// the correct engine, and fails it on one whose atoms raise the read point
// with their foreign points (engine.Faults.ObserveForeignPoints).
func testModelForeignAtom(t *testing.T, newDriver NewDriver) {
	rmw := []planOp{{Kind: opRead, Ref: 0}, {Kind: opNested, Ref: 0}, {Kind: opWrite, Ref: 0}}
	p := modelPlan{Refs: 2, OnB2: []bool{false, false, false}, Clients: [][]planTxn{{{Swap: swapB2, Ops: rmw}}}}
	b1, b2 := newDriver(t), newDriver(t)
	ctx, cancel := context.WithTimeout(context.Background(), modelTimeout)
	defer cancel()
	if ahead, err := advanceDriverPast(ctx, b2, b1, modelPrefix("ahead")); err != nil || !ahead {
		t.Logf("%s's clock cannot be kept ahead of %s's (%v): the bug has no effect in this pair", b2.ID(), b1.ID(), err)
		return
	}
	h, err := runPlanOnce(ctx, b1, b2, p)
	if err != nil {
		t.Fatal(err)
	}
	if vs := checkModel(h); len(vs) > 0 {
		t.Fatalf("correct engine: %d violation(s):\n%s\nhistory:\n%s", len(vs), strings.Join(vs, "\n"), h.dump())
	}
	h, err = runPlanOnce(ctx, b1, b2, p, engine.WithFaults(engine.Faults{ObserveForeignPoints: true}))
	if err != nil {
		t.Fatal(err)
	}
	vs := checkModel(h)
	if !slices.ContainsFunc(vs, func(v string) bool {
		return strings.HasPrefix(v, "I1") || strings.HasPrefix(v, "I2") || strings.HasPrefix(v, "I3")
	}) {
		t.Fatalf("with ObserveForeignPoints the checker reported %d violation(s), none of I1-I3:\n%s\nhistory:\n%s", len(vs), strings.Join(vs, "\n"), h.dump())
	}
	t.Logf("ObserveForeignPoints caught:\n%s", strings.Join(vs, "\n"))
}

// testModelWatchRace: two clients each add a watch on x0 and then set it,
// while the watcher's first read of the history is held until a commit
// happens (or a while passes). The correct engine tells both watches of
// both commits; one whose second AddWatch returns before the start point
// is fixed (engine.Faults.WatchStartRace) fails the checker's watch rules.
func testModelWatchRace(t *testing.T, newDriver NewDriver) {
	one := []planTxn{{Watch: addWatch, Ops: []planOp{{Kind: opWrite, Ref: 0}}}}
	p := modelPlan{Refs: 2, Clients: [][]planTxn{one, one}}
	run := func(faults engine.Faults) *modelHistory {
		raw := newDriver(t)
		w := faulty.Wrap(raw)
		var armed atomic.Bool
		armed.Store(true)
		w.SetHook(func(c faulty.Call) faulty.Fault {
			if c.Op == faulty.OpVersions && armed.CompareAndSwap(true, false) {
				// Until a commit has landed (the clock moved) or a while
				// passed: gives the race its chance, never needed to pass.
				ctx := context.Background()
				start, err := raw.ReadPoint(ctx)
				deadline := time.Now().Add(200 * time.Millisecond)
				for err == nil && time.Now().Before(deadline) {
					var now clock.Point
					if now, err = raw.ReadPoint(ctx); now > start {
						break
					}
					time.Sleep(time.Millisecond)
				}
			}
			return faulty.Pass
		})
		ctx, cancel := context.WithTimeout(context.Background(), modelTimeout)
		defer cancel()
		h, err := runPlanOnce(ctx, w, newDriver(t), p, engine.WithFaults(faults))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	h := run(engine.Faults{})
	if vs := checkModel(h); len(vs) > 0 {
		t.Fatalf("correct engine: %d violation(s):\n%s\nhistory:\n%s", len(vs), strings.Join(vs, "\n"), h.dump())
	}
	h = run(engine.Faults{WatchStartRace: true})
	vs := checkModel(h)
	if !slices.ContainsFunc(vs, func(v string) bool { return strings.HasPrefix(v, "watch ") }) {
		t.Fatalf("with WatchStartRace the checker reported no watch violation (%d others):\n%s\nhistory:\n%s", len(vs), strings.Join(vs, "\n"), h.dump())
	}
	t.Logf("WatchStartRace caught:\n%s", strings.Join(vs, "\n"))
}

// modelSummary adds up what the checks exercised, so a run's log shows
// that conflicts, retries, aborts and both commit paths really happened.
type modelSummary struct {
	checks, mixed, committed, aborted, attempts int
	swaps, watches, deliveries                  int
	stats                                       stm.Stats
}

func (s *modelSummary) add(p modelPlan, h *modelHistory) {
	s.checks++
	if slices.Contains(p.OnB2, true) {
		s.mixed++
	}
	for _, t := range h.Txns {
		s.attempts += len(t.Attempts)
		switch t.Status {
		case txnCommitted:
			s.committed++
		case txnAborted:
			s.aborted++
		}
	}
	for _, sw := range h.Swaps {
		s.swaps += len(sw)
	}
	for _, w := range h.Watches {
		s.watches++
		s.deliveries += len(w.deliveries())
	}
	st := &s.stats
	st.Commits += h.Stats.Commits
	st.ReadOnly += h.Stats.ReadOnly
	st.Retries += h.Stats.Retries
	st.Conflicts += h.Stats.Conflicts
	st.Yields += h.Stats.Yields
	st.OnePhase += h.Stats.OnePhase
	st.General += h.Stats.General
	st.Recomputes += h.Stats.Recomputes
	st.Helped += h.Stats.Helped
	st.Waits += h.Stats.Waits
}

func (s *modelSummary) String() string {
	return fmt.Sprintf("%d runs (%d mixed-backend), %d transactions committed, %d aborted, %d attempts; %d atom swaps, %d watches told of %d changes; engine: %d commits (%d one-phase, %d general, %d read-only), %d retries, %d conflicts, %d yields, %d waits, %d commute recomputes, %d helped",
		s.checks, s.mixed, s.committed, s.aborted, s.attempts, s.swaps, s.watches, s.deliveries, s.stats.Commits, s.stats.OnePhase, s.stats.General, s.stats.ReadOnly,
		s.stats.Retries, s.stats.Conflicts, s.stats.Yields, s.stats.Waits, s.stats.Recomputes, s.stats.Helped)
}

// runPlanOnce runs p on an STM of its own, opened with extra options.
func runPlanOnce(ctx context.Context, b1, b2 backend.Driver, p modelPlan, extra ...stm.Option) (*modelHistory, error) {
	s, err := openModelSTM(ctx, b1, b2, p.General, extra...)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return runPlan(ctx, s, b2, modelPrefix("fixed"), p)
}

// testModelGiveBack: client A commutes the counter (on the coordinator),
// client B commutes it and writes x1 (on the second backend), both on the
// general path. The first commit point stalls until the second backend
// has seen a Resolve (or a while passes): when A got there first, B meets
// A's commute intent while it took x1, gives x1 back, waits for A (a
// commute waits for a commute) and takes both again under the same id. Every Resolve of the second backend arrives a second time right
// after its next call (faulty.Duplicate: a delayed copy of a request). The
// correct engine's give-back names its Lock round, so the checker finds
// nothing; an engine whose give-back drops every round
// (engine.Faults.GiveBackEveryRound) loses x1's write taken again, and the
// checker reports it (I1: a committed transaction without its versions).
func testModelGiveBack(t *testing.T, newDriver NewDriver) {
	const runs = 12
	a := []planTxn{{Ops: []planOp{{Kind: opCommute, Delta: 1}}}}
	b := []planTxn{{Ops: []planOp{{Kind: opCommute, Delta: 2}, {Kind: opWrite, Ref: 1}}}}
	p := modelPlan{Refs: 2, General: true, OnB2: []bool{false, true, false}, Clients: [][]planTxn{a, b}}
	raw1, raw2 := newDriver(t), newDriver(t)
	if raw1.ID() > raw2.ID() { // the counter's backend is locked first
		raw1, raw2 = raw2, raw1
	}
	b1, b2 := faulty.Wrap(raw1), faulty.Wrap(raw2)
	run := func(faults engine.Faults) []string {
		var armed atomic.Bool
		armed.Store(true)
		resolved := make(chan struct{})
		var once sync.Once
		b1.SetHook(func(c faulty.Call) faulty.Fault {
			if c.Op == faulty.OpCommitRecord && armed.CompareAndSwap(true, false) {
				// Gives the give-back its chance; never needed to pass.
				select {
				case <-resolved:
				case <-time.After(300 * time.Millisecond):
				}
			}
			return faulty.Pass
		})
		b2.SetHook(func(c faulty.Call) faulty.Fault {
			if c.Op == faulty.OpResolve {
				once.Do(func() { close(resolved) })
				return faulty.Duplicate
			}
			return faulty.Pass
		})
		ctx, cancel := context.WithTimeout(context.Background(), modelTimeout)
		defer cancel()
		h, err := runPlanOnce(ctx, b1, b2, p, engine.WithFaults(faults))
		if err != nil {
			t.Fatal(err)
		}
		vs := checkModel(h)
		if len(vs) > 0 && faults == (engine.Faults{}) {
			t.Fatalf("%d violation(s) with delayed copies of every Resolve:\n%s\nhistory:\n%s", len(vs), strings.Join(vs, "\n"), h.dump())
		}
		return vs
	}
	for range runs {
		run(engine.Faults{})
	}
	// A run reaches the give-back only when b meets a's intent; how often
	// it does depends on scheduling (a loaded machine staggers the two
	// clients). Once it does, the delayed copy lands after the retake
	// (faulty.Duplicate), so the bug shows. Up to seekRuns runs, stopping
	// at the first report.
	const seekRuns = 100
	for i := range seekRuns {
		if vs := run(engine.Faults{GiveBackEveryRound: true}); len(vs) > 0 {
			t.Logf("GiveBackEveryRound caught in run %d:\n%s", i+1, vs[0])
			return
		}
	}
	t.Fatalf("with GiveBackEveryRound, %d runs of delayed give-backs went unreported", seekRuns)
}
