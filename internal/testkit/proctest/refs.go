package proctest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
)

func init() {
	workers["atoms"] = atomWorker
	workers["delay"] = delayWorker
	workers["promise"] = promiseWorker
}

// Names the refs tests use.
const (
	atomCounter = "atom/counter" // the atom the atoms workers increment
	delayName   = "delay/d"
	delayRuns   = "delay/runs" // an atom the delay's body increments first
	promiseName = "promise/p"
)

const (
	// refsPatience bounds every wait of the refs tests for progress: a
	// worker's next line, a Deref, a Swap.
	refsPatience = 30 * time.Second
	// refsSession is the lease of the refs workers' drivers (for
	// ZooKeeper, the session timeout); their STMs' leases are their own.
	refsSession = 3 * time.Second
)

// Refs runs the multi-process tests of atoms, delays, promises and
// watches. The last one restarts the server (see Harness.Restart).
func Refs(t *testing.T, h Harness) {
	t.Run("AtomSwap", func(t *testing.T) { atomSwap(t, h) })
	t.Run("Delay", func(t *testing.T) { delayTwoProcesses(t, h) })
	t.Run("DelayRunnerKilled", func(t *testing.T) { delayRunnerKilled(t, h) })
	t.Run("Watch", func(t *testing.T) { watchTwoProcesses(t, h) })
	t.Run("PromiseWaiterAcrossRestart", func(t *testing.T) { promiseWaiterAcrossRestart(t, h) })
}

// openSTM opens an STM on d for the test process, closed at cleanup.
func openSTM(t *testing.T, d backend.Driver, opts ...stm.Option) *stm.STM {
	t.Helper()
	s, err := stm.Open(context.Background(), d, opts...)
	if err != nil {
		t.Fatalf("stm.Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// startRefs starts n workers of kind with arg, their drivers on
// refsSession.
func startRefs(t *testing.T, n int, kind string, env []string, arg string) []*Proc {
	t.Helper()
	ps := make([]*Proc, n)
	for i := range ps {
		ps[i] = Start(t, kind, env, refsSession, arg)
	}
	return ps
}

// exited waits for the worker to exit 0 having said nothing more.
func exited(t *testing.T, p *Proc) {
	t.Helper()
	if rest := p.Wait(t); len(rest) > 0 {
		t.Fatalf("worker %d said more: %q", p.Pid(), rest)
	}
}

// openAtom opens an STM (opts) on d and the int atom name on it, for a
// worker; the worker closes the STM.
func openAtom(ctx context.Context, d backend.Driver, name string, opts ...stm.Option) (*stm.STM, *refs.Atom[int], error) {
	s, err := stm.Open(ctx, d, opts...)
	if err != nil {
		return nil, nil, err
	}
	a, err := refs.NewAtom(ctx, s, name, 0)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, a, nil
}

// ready prints "READY" and waits for the line on stdin (any) that starts
// a worker's work, so that every process starts at once.
func ready() error {
	fmt.Println("READY")
	if _, ok := <-stdinLines(); !ok {
		return errors.New("no go: stdin closed")
	}
	return nil
}

// atomWorker opens the counter atom, prints "READY", waits for a line on
// stdin, makes n swaps of +1 (n its argument) and prints "DONE k", k
// being how many succeeded. It stops at the first error.
func atomWorker(ctx context.Context, d backend.Driver, _ time.Duration) error {
	n, err := strconv.Atoi(os.Getenv(envArg))
	if err != nil {
		return err
	}
	s, a, err := openAtom(ctx, d, atomCounter)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := ready(); err != nil {
		return err
	}
	done := 0
	for ; done < n; done++ {
		sctx, cancel := context.WithTimeout(ctx, refsPatience)
		_, err := a.Swap(sctx, func(v int) int { return v + 1 })
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "atoms worker:", err)
			break
		}
	}
	fmt.Printf("DONE %d\n", done)
	return nil
}

// atomSwap: two OS processes and goroutines of this one swap one atom
// (+1) at the same time; the final value counts every swap.
func atomSwap(t *testing.T, h Harness) {
	const (
		procs, perProc   = 2, 200
		goroutines, perG = 8, 25
		want             = procs*perProc + goroutines*perG
	)
	env, d := h.parent(t, 0)
	ctx := context.Background()
	a, err := refs.NewAtom(ctx, openSTM(t, d), atomCounter, 0)
	if err != nil {
		t.Fatal(err)
	}
	ps := startRefs(t, procs, "atoms", env, strconv.Itoa(perProc))
	for _, p := range ps {
		p.ExpectLine(t, 2*refsPatience, "READY")
	}
	// Go: both processes and the goroutines start swapping together.
	for _, p := range ps {
		p.Send(t, "go")
	}
	var wg sync.WaitGroup
	errs := make([]error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for range perG {
				sctx, cancel := context.WithTimeout(ctx, refsPatience)
				_, err := a.Swap(sctx, func(v int) int { return v + 1 })
				cancel()
				if err != nil {
					errs[g] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		p.ExpectLine(t, 2*refsPatience, fmt.Sprintf("DONE %d", perProc))
		exited(t, p)
	}
	v, err := a.Deref(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v != want {
		t.Fatalf("counter = %d after %d swaps", v, want)
	}
}

// delayBody is the body of the delay under test in every process: it
// counts its run in the runs atom and returns a value naming the run and
// the process. With block it prints "RUNNING" and waits to be killed.
func delayBody(runs *refs.Atom[int], block bool) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		n, err := runs.Swap(ctx, func(v int) int { return v + 1 })
		if err != nil {
			return "", err
		}
		if block {
			fmt.Println("RUNNING")
			<-ctx.Done() // the claim lost, or the process killed
			return "", ctx.Err()
		}
		return fmt.Sprintf("run %d by pid %d", n, os.Getpid()), nil
	}
}

// delayArg is the delay worker's argument.
type delayArg struct {
	Goroutines int
	Block      bool          // the body blocks (see delayBody)
	Lease      time.Duration // the STM's lease; 0: the default
}

func startDelay(t *testing.T, env []string, arg delayArg) *Proc {
	t.Helper()
	b, err := json.Marshal(arg)
	if err != nil {
		t.Fatal(err)
	}
	return Start(t, "delay", env, refsSession, string(b))
}

// delayWorker opens the delay, prints "READY", waits for a line on stdin,
// and Derefs it on its argument's Goroutines at once, printing "VALUE v"
// (or "ERROR e") for each, then "DONE".
func delayWorker(ctx context.Context, d backend.Driver, _ time.Duration) error {
	var arg delayArg
	if err := json.Unmarshal([]byte(os.Getenv(envArg)), &arg); err != nil {
		return err
	}
	var opts []stm.Option
	if arg.Lease > 0 {
		opts = append(opts, stm.WithLease(arg.Lease))
	}
	s, runs, err := openAtom(ctx, d, delayRuns, opts...)
	if err != nil {
		return err
	}
	defer s.Close()
	dl, err := refs.NewDelay(ctx, s, delayName, delayBody(runs, arg.Block))
	if err != nil {
		return err
	}
	if err := ready(); err != nil {
		return err
	}
	for _, l := range derefAll(ctx, dl, arg.Goroutines) {
		fmt.Println(l)
	}
	fmt.Println("DONE")
	return nil
}

// derefAll Derefs d on n goroutines at once and returns, for each, "VALUE
// v" or "ERROR e".
func derefAll(ctx context.Context, d *refs.Delay[string], n int) []string {
	var mu sync.Mutex
	var got []string
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			dctx, cancel := context.WithTimeout(ctx, refsPatience)
			defer cancel()
			l := "VALUE "
			v, err := d.Deref(dctx)
			if err != nil {
				l, v = "ERROR ", err.Error()
			}
			mu.Lock()
			got = append(got, l+v)
			mu.Unlock()
		})
	}
	wg.Wait()
	return got
}

