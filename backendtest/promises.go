package backendtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
)

// testPromises: promises and delays (refs.Promise, refs.Delay) on the
// driver, through its one-phase commit: one delivery wins, waiters wake
// whenever they started, a delay's body runs once across handles, errors,
// retries and the takeover of a dead runner's claim.
func testPromises(t *testing.T, newDriver NewDriver) {
	t.Run("DeliverRace", func(t *testing.T) { testPromiseRace(t, newDriver(t)) })
	t.Run("Wait", func(t *testing.T) { testPromiseWait(t, newDriver(t)) })
	t.Run("BadInput", func(t *testing.T) { testPromiseBadInput(t, newDriver(t)) })
	t.Run("DelayOnce", func(t *testing.T) { testDelayOnce(t, newDriver(t)) })
	t.Run("DelayError", func(t *testing.T) { testDelayError(t, newDriver(t)) })
	t.Run("DelayRetry", func(t *testing.T) { testDelayRetry(t, newDriver(t)) })
	t.Run("DelayTakeover", func(t *testing.T) { testDelayTakeover(t, newDriver(t)) })
	t.Run("DelayRenewal", func(t *testing.T) { testDelayRenewal(t, newDriver(t)) })
	t.Run("Watch", func(t *testing.T) { testPromiseWatch(t, newDriver(t)) })
	t.Run("DelayWatch", func(t *testing.T) { testDelayWatch(t, newDriver(t)) })
	t.Run("Meta", func(t *testing.T) { testPromiseMeta(t, newDriver(t)) })
}

func newPromise[T any](t testing.TB, s *stm.STM, name string, opts ...refs.Option) *refs.Promise[T] {
	t.Helper()
	p, err := refs.NewPromise[T](tctx(t), s, name, opts...)
	if err != nil {
		t.Fatalf("refs.NewPromise(%q): %v", name, err)
	}
	return p
}

func newDelay[T any](t testing.TB, s *stm.STM, name string, body func(context.Context) (T, error), opts ...refs.Option) *refs.Delay[T] {
	t.Helper()
	d, err := refs.NewDelay(tctx(t), s, name, body, opts...)
	if err != nil {
		t.Fatalf("refs.NewDelay(%q): %v", name, err)
	}
	return d
}

