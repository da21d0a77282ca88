package backendtest

import (
	"context"
	"flag"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/backend/sched"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
)

// The scheduled model test (docs/design.md, "Tests"): the plans of the
// Model test (genPlan, modelRun.run's recording, checkModel) run on
// backend/mem behind a sched.Scheduler, and rapid draws, at every step,
// which pending driver call proceeds. Only one goroutine runs between two
// steps, so the history is a function of the draws: rapid can shrink an
// interleaving, and replays it exactly.
//
// What keeps the run inside the schedule (see schedOptions):
//   - no background work: the sweeper is off (WithSweepInterval(0)); the
//     wrapper claims LocalClock, so read points are read on the calling
//     goroutine, not by a batcher; leases are not involved (no locks
//     package, no sessions);
//   - refs on one backend only: a transaction spanning two backends runs
//     its lock, stage and roll-forward steps on goroutines of its own
//     (txn/commit.go, each), which the scheduler cannot tell apart from
//     the transaction that started them. Atom swaps on a second backend
//     (wrapped by the same scheduler) are drawn: a swap is one call on the
//     client's own goroutine;
//   - no watches: a watcher reads on a goroutine of its own;
//   - no time-dependent decisions: the wall clock is a clock.Fake that
//     never moves (no lease ever runs out, commit times are fixed),
//     backoff is 1ns (stm.Backoff then waits 0 and draws rand.N(1) == 0),
//     and the resolver's grace before an older writer aborts a younger
//     holder is 1ns, so it aborts on its second look at the holder, always
//     (locks/resolver.go, Wait.Clear: it looks at time.Now, not at the
//     resolver's Wall, and a waiter pauses between looks). Sleeps only
//     delay quiescence: the scheduler waits for a sleeping goroutine like
//     for a computing one.

// schedOptions are the STM options of a scheduled run, on top of
// modelOptions (later options win).
func schedOptions(extra ...stm.Option) []stm.Option {
	return append([]stm.Option{
		stm.WithSweepInterval(0),
		stm.WithBackoff(time.Nanosecond, time.Nanosecond),
		engine.WithWallClock(clock.NewFake(time.Unix(1_700_000_000, 0))),
		stm.WithMaxRetries(1000),
		// A wait for a local turn is no driver call: the scheduler
		// would wait for the waiting actor forever.
		stm.WithoutLocalTurns(),
	}, extra...)
}

// runPlanScheduled runs p with every ref on one fresh mem backend, its
// clients as actors of a new scheduler that asks choose which pending call
// proceeds, and returns the history and the schedule that was followed.
func runPlanScheduled(ctx context.Context, p modelPlan, so sched.Options, choose func(n int) int, extra ...stm.Option) (*modelHistory, string, error) {
	if len(p.OnB2) > 0 {
		return nil, "", fmt.Errorf("scheduled runs use one backend; the plan puts refs on a second")
	}
	sc := sched.New(so)
	drv := sc.Wrap(mem.New())
	defer drv.Close()
	b2 := sc.Wrap(mem.New())
	defer b2.Close()
	s, err := stm.Open(ctx, drv, modelOptions(p.General, schedOptions(extra...)...)...)
	if err != nil {
		return nil, "", err
	}
	defer s.Close()
	engine.Of(s).Env().Resolver.Wait = time.Nanosecond
	engine.Of(s).Register(b2)

	m := &modelRun{s: s}
	for i := range p.Refs {
		r, err := refs.New(ctx, s, fmt.Sprintf("sched/x%d", i), modelInitial(i))
		if err != nil {
			return nil, "", err
		}
		m.xs = append(m.xs, r)
	}
	if m.ctr, err = refs.New(ctx, s, "sched/ctr", modelCounterInit); err != nil {
		return nil, "", err
	}
	if err := m.newAtoms(ctx, "sched", b2, p); err != nil {
		return nil, "", err
	}
	before := s.Stats()
	for c, txs := range p.Clients {
		sc.Go(ctx, c, func(ctx context.Context) {
			for i, tx := range txs {
				m.between(ctx, c, tx)
				m.run(ctx, c, fmt.Sprintf("c%d-t%d", c, i), tx)
			}
		})
	}
	err = sc.Run(choose)
	schedule := sc.Schedule()
	if err != nil {
		return nil, schedule, err
	}
	h, err := m.history(ctx, p, before)
	return h, schedule, err
}