// delayTwoProcesses: two OS processes of 8 goroutines each and 8
// goroutines of this one Deref one delay at once; its body runs exactly
// once and every caller in every process gets its value.
func delayTwoProcesses(t *testing.T, h Harness) {
	const procs, goroutines = 2, 8
	env, d := h.parent(t, 0)
	ctx := context.Background()
	s := openSTM(t, d)
	runs, err := refs.NewAtom(ctx, s, delayRuns, 0)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := refs.NewDelay(ctx, s, delayName, delayBody(runs, false))
	if err != nil {
		t.Fatal(err)
	}
	ps := make([]*Proc, procs)
	for i := range ps {
		ps[i] = startDelay(t, env, delayArg{Goroutines: goroutines})
	}
	for _, p := range ps {
		p.ExpectLine(t, refsPatience, "READY")
	}
	for _, p := range ps {
		p.Send(t, "go")
	}
	// Each caller's "VALUE v" (or "ERROR e"): here, then in the workers.
	got := derefAll(ctx, dl, goroutines)
	for _, p := range ps {
		for range goroutines {
			l := p.Next(t, refsPatience)
			if !strings.HasPrefix(l, "VALUE ") {
				t.Fatalf("worker %d said %q, want a value", p.Pid(), l)
			}
			got = append(got, l)
		}
		p.ExpectLine(t, refsPatience, "DONE")
		exited(t, p)
	}
	if n, err := runs.Deref(ctx); err != nil || n != 1 {
		t.Fatalf("the body ran %d times (%v), want once", n, err)
	}
	if len(got) != (procs+1)*goroutines {
		t.Fatalf("%d values, want %d", len(got), (procs+1)*goroutines)
	}
	if !strings.HasPrefix(got[0], "VALUE run 1 by pid ") {
		t.Fatalf("%q, want the first run's value", got[0])
	}
	for i, l := range got {
		if l != got[0] {
			t.Fatalf("caller %d got %q, caller 0 %q", i, l, got[0])
		}
	}
	t.Logf("every caller got %q", got[0])
}