func testPromiseRace(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("promise")
	ps := []*refs.Promise[int]{newPromise[int](t, open(t, d), name), newPromise[int](t, open(t, d), name)}
	const n = 16
	var wg sync.WaitGroup
	won := make([]bool, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			won[i], errs[i] = ps[i%2].Deliver(ctx, 100+i)
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Deliver %d: %v", i, errs[i])
		}
		if won[i] {
			if winner >= 0 {
				t.Fatalf("deliveries %d and %d both won", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("no delivery won")
	}
	fresh := newPromise[int](t, open(t, d), name)
	for _, p := range append(ps, fresh) {
		if v, err := p.Deref(ctx); err != nil || v != 100+winner {
			t.Fatalf("Deref = %d, %v; want the winning delivery %d", v, err, 100+winner)
		}
		if ok, err := p.Realized(ctx); err != nil || !ok {
			t.Fatalf("Realized = %v, %v; want true", ok, err)
		}
	}
	// A late delivery loses and changes nothing.
	if ok, err := fresh.Deliver(ctx, -1); err != nil || ok {
		t.Fatalf("late Deliver = %v, %v; want false", ok, err)
	}
	if v, err := newPromise[int](t, open(t, d), name).Deref(ctx); err != nil || v != 100+winner {
		t.Fatalf("after a late delivery Deref = %d, %v; want %d", v, err, 100+winner)
	}
}

func testPromiseWait(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("promise")
	p1 := newPromise[string](t, open(t, d), name)
	p2 := newPromise[string](t, open(t, d), name)
	if ok, err := p1.Realized(ctx); err != nil || ok {
		t.Fatalf("Realized before delivery = %v, %v; want false", ok, err)
	}
	// A Deref whose ctx ends returns ctx.Err(), promptly.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	began := time.Now()
	_, err := p1.Deref(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Deref with an ending ctx: %v, want DeadlineExceeded", err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("Deref took %v to notice its ctx ended", took)
	}
	// A waiter started before the delivery returns after it, delivered
	// from another handle.
	type res struct {
		v   string
		err error
	}
	got := make(chan res, 1)
	go func() {
		v, err := p1.Deref(ctx)
		got <- res{v, err}
	}()
	if ok, err := p2.Deliver(ctx, "hello"); err != nil || !ok {
		t.Fatalf("Deliver = %v, %v; want true", ok, err)
	}
	if r := recv(t, got, "Deref of a waiter started before the delivery"); r.err != nil || r.v != "hello" {
		t.Fatalf("waiter got %q, %v; want hello", r.v, r.err)
	}
	// A waiter started after the delivery returns at once, without hints.
	p3 := newPromise[string](t, open(t, d), name)
	quick, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if v, err := p3.Deref(quick); err != nil || v != "hello" {
		t.Fatalf("Deref after delivery = %q, %v; want hello at once", v, err)
	}
}

func testPromiseBadInput(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	s := open(t, d)
	// A name holds one kind.
	atomName := uniq("atom")
	newAtom(t, s, atomName, 1)
	if _, err := refs.NewPromise[int](ctx, s, atomName); !errors.Is(err, refs.ErrType) {
		t.Fatalf("NewPromise on an atom's name: %v, want ErrType", err)
	}
	pname := uniq("promise")
	p := newPromise[int](t, s, pname)
	if _, err := refs.NewAtom(ctx, s, pname, 0); !errors.Is(err, refs.ErrType) {
		t.Fatalf("NewAtom on a promise's name: %v, want ErrType", err)
	}
	if _, err := refs.New(ctx, s, pname, 0); !errors.Is(err, refs.ErrType) {
		t.Fatalf("refs.New on a promise's name: %v, want ErrType", err)
	}
	if _, err := refs.NewDelay(ctx, s, pname, func(context.Context) (int, error) { return 0, nil }); !errors.Is(err, refs.ErrType) {
		t.Fatalf("NewDelay on a promise's name: %v, want ErrType", err)
	}
	if _, err := refs.NewPromise[int](ctx, s, uniq("p"), refs.RetryErrors()); !errors.Is(err, refs.ErrOption) {
		t.Fatalf("NewPromise with RetryErrors: %v, want ErrOption", err)
	}
	if _, err := refs.NewDelay[int](ctx, s, uniq("delay"), nil); !errors.Is(err, stm.ErrNilFunc) {
		t.Fatalf("NewDelay with a nil body: %v, want ErrNilFunc", err)
	}
	// A value delivered by a handle of another type is ErrType, no crash.
	if ok, err := p.Deliver(ctx, 42); err != nil || !ok {
		t.Fatalf("Deliver = %v, %v", ok, err)
	}
	ps := newPromise[[]string](t, open(t, d), pname)
	if _, err := ps.Deref(ctx); !errors.Is(err, refs.ErrType) {
		t.Fatalf("Deref of an int as []string: %v, want ErrType", err)
	}
	// A validator rejects a delivery, which changes nothing.
	vname := uniq("promise")
	pv := newPromise[int](t, s, vname, refs.WithValidator(func(v int) error {
		if v < 0 {
			return errors.New("negative")
		}
		return nil
	}))
	if ok, err := pv.Deliver(ctx, -1); ok || !errors.Is(err, refs.ErrValidation) {
		t.Fatalf("Deliver(-1) with a validator: %v, %v; want ErrValidation", ok, err)
	}
	if ok, err := pv.Realized(ctx); err != nil || ok {
		t.Fatalf("a rejected delivery realized the promise: %v, %v", ok, err)
	}
	// A closed STM.
	sc := open(t, d)
	pc := newPromise[int](t, sc, vname)
	dc := newDelay(t, sc, uniq("delay"), func(context.Context) (int, error) { return 1, nil })
	_ = sc.Close()
	if _, err := refs.NewPromise[int](ctx, sc, uniq("p")); !errors.Is(err, stm.ErrClosed) {
		t.Fatalf("NewPromise on a closed STM: %v, want ErrClosed", err)
	}
	if _, err := pc.Deref(ctx); !errors.Is(err, stm.ErrClosed) {
		t.Fatalf("Deref on a closed STM: %v, want ErrClosed", err)
	}
	if _, err := pc.Deliver(ctx, 1); !errors.Is(err, stm.ErrClosed) {
		t.Fatalf("Deliver on a closed STM: %v, want ErrClosed", err)
	}
	if _, err := dc.Deref(ctx); !errors.Is(err, stm.ErrClosed) {
		t.Fatalf("delay Deref on a closed STM: %v, want ErrClosed", err)
	}
}

// delayCallers derefs the delays from n goroutines at once and returns
// their values and errors.
func delayCallers[T any](ctx context.Context, ds []*refs.Delay[T], n int) ([]T, []error) {
	vs := make([]T, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			vs[i], errs[i] = ds[i%len(ds)].Deref(ctx)
		}()
	}
	close(start)
	wg.Wait()
	return vs, errs
}

func testDelayOnce(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("delay")
	s1, s2 := open(t, d), open(t, d)
	runs := newAtom(t, s1, uniq("runs"), 0)
	var count atomic.Int32
	body := func(who string) func(context.Context) (string, error) {
		return func(ctx context.Context) (string, error) {
			count.Add(1)
			if _, err := runs.Swap(ctx, func(v int) int { return v + 1 }); err != nil {
				return "", err
			}
			return "computed by " + who, nil
		}
	}
	ds := []*refs.Delay[string]{newDelay(t, s1, name, body("one")), newDelay(t, s2, name, body("two"))}
	vs, errs := delayCallers(ctx, ds, 16)
	for i := range vs {
		if errs[i] != nil {
			t.Fatalf("Deref %d: %v", i, errs[i])
		}
		if vs[i] != vs[0] || !strings.HasPrefix(vs[i], "computed by ") {
			t.Fatalf("callers got %q and %q", vs[0], vs[i])
		}
	}
	if c := count.Load(); c != 1 {
		t.Fatalf("the body ran %d times, want once", c)
	}
	if c := atomValue(t, runs); c != 1 {
		t.Fatalf("the atom counted %d runs, want 1", c)
	}
	// Later callers, new handles included, get the kept value.
	d3 := newDelay(t, open(t, d), name, body("three"))
	if v, err := d3.Deref(ctx); err != nil || v != vs[0] {
		t.Fatalf("a later Deref = %q, %v; want %q", v, err, vs[0])
	}
	if ok, err := d3.Realized(ctx); err != nil || !ok {
		t.Fatalf("Realized = %v, %v", ok, err)
	}
	if c := count.Load(); c != 1 {
		t.Fatalf("the body ran %d times, want once", c)
	}
}

func testDelayError(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("delay")
	var count atomic.Int32
	body := func(context.Context) (int, error) {
		count.Add(1)
		return 0, errors.New("boom: disk on fire")
	}
	ds := []*refs.Delay[int]{newDelay(t, open(t, d), name, body), newDelay(t, open(t, d), name, body)}
	_, errs := delayCallers(ctx, ds, 8)
	for i, err := range errs {
		if !errors.Is(err, refs.ErrDelayFailed) || !strings.Contains(fmt.Sprint(err), "boom: disk on fire") {
			t.Fatalf("Deref %d: %v; want ErrDelayFailed with the body's message", i, err)
		}
	}
	if _, err := newDelay(t, open(t, d), name, body).Deref(ctx); !errors.Is(err, refs.ErrDelayFailed) {
		t.Fatalf("a later Deref: %v; want the delivered error", err)
	}
	if c := count.Load(); c != 1 {
		t.Fatalf("the body ran %d times, want once (its error is delivered)", c)
	}
}

func testDelayRetry(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("delay")
	var count atomic.Int32
	body := func(context.Context) (int, error) {
		if count.Add(1) == 1 {
			return 0, errors.New("transient glitch")
		}
		return 7, nil
	}
	d1 := newDelay(t, open(t, d), name, body, refs.RetryErrors())
	d2 := newDelay(t, open(t, d), name, body, refs.RetryErrors())
	_, err := d1.Deref(ctx)
	if err == nil || errors.Is(err, refs.ErrDelayFailed) || !strings.Contains(err.Error(), "transient glitch") {
		t.Fatalf("first Deref: %v; want the body's error, not delivered", err)
	}
	if ok, err := d2.Realized(ctx); err != nil || ok {
		t.Fatalf("Realized after a retried error = %v, %v; want false", ok, err)
	}
	if v, err := d2.Deref(ctx); err != nil || v != 7 {
		t.Fatalf("second Deref = %d, %v; want 7", v, err)
	}
	if v, err := d1.Deref(ctx); err != nil || v != 7 {
		t.Fatalf("Deref after success = %d, %v; want 7", v, err)
	}
	if c := count.Load(); c != 2 {
		t.Fatalf("the body ran %d times, want 2", c)
	}
}

// testDelayTakeover: a runner whose process dies (its STM closes while the
// body runs, so its lease is never renewed) is taken over once its lease
// has run out by another process's wall clock.
func testDelayTakeover(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("delay")
	sA := open(t, d)
	fake := fakeClock()
	sB := open(t, d, engine.WithWallClock(fake))
	started := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	var bodyA, bodyB atomic.Int32
	dA := newDelay(t, sA, name, func(ctx context.Context) (string, error) {
		bodyA.Add(1)
		close(started)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return "from A", nil
	})
	dB := newDelay(t, sB, name, func(context.Context) (string, error) {
		bodyB.Add(1)
		return "from B", nil
	})
	doneA := make(chan error, 1)
	go func() {
		_, err := dA.Deref(ctx)
		doneA <- err
	}()
	recv(t, started, "start of A's body")
	// While A's lease runs, B waits.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := dB.Deref(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Deref during a live claim: %v; want to wait (DeadlineExceeded)", err)
	}
	cancel()
	// A dies; B's clock passes A's lease; B takes over.
	_ = sA.Close()
	fake.Advance(stm.DefaultLease + time.Hour)
	if v, err := dB.Deref(ctx); err != nil || v != "from B" {
		t.Fatalf("Deref after the runner died = %q, %v; want from B", v, err)
	}
	if a, b := bodyA.Load(), bodyB.Load(); a != 1 || b != 1 {
		t.Fatalf("bodies ran A %d, B %d times; want once each", a, b)
	}
	if err := recv(t, doneA, "end of the dead runner's Deref"); err == nil {
		t.Fatalf("the dead runner's Deref succeeded")
	}
	if v, err := newDelay(t, open(t, d), name, func(context.Context) (string, error) { return "late", nil }).Deref(ctx); err != nil || v != "from B" {
		t.Fatalf("a later Deref = %q, %v; want from B", v, err)
	}
}