// drawNext makes rapid choose the next call among n pending ones (sorted
// by actor, so a choice shrinks towards the lowest actor).
func drawNext(rt *rapid.T) func(n int) int {
	return func(n int) int { return rapid.IntRange(0, n-1).Draw(rt, "next") }
}

// schedCase is one check of the scheduled model: the plan and whether
// replies are scheduled apart from requests, then the schedule, drawn as
// the run goes.
type schedCase struct {
	plan     modelPlan
	split    bool
	schedule string
	h        *modelHistory
}

// runSchedCase draws and runs one check; it fails rt on an error of the
// run or a violation of checkModel. The details (violations, history,
// schedule) are logged, and the failure message names only the kinds of
// violation: rapid shrinks a case only while it fails with the very same
// message, which a history dump would never repeat.
func runSchedCase(rt *rapid.T, extra ...stm.Option) schedCase {
	c := schedCase{plan: genPlan(genOpts{atomB2: true}).Draw(rt, "plan"), split: rapid.Bool().Draw(rt, "splitReplies")}
	ctx, cancel := context.WithTimeout(context.Background(), modelTimeout)
	defer cancel()
	var err error
	c.h, c.schedule, err = runPlanScheduled(ctx, c.plan, sched.Options{SplitReplies: c.split}, drawNext(rt), extra...)
	if err != nil {
		rt.Logf("%s %v\nschedule:\n%s", schedLogMark, err, c.schedule)
		rt.Fatalf("running the plan failed (see the log)")
	}
	if vs := checkModel(c.h); len(vs) > 0 {
		rt.Logf("%s %d violation(s):\n%s\nhistory:\n%s\nschedule (actor#call op [choice/pending]):\n%s",
			schedLogMark, len(vs), strings.Join(vs, "\n"), c.h.dump(), c.schedule)
		rt.Fatalf("checkModel: %s", violationKinds(vs))
	}
	return c
}

// schedLogMark starts the log line of a failed scheduled check.
const schedLogMark = "[sched]"

var (
	txnNames = regexp.MustCompile(`\bc[0-9]+-t[0-9]+(-o[0-9]+n)*\b`)
	numbers  = regexp.MustCompile(`\b[0-9]+\b`)
)