// delayRunnerKilled: a worker process claims a delay (lease 1 s) and its
// body blocks; the worker is SIGKILLed; a Deref here takes the claim over
// once the lease runs out, runs the body again and delivers, and every
// later Deref, in any process, returns that second run's value.
func delayRunnerKilled(t *testing.T, h Harness) {
	const lease, slack = time.Second, 3 * time.Second
	env, open := h.Env(t)
	ctx := context.Background()
	p := startDelay(t, env, delayArg{Goroutines: 1, Block: true, Lease: lease})
	p.ExpectLine(t, refsPatience, "READY")
	p.Send(t, "go")
	p.ExpectLine(t, refsPatience, "RUNNING")
	s := openSTM(t, open(t, 0), stm.WithLease(lease))
	runs, err := refs.NewAtom(ctx, s, delayRuns, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := runs.Deref(ctx); err != nil || n != 1 {
		t.Fatalf("runs = %d (%v) while the worker's body runs, want 1", n, err)
	}
	dl, err := refs.NewDelay(ctx, s, delayName, delayBody(runs, false))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := dl.Realized(ctx); err != nil || ok {
		t.Fatalf("realized %v (%v) while the body runs", ok, err)
	}
	p.Kill(t)
	killed := time.Now()
	dctx, cancel := context.WithTimeout(ctx, refsPatience)
	defer cancel()
	v, err := dl.Deref(dctx)
	took := time.Since(killed)
	if err != nil {
		t.Fatalf("Deref after the runner was killed: %v (after %v)", err, took)
	}
	if took > lease+slack {
		t.Fatalf("the takeover took %v, want at most the lease %v + %v", took, lease, slack)
	}
	want := fmt.Sprintf("run 2 by pid %d", os.Getpid())
	if v != want {
		t.Fatalf("Deref = %q, want %q", v, want)
	}
	t.Logf("took over and delivered %v after the kill", took)
	// Later Derefs: this handle, a new handle on a new connection, and
	// another process; none runs the body again.
	if v, err := dl.Deref(ctx); err != nil || v != want {
		t.Fatalf("Deref again = %q, %v; want %q", v, err, want)
	}
	s2 := openSTM(t, open(t, 0), stm.WithLease(lease))
	d2, err := refs.NewDelay(ctx, s2, delayName, func(context.Context) (string, error) {
		return "a third run", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := d2.Deref(dctx); err != nil || v != want {
		t.Fatalf("Deref on a new handle = %q, %v; want %q", v, err, want)
	}
	q := startDelay(t, env, delayArg{Goroutines: 2, Lease: lease})
	q.ExpectLine(t, refsPatience, "READY")
	q.Send(t, "go")
	q.ExpectLine(t, refsPatience, "VALUE "+want)
	q.ExpectLine(t, refsPatience, "VALUE "+want)
	q.ExpectLine(t, refsPatience, "DONE")
	exited(t, q)
	if n, err := runs.Deref(ctx); err != nil || n != 2 {
		t.Fatalf("the body ran %d times (%v), want twice", n, err)
	}
}

// promiseWorker opens the promise, checks that a Deref blocks while it is
// undelivered (a short Deref must end with its ctx), prints "WAITING",
// and Derefs it: "VALUE v" or "ERROR e".
func promiseWorker(ctx context.Context, d backend.Driver, _ time.Duration) error {
	s, err := stm.Open(ctx, d)
	if err != nil {
		return err
	}
	defer s.Close()
	p, err := refs.NewPromise[string](ctx, s, promiseName)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	v, err := p.Deref(sctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		fmt.Printf("ERROR an undelivered promise's Deref returned %q, %v\n", v, err)
		return nil
	}
	fmt.Println("WAITING")
	dctx, cancel := context.WithTimeout(ctx, 2*refsPatience)
	defer cancel()
	if v, err = p.Deref(dctx); err != nil {
		fmt.Printf("ERROR %v\n", err)
		return nil
	}
	fmt.Printf("VALUE %s\n", v)
	return nil
}

// promiseWaiterAcrossRestart: a waiter in a worker process and one here
// are blocked in Promise.Deref while the server is killed and restarted
// (Harness.Restart); a delivery afterwards, from a new handle on a new
// connection, reaches both.
func promiseWaiterAcrossRestart(t *testing.T, h Harness) {
	if h.Restart == nil {
		t.Skip("the backend's test server cannot restart")
	}
	env, open := h.Env(t)
	ctx := context.Background()
	p, err := refs.NewPromise[string](ctx, openSTM(t, open(t, 0)), promiseName)
	if err != nil {
		t.Fatal(err)
	}
	w := Start(t, "promise", env, refsSession, "")
	w.ExpectLine(t, refsPatience, "WAITING")
	type result struct {
		v   string
		err error
	}
	got := make(chan result, 1)
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	v, err := p.Deref(sctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("an undelivered promise's Deref returned %q, %v", v, err)
	}
	dctx, cancel := context.WithTimeout(ctx, 2*refsPatience)
	defer cancel()
	go func() {
		v, err := p.Deref(dctx)
		got <- result{v, err}
	}()

	h.Restart(t)

	p2, err := refs.NewPromise[string](ctx, openSTM(t, open(t, 0)), promiseName)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := p2.Realized(ctx); err != nil || ok {
		t.Fatalf("realized %v (%v) before the delivery", ok, err)
	}
	const want = "delivered after the restart"
	delivered := time.Now()
	if ok, err := p2.Deliver(ctx, want); err != nil || !ok {
		t.Fatalf("Deliver = %v, %v", ok, err)
	}
	select {
	case r := <-got:
		if r.err != nil || r.v != want {
			t.Errorf("the waiter here got %q, %v; want %q", r.v, r.err, want)
		}
	case <-time.After(10 * time.Second):
		t.Error("the waiter here did not return within 10 s of the delivery")
	}
	w.ExpectLine(t, refsPatience, "VALUE "+want)
	exited(t, w)
	t.Logf("the worker's waiter returned %v after the delivery", time.Since(delivered))
}

// watchTwoProcesses: a watch here on an atom that two worker processes
// increment 250 times each sees strictly increasing values, each one more
// than the one before unless a gap notice says what it missed, ending at
// 500.
func watchTwoProcesses(t *testing.T, h Harness) {
	const procs, perProc, want = 2, 250, 500
	env, d := h.parent(t, 0)
	a, err := refs.NewAtom(context.Background(), openSTM(t, d), atomCounter, 0)
	if err != nil {
		t.Fatal(err)
	}
	ws := watchLog{changed: make(chan struct{}, 1)}
	a.AddWatch("w", func(_ string, _ *refs.Atom[int], old, new int) { ws.change(old, new) },
		refs.OnGap(func(_ string, from, to clock.Point) { ws.gap(uint64(from), uint64(to)) }))
	ps := startRefs(t, procs, "atoms", env, strconv.Itoa(perProc))
	for _, p := range ps {
		p.ExpectLine(t, refsPatience, "READY")
	}
	for _, p := range ps {
		p.Send(t, "go")
	}
	for _, p := range ps {
		p.ExpectLine(t, refsPatience, fmt.Sprintf("DONE %d", perProc))
		exited(t, p)
	}
	ws.check(t, want)
}

// watchLog records what a watch is told, in order.
type watchLog struct {
	changed chan struct{} // a token after each call, if none is waiting

	mu     sync.Mutex
	last   int
	calls  int
	gaps   int
	gapped bool // a gap notice came since the last change
	bad    []string
}

func (w *watchLog) change(old, new int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.notify()
	w.calls++
	switch {
	case old != w.last:
		w.bad = append(w.bad, fmt.Sprintf("change %d -> %d: old is not the last value seen, %d", old, new, w.last))
	case new <= w.last:
		w.bad = append(w.bad, fmt.Sprintf("change %d -> %d: not increasing", old, new))
	case new != w.last+1 && !w.gapped:
		w.bad = append(w.bad, fmt.Sprintf("change %d -> %d: missed %d changes without a gap notice", old, new, new-w.last-1))
	}
	w.last, w.gapped = new, false
}

func (w *watchLog) gap(from, to uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.notify()
	w.gaps++
	if from >= to {
		w.bad = append(w.bad, fmt.Sprintf("gap notice from point %d to %d", from, to))
	}
	w.gapped = true
}

func (w *watchLog) notify() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// check waits (up to refsPatience) for the watch to see want, then
// reports what was wrong.
func (w *watchLog) check(t *testing.T, want int) {
	t.Helper()
	timeout := time.After(refsPatience)
	for {
		w.mu.Lock()
		last, calls, gaps, bad := w.last, w.calls, w.gaps, slices.Clone(w.bad)
		w.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("the watch saw %d changes, %d gap notices; wrong: %s", calls, gaps, strings.Join(bad, "; "))
		}
		if last == want {
			t.Logf("the watch saw %d changes and %d gap notices, ending at %d", calls, gaps, last)
			return
		}
		select {
		case <-w.changed:
		case <-timeout:
			t.Fatalf("the watch's last value is %d after %v, want %d (%d changes, %d gap notices)", last, refsPatience, want, calls, gaps)
		}
	}
}