// testDelayRenewal: a body that outlives its lease several times keeps its
// claim (the lease is renewed), so a waiter does not run it again.
func testDelayRenewal(t *testing.T, d backend.Driver) {
	// Without renewal the two handles take the claim from each other
	// forever: bound the test.
	ctx, cancel := context.WithTimeout(tctx(t), wait)
	defer cancel()
	name := uniq("delay")
	const lease = 300 * time.Millisecond
	var count atomic.Int32
	started := make(chan struct{}, 2)
	body := func(ctx context.Context) (int, error) {
		n := count.Add(1)
		started <- struct{}{}
		// Work lasting four leases.
		select {
		case <-time.After(4 * lease):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		return int(n), nil
	}
	dA := newDelay(t, open(t, d, stm.WithLease(lease)), name, body)
	dB := newDelay(t, open(t, d, stm.WithLease(lease)), name, body)
	gotA := make(chan error, 1)
	go func() {
		v, err := dA.Deref(ctx)
		if err == nil && v != 1 {
			err = fmt.Errorf("got %d, want 1", v)
		}
		gotA <- err
	}()
	recv(t, started, "start of the body")
	if v, err := dB.Deref(ctx); err != nil || v != 1 {
		t.Fatalf("waiter's Deref = %d, %v; want 1 (the first run's value)", v, err)
	}
	if err := recv(t, gotA, "runner's Deref"); err != nil {
		t.Fatalf("runner's Deref: %v", err)
	}
	if c := count.Load(); c != 1 {
		t.Fatalf("the body ran %d times: its claim was taken over while renewed", c)
	}
}

// watchCall is one call of a promise's or a delay's watch.
type watchCall struct {
	key      string
	same     bool // the handle passed is the one watched
	old, new int
}

// testPromiseWatch: watches on a promise in two processes each fire once,
// on delivery by a third, with the zero value as old and the delivered
// value as new; a delivery that loses fires nothing.
func testPromiseWatch(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("watched-promise")
	ps := []*refs.Promise[int]{newPromise[int](t, open(t, d), name), newPromise[int](t, open(t, d), name)}
	chs := make([]chan watchCall, len(ps))
	gaps := make(chan struct{}, 100)
	for i, p := range ps {
		ch := make(chan watchCall, 100)
		chs[i] = ch
		p.AddWatch("w", func(key string, got *refs.Promise[int], old, new int) {
			ch <- watchCall{key, got == p, old, new}
		}, refs.OnGap(func(string, clock.Point, clock.Point) { gaps <- struct{}{} }))
		defer p.RemoveWatch("w")
	}
	deliverer := newPromise[int](t, open(t, d), name)
	if won, err := deliverer.Deliver(ctx, 42); err != nil || !won {
		t.Fatalf("Deliver(42) = %v, %v; want true, nil", won, err)
	}
	for i, ch := range chs {
		c := recv(t, ch, fmt.Sprintf("watch call in process %d", i))
		if c != (watchCall{"w", true, 0, 42}) {
			t.Fatalf("process %d: watch called with %+v; want key w, its own handle, old 0, new 42", i, c)
		}
	}
	// A losing delivery changes nothing. No further call may have come by
	// the end: a check, not a proof, as nothing marks a watcher's later
	// reads; a watcher calling twice for one version would be caught here
	// only if it did so by then.
	if won, err := ps[0].Deliver(ctx, 7); err != nil || won {
		t.Fatalf("second Deliver = %v, %v; want false, nil", won, err)
	}
	for i, p := range ps {
		if v, err := p.Deref(ctx); err != nil || v != 42 {
			t.Fatalf("process %d: Deref = %v, %v; want 42", i, v, err)
		}
	}
	for i, ch := range chs {
		if n := len(ch); n != 0 {
			t.Fatalf("process %d: watch called %d more times after the delivery: %+v", i, n, <-ch)
		}
	}
	if n := len(gaps); n != 0 {
		t.Fatalf("%d gap notices on a promise delivered once", n)
	}
}

// testDelayWatch: a watch on a delay fires once, when another process's
// Deref runs the body, with the zero value as old and the value as new.
func testDelayWatch(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("watched-delay")
	body := func(context.Context) (int, error) { return 99, nil }
	w := newDelay(t, open(t, d), name, body)
	ch := make(chan watchCall, 100)
	w.AddWatch("w", func(key string, got *refs.Delay[int], old, new int) {
		ch <- watchCall{key, got == w, old, new}
	})
	defer w.RemoveWatch("w")
	runner := newDelay(t, open(t, d), name, body)
	if v, err := runner.Deref(ctx); err != nil || v != 99 {
		t.Fatalf("Deref = %v, %v; want 99", v, err)
	}
	if c := recv(t, ch, "delay watch call"); c != (watchCall{"w", true, 0, 99}) {
		t.Fatalf("watch called with %+v; want key w, its own handle, old 0, new 99", c)
	}
	if v, err := w.Deref(ctx); err != nil || v != 99 {
		t.Fatalf("watched handle's Deref = %v, %v; want 99", v, err)
	}
	if n := len(ch); n != 0 {
		t.Fatalf("watch called %d more times: %+v", n, <-ch)
	}
}

// testPromiseMeta: meta on a promise and on a delay, altered in one
// process, is seen by another.
func testPromiseMeta(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("meta-promise")
	p, q := newPromise[int](t, open(t, d), name), newPromise[int](t, open(t, d), name)
	if m, err := q.Meta(ctx); err != nil || m != nil {
		t.Fatalf("promise Meta before any = %v, %v; want nil", m, err)
	}
	if _, err := p.AlterMeta(ctx, func(m map[string]any) map[string]any { return map[string]any{"owner": "ops"} }); err != nil {
		t.Fatalf("promise AlterMeta: %v", err)
	}
	if m, err := q.Meta(ctx); err != nil || m["owner"] != "ops" {
		t.Fatalf("promise Meta from another process = %v, %v", m, err)
	}
	if err := q.ResetMeta(ctx, map[string]any{"owner": "dev"}); err != nil {
		t.Fatalf("promise ResetMeta: %v", err)
	}
	if m, err := p.Meta(ctx); err != nil || m["owner"] != "dev" {
		t.Fatalf("promise Meta after ResetMeta = %v, %v", m, err)
	}

	dname := uniq("meta-delay")
	body := func(context.Context) (int, error) { return 1, nil }
	a, b := newDelay(t, open(t, d), dname, body), newDelay(t, open(t, d), dname, body)
	if _, err := a.AlterMeta(ctx, func(m map[string]any) map[string]any { return map[string]any{"tier": "gold"} }); err != nil {
		t.Fatalf("delay AlterMeta: %v", err)
	}
	if m, err := b.Meta(ctx); err != nil || m["tier"] != "gold" {
		t.Fatalf("delay Meta from another process = %v, %v", m, err)
	}
	// Meta is beside the value: running the delay keeps it.
	if v, err := b.Deref(ctx); err != nil || v != 1 {
		t.Fatalf("delay Deref = %v, %v; want 1", v, err)
	}
	if m, err := a.Meta(ctx); err != nil || m["tier"] != "gold" {
		t.Fatalf("delay Meta after it ran = %v, %v", m, err)
	}
}