// violationKinds sums violations up in a message that does not depend on
// names, ids or points: the distinct text before each one's first colon,
// with transaction names and numbers blanked.
func violationKinds(vs []string) string {
	var kinds []string
	for _, v := range vs {
		k, _, _ := strings.Cut(v, ":")
		k = numbers.ReplaceAllString(txnNames.ReplaceAllString(k, "c?-t?"), "?")
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	slices.Sort(kinds)
	return strings.Join(kinds, "; ")
}

// TestModelScheduled is the Model property test with rapid choosing the
// interleaving. It runs 100 checks by default (a few seconds under -race);
// -rapid.checks=N runs more.
func TestModelScheduled(t *testing.T) {
	var sum modelSummary
	splits, fifo, steps, maxSteps := 0, 0, 0, 0
	defer func() {
		t.Logf("exercised: %s; %d with split replies; %d scheduled steps (at most %d in one run); %d run(s) reached the FIFO fallback",
			sum.String(), splits, steps, maxSteps, fifo)
	}()
	rapid.Check(t, func(rt *rapid.T) {
		c := runSchedCase(rt)
		sum.add(c.plan, c.h)
		if c.split {
			splits++
		}
		n := strings.Count(c.schedule, "\n")
		steps, maxSteps = steps+n, max(maxSteps, n)
		if strings.Contains(c.schedule, " fifo]") {
			fifo++
		}
	})
}

// TestModelScheduledDeterministic runs the same checks twice from one fixed
// rapid seed and requires the same plans, schedules and histories (up to
// the random prefix of transaction ids, drawn per STM). rapid replays a
// failing case while shrinking, so this is what makes a shrunk
// counterexample trustworthy.
func TestModelScheduledDeterministic(t *testing.T) {
	setRapidFlags(t, false, map[string]string{"rapid.seed": "20260101", "rapid.checks": "25"})
	record := func() []string {
		var out []string
		rapid.Check(t, func(rt *rapid.T) {
			c := runSchedCase(rt)
			out = append(out, fmt.Sprintf("plan %#v split %v\nschedule:\n%shistory:\n%s", c.plan, c.split, c.schedule, normalizeIDs(c.h.dump())))
		})
		return out
	}
	first, second := record(), record()
	if len(first) != len(second) {
		t.Fatalf("the two runs made %d and %d checks", len(first), len(second))
	}
	steps := 0
	for i := range first {
		if first[i] != second[i] {
			t.Fatalf("check %d differs between two runs of one seed:\nfirst:\n%s\nsecond:\n%s", i, first[i], second[i])
		}
		steps += strings.Count(first[i], "\n")
	}
	t.Logf("%d checks, identical in both runs (%d lines of schedule and history)", len(first), steps)
}

// txnIDPrefix is the random per-STM prefix of transaction ids.
var txnIDPrefix = regexp.MustCompile(`\b[0-9a-f]{12}-`)

func normalizeIDs(s string) string { return txnIDPrefix.ReplaceAllString(s, "T-") }

// TestModelScheduledCatchesFaults runs the scheduled model on engines with
// each deliberate protocol bug of engine.Faults and requires rapid to find a
// violating history, then logs the shrunk counterexample. The Model test
// (BrokenEngineCaught) catches the first two only on fixed plans whose
// conflict a nested Dosync makes by construction; here rapid finds them,
// and the two that need a precise interleaving, from random plans and
// schedules.
func TestModelScheduledCatchesFaults(t *testing.T) {
	// Fail files would land in testdata; shrinking is capped so the test
	// stays quick (-rapid.shrinktime=30s shrinks further).
	setRapidFlags(t, true, map[string]string{"rapid.nofailfile": "true"})
	setRapidFlags(t, false, map[string]string{"rapid.shrinktime": "4s", "rapid.checks": "1000"})
	for _, tc := range []struct {
		name  string
		fault engine.Faults
	}{
		{"SkipReadPointCheck", engine.Faults{SkipReadPointCheck: true}},
		{"NoCommuteRecompute", engine.Faults{NoCommuteRecompute: true}},
		{"ReleaseIntentsEarly", engine.Faults{ReleaseIntentsEarly: true}},
		{"SkipIntentRecovery", engine.Faults{SkipIntentRecovery: true}},
		{"ObserveForeignPoints", engine.Faults{ObserveForeignPoints: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			tb := &captureTB{name: t.Name()}
			rapid.Check(tb, func(rt *rapid.T) { runSchedCase(rt, engine.WithFaults(tc.fault)) })
			if !tb.failed {
				t.Fatalf("rapid found no violation on an engine with faults %+v", tc.fault)
			}
			msg := strings.Join(tb.errs, "\n")
			if !strings.Contains(msg, "checkModel: ") || strings.Contains(msg, "flaky") {
				t.Fatalf("the engine with faults %+v failed, but not with a violation of a reproducible history:\n%s\n%s", tc.fault, msg, strings.Join(tb.logs, "\n"))
			}
			var details []string
			for _, l := range tb.logs {
				if strings.HasPrefix(l, "[rapid] draw plan") || strings.HasPrefix(l, "[rapid] draw splitReplies") || strings.HasPrefix(l, schedLogMark) {
					details = append(details, l)
				}
			}
			t.Logf("caught in %v:\n%s\nshrunk counterexample:\n%s", time.Since(start).Round(time.Millisecond), msg, strings.Join(details, "\n"))
		})
	}
}

// setRapidFlags sets rapid's command-line flags for one test and restores
// them after it; unless force, a flag given on the command line is left
// as it is.
func setRapidFlags(t *testing.T, force bool, set map[string]string) {
	given := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name, v := range set {
		f := flag.Lookup(name)
		if f == nil {
			t.Fatalf("no flag -%s", name)
		}
		if given[name] && !force {
			continue
		}
		old := f.Value.String()
		if err := f.Value.Set(v); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Value.Set(old) })
	}
}

// captureTB is a rapid.TB that records a failure instead of failing the
// test, for checks that are meant to fail.
type captureTB struct {
	name   string
	mu     sync.Mutex
	errs   []string
	logs   []string
	failed bool
}

func (c *captureTB) Helper()                   {}
func (c *captureTB) Name() string              { return c.name }
func (c *captureTB) Log(a ...any)              { c.Logf("%s", fmt.Sprint(a...)) }
func (c *captureTB) Skipf(f string, a ...any)  { c.Errorf("skipped: "+f, a...) }
func (c *captureTB) Skip(a ...any)             { c.Error(append([]any{"skipped: "}, a...)...) }
func (c *captureTB) SkipNow()                  { c.Error("skipped") }
func (c *captureTB) Error(a ...any)            { c.Errorf("%s", fmt.Sprint(a...)) }
func (c *captureTB) Fatalf(f string, a ...any) { c.Errorf(f, a...) }
func (c *captureTB) Fatal(a ...any)            { c.Error(a...) }
func (c *captureTB) FailNow()                  { c.Fail() }
func (c *captureTB) Fail() {
	c.mu.Lock()
	c.failed = true
	c.mu.Unlock()
}
func (c *captureTB) Failed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed
}
func (c *captureTB) Logf(f string, a ...any) {
	c.mu.Lock()
	c.logs = append(c.logs, fmt.Sprintf(f, a...))
	c.mu.Unlock()
}
func (c *captureTB) Errorf(f string, a ...any) {
	c.mu.Lock()
	c.errs = append(c.errs, fmt.Sprintf(f, a...))
	c.failed = true
	c.mu.Unlock()
}

// TestModelScheduledTombstone replays one schedule of three clients on one
// ref (general path), found by rapid: c0 reads x0 under c2's committed
// intent; c2 rolls it forward and deletes its record; c1, locking x0 with
// the intent it saw, confirms the record missing (an aborted tombstone);
// c0 then looks the record up and finds it aborted. The correct engine
// reads again and sees c2's write; one that takes the tombstone for an
// abort (engine.Faults.TrustAbortedRecord) reads the version underneath, a
// read skew the checker must report as I2.
func TestModelScheduledTombstone(t *testing.T) {
	r := []planTxn{{Ops: []planOp{{Kind: opRead, Ref: 0}}}}
	w := []planTxn{{Ops: []planOp{{Kind: opWrite, Ref: 0}}}}
	p := modelPlan{Refs: 1, General: true, Clients: [][]planTxn{r, w, w}}
	choices := []int{2, 2, 2, 1, 2, 1, 0, 0, 1, 2, 2, 1, 1, 1, 1, 0, 1, 0}
	run := func(faults engine.Faults) (*modelHistory, string) {
		next := 0
		choose := func(n int) int {
			if next == len(choices) {
				return 0
			}
			next++
			return min(choices[next-1], n-1)
		}
		ctx, cancel := context.WithTimeout(context.Background(), modelTimeout)
		defer cancel()
		h, schedule, err := runPlanScheduled(ctx, p, sched.Options{}, choose, engine.WithFaults(faults))
		if err != nil {
			t.Fatalf("faults %+v: %v\nschedule:\n%s", faults, err, schedule)
		}
		return h, schedule
	}
	h, schedule := run(engine.Faults{})
	if vs := checkModel(h); len(vs) > 0 {
		t.Fatalf("correct engine: %d violation(s):\n%s\nhistory:\n%s\nschedule:\n%s", len(vs), strings.Join(vs, "\n"), h.dump(), schedule)
	}
	if !strings.Contains(schedule, "a1#5 AbortRecord") {
		t.Fatalf("the schedule no longer has c1 confirm c2's missing record (the engine's calls changed; find a new one with rapid):\n%s", schedule)
	}
	h, schedule = run(engine.Faults{TrustAbortedRecord: true})
	vs := checkModel(h)
	if !slices.ContainsFunc(vs, func(v string) bool { return strings.HasPrefix(v, "I2") }) {
		t.Fatalf("with TrustAbortedRecord the checker reported no I2 violation (%d others):\n%s\nhistory:\n%s\nschedule:\n%s", len(vs), strings.Join(vs, "\n"), h.dump(), schedule)
	}
	t.Logf("TrustAbortedRecord caught:\n%s", strings.Join(vs, "\n"))
}
