// Package deadlinetest checks that every call of Epochal's API that takes
// a ctx returns by its deadline (within Bound) on a backend whose server
// stalls, and that nothing is lost or corrupted once the server is back.
// It is shared by the Redis and ZooKeeper tests, which give it a Harness:
// how to reach a server the test started, and how to stop and resume it.
//
// Run injects two faults, each in a subtest: the server process stopped
// (SIGSTOP), and a TCP proxy between the clients and the server that keeps
// the connections and swallows every byte (jepsen-lite's Proxy in its
// drop mode). In each, many calls are in flight at once against the one
// stalled server: Dosync on both commit paths (commits that meet the
// fault after their reads, and a Dosync that begins during it), Deref,
// atoms, promises, delays (one fresh, one whose body finishes during the
// fault, one whose caller gives up while its body runs), mutexes (Lock
// with and without a pooled session, TryLock, Unlock), groups (Join,
// Members, Leave) and opening a backend. Each must return within Bound of
// its deadline with an error wrapping context.DeadlineExceeded. Then the
// server is resumed (the proxy passes again), and every reference, lock
// and group is checked: it works, and holds one of the values the calls
// could have left (an unknown outcome may have applied, once).
package deadlinetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/group"
	"github.com/epochal/epochal/internal/engine"
	jepsenlite "github.com/epochal/epochal/jepsen-lite"
	"github.com/epochal/epochal/locks"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// Deadline is how long each call is given once the fault begins.
const Deadline = 2 * time.Second

// Bound is how late past its deadline a call may return: generous for a
// loaded machine running two copies of the suite, far below the seconds a
// client library's own read timeouts and retries add.
const Bound = time.Second

// stallCap is how long the fault lasts at most: the server is resumed
// then even if some calls have not returned (they are reported late).
const stallCap = 15 * time.Second

// Harness is how a backend's test reaches its server.
type Harness struct {
	// Addr is the server's address, host:port.
	Addr string
	// Open opens a backend on the server at addr (the server's own, or
	// a proxy's in front of it), within ctx, on a namespace (key prefix,
	// root) that ns names: the same ns, the same data. Tests close it.
	Open func(ctx context.Context, addr, ns string) (backend.Driver, error)
	// Pause stops the server (SIGSTOP) and Resume lets it go on.
	Pause, Resume func(t testing.TB)
	// LockLease is the lease of the locks and members the test makes
	// (on ZooKeeper the session timeout decides instead).
	LockLease time.Duration
}

// Run runs both faults, each on a fresh namespace.
func Run(t *testing.T, h Harness) {
	t.Run("Stopped", func(t *testing.T) { RunStopped(t, h) })
	t.Run("Blackholed", func(t *testing.T) { RunBlackholed(t, h) })
}

// RunStopped stops the server with SIGSTOP while the calls are in flight.
func RunStopped(t *testing.T, h Harness) {
	run(t, h, h.Addr, h.Pause, h.Resume)
}

// RunBlackholed puts a proxy between the clients and the server and has it
// swallow every byte while the calls are in flight.
func RunBlackholed(t *testing.T, h Harness) {
	p, err := jepsenlite.NewProxy(h.Addr)
	if err != nil {
		t.Fatalf("deadlinetest: proxy: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	run(t, h, p.Addr(), func(testing.TB) { p.Drop() }, func(testing.TB) { p.Pass() })
}

var nsSeq atomic.Int64

// world is what the calls act on: one STM on the stalled server.
type world struct {
	h     Harness
	addr  string
	ns    string
	drv   backend.Driver
	s     *stm.STM // fast path where it can
	gen   *stm.STM // always the general path
	fault chan struct{}
	lease time.Duration
}

// call is one call checked against its deadline.
type call struct {
	name string
	// early calls start before the fault (their deadline is the same):
	// they are in flight when it begins.
	early bool
	// prep runs before the fault on the call's goroutine (a lock taken
	// there is that goroutine's).
	prep func(ctx context.Context) error
	act  func(ctx context.Context) error
	// ok accepts act's error (nil: it must wrap context.DeadlineExceeded).
	ok func(err error) bool
}

type result struct {
	err  error
	end  time.Time
	done bool
}

func run(t *testing.T, h Harness, addr string, pause, resume func(testing.TB)) {
	ns := fmt.Sprintf("dl%d", nsSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := &world{h: h, addr: addr, ns: ns, fault: make(chan struct{}), lease: h.LockLease}
	w.drv = w.open(t, ctx)
	w.s = w.openSTM(t, ctx)
	w.gen = w.openSTM(t, ctx, engine.WithGeneralPath())
	fx := w.fixtures(t, ctx)
	calls := fx.calls()

	// Prepare every call, then start the early ones, inject the fault at
	// a planned time, and start the others.
	results := make([]result, len(calls))
	var prepared, finished sync.WaitGroup
	prepErrs := make(chan error, len(calls))
	earlyGo, lateGo := make(chan struct{}), make(chan struct{})
	var deadline time.Time // set before earlyGo and lateGo are closed
	var mu sync.Mutex
	allDone := make(chan struct{})
	for i, c := range calls {
		prepared.Add(1)
		finished.Add(1)
		go func() {
			defer finished.Done()
			if c.prep != nil {
				if err := c.prep(ctx); err != nil {
					prepErrs <- fmt.Errorf("%s: prepare: %w", c.name, err)
					prepared.Done()
					return
				}
			}
			prepared.Done()
			if c.early {
				<-earlyGo
			} else {
				<-lateGo
			}
			cctx, ccancel := context.WithDeadline(context.Background(), deadline)
			defer ccancel()
			err := c.act(cctx)
			mu.Lock()
			results[i] = result{err: err, end: time.Now(), done: true}
			mu.Unlock()
		}()
	}
	go func() { finished.Wait(); close(allDone) }()
	prepared.Wait()
	close(prepErrs)
	for err := range prepErrs {
		t.Fatalf("deadlinetest: %v", err)
	}
	t0 := time.Now().Add(200 * time.Millisecond)
	deadline = t0.Add(Deadline)
	close(earlyGo)
	time.Sleep(time.Until(t0))
	pause(t)
	close(w.fault) // early calls' functions and bodies go on into the fault
	close(lateGo)
	healed := false
	heal := func() {
		if !healed {
			healed = true
			resume(t)
		}
	}
	defer heal()
	select {
	case <-allDone:
	case <-time.After(time.Until(deadline.Add(stallCap))):
	}
	stalled := time.Since(t0)
	heal()
	select {
	case <-allDone:
	case <-time.After(time.Minute):
		t.Errorf("deadlinetest: calls still running a minute after the fault ended")
	}

	mu.Lock()
	var lines []string
	worst := time.Duration(0)
	for i, c := range calls {
		r := results[i]
		if !r.done {
			lines = append(lines, fmt.Sprintf("%-34s still running", c.name))
			t.Errorf("%s: did not return", c.name)
			continue
		}
		late := r.end.Sub(deadline)
		worst = max(worst, late)
		lines = append(lines, fmt.Sprintf("%-34s %+8.0fms  %v", c.name, float64(late)/float64(time.Millisecond), r.err))
		if late > Bound {
			t.Errorf("%s: returned %v after its deadline (bound %v): %v", c.name, late.Round(time.Millisecond), Bound, r.err)
		}
		ok := c.ok
		if ok == nil {
			ok = func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }
		}
		if !ok(r.err) {
			t.Errorf("%s: returned %v; want an error wrapping context.DeadlineExceeded", c.name, r.err)
		}
	}
	mu.Unlock()
	t.Logf("fault lasted %v; each call's return, relative to its deadline (worst %v):\n%s",
		stalled.Round(time.Millisecond), worst.Round(time.Millisecond), strings.Join(lines, "\n"))

	// Everything works again, and holds what the calls could have left.
	fx.verify(t, ctx)
}

func (w *world) open(t *testing.T, ctx context.Context) backend.Driver {
	t.Helper()
	d, err := w.h.Open(ctx, w.addr, w.ns)
	if err != nil {
		t.Fatalf("deadlinetest: open %s: %v", w.addr, err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func (w *world) openSTM(t *testing.T, ctx context.Context, opts ...stm.Option) *stm.STM {
	t.Helper()
	// A short transaction lease, so that what a stalled call leaves is
	// recovered soon after the fault.
	s, err := stm.Open(ctx, w.drv, append([]stm.Option{stm.WithLease(3 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatalf("deadlinetest: stm.Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// fixtures are the references, locks and groups the calls act on, and
// what they held before the fault.
type fixtures struct {
	w *world

	ctr, gctr  *refs.Ref[int] // incremented by Dosyncs on the fast and the general path
	ctrAttempt atomic.Int64   // Dosyncs of ctr that failed (outcome maybe applied)
	gctrTries  atomic.Int64
	ctr0       int
	atom       *refs.Atom[int]
	atomTries  atomic.Int64
	promDel    *refs.Promise[int] // delivered during the fault
	promGot    string             // delivered before the fault, Derefed by a fresh handle during it
	promWait   *refs.Promise[int] // undelivered, Derefed during the fault
	delayFresh string             // never run: Derefed during it
	delayDone  string             // body returns during the fault
	delayQuit  string             // caller gives up while the body runs
	quitBody   chan struct{}      // closed when the quitting body has started

	lockNames []string
	tokens    map[string]uint64
	grp       string
}

func (w *world) fixtures(t *testing.T, ctx context.Context) *fixtures {
	t.Helper()
	fx := &fixtures{w: w, tokens: map[string]uint64{}, quitBody: make(chan struct{})}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("deadlinetest: fixtures: %v", err)
		}
	}
	var err error
	fx.ctr, err = refs.New(ctx, w.s, "ctr", 0)
	must(err)
	fx.gctr, err = refs.New(ctx, w.s, "gctr", 0)
	must(err)
	// Some history before the fault.
	for i := 0; i < 3; i++ {
		must(w.s.Dosync(ctx, func(tx *txn.Tx) error {
			fx.ctr.Alter(tx, func(v int) int { return v + 1 })
			return nil
		}))
	}
	fx.ctr0 = 3
	fx.atom, err = refs.NewAtom(ctx, w.s, "atom", 10)
	must(err)
	fx.promDel, err = refs.NewPromise[int](ctx, w.s, "prom-deliver")
	must(err)
	fx.promGot = "prom-got"
	pg, err := refs.NewPromise[int](ctx, w.s, fx.promGot)
	must(err)
	if ok, err := pg.Deliver(ctx, 77); err != nil || !ok {
		t.Fatalf("deadlinetest: deliver %s: %v, %v", fx.promGot, ok, err)
	}
	fx.promWait, err = refs.NewPromise[int](ctx, w.s, "prom-wait")
	must(err)
	fx.delayFresh, fx.delayDone, fx.delayQuit = "delay-fresh", "delay-done", "delay-quit"
	fx.lockNames = []string{"lock-unlock", "lock-pooled", "lock-fresh", "lock-try"}
	for _, n := range fx.lockNames {
		m, err := locks.NewMutex(w.s, n, locks.WithLease(w.lease))
		must(err)
		must(m.Lock(ctx))
		fx.tokens[n] = m.Token()
		must(m.Unlock(ctx))
	}
	fx.grp = "grp"
	return fx
}

// deadline accepts an error wrapping context.DeadlineExceeded.
func deadline(err error) bool { return errors.Is(err, context.DeadlineExceeded) }

func (fx *fixtures) calls() []call {
	w := fx.w
	incr := func(s *stm.STM, r *refs.Ref[int], tries *atomic.Int64, wait bool) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			tries.Add(1)
			err := s.Dosync(ctx, func(tx *txn.Tx) error {
				v := r.Get(tx)
				if wait {
					<-w.fault // commit into the fault, its reads done
				}
				r.Set(tx, v+1)
				return nil
			})
			if err == nil {
				tries.Add(-1) // acknowledged: counted as such below
				return errors.New("committed during the fault")
			}
			return err
		}
	}
	var heldUnlock *locks.Mutex
	var joined *group.Group
	cs := []call{
		{name: "Dosync/one-phase commit", early: true, act: incr(w.s, fx.ctr, &fx.ctrAttempt, true)},
		{name: "Dosync/general commit", early: true, act: incr(w.gen, fx.gctr, &fx.gctrTries, true)},
		{name: "Dosync/begins in the fault", act: incr(w.s, fx.ctr, &fx.ctrAttempt, false)},
		{name: "Ref.Deref", act: func(ctx context.Context) error {
			_, err := fx.ctr.Deref(ctx)
			return err
		}},
		{name: "Atom.Swap", act: func(ctx context.Context) error {
			fx.atomTries.Add(1)
			_, err := fx.atom.Swap(ctx, func(v int) int { return v + 1 })
			return err
		}},
		{name: "Atom.Deref (fresh handle)", act: func(ctx context.Context) error {
			a, err := refs.NewAtom(ctx, w.s, "atom", 0)
			if err == nil {
				_, err = a.Deref(ctx)
			}
			return err
		}},
		{name: "Promise.Deliver", act: func(ctx context.Context) error {
			_, err := fx.promDel.Deliver(ctx, 5)
			return err
		}},
		{name: "Promise.Deref (delivered)", act: func(ctx context.Context) error {
			p, err := refs.NewPromise[int](ctx, w.s, fx.promGot)
			if err == nil {
				_, err = p.Deref(ctx)
			}
			return err
		}},
		{name: "Promise.Deref (waiting)", act: func(ctx context.Context) error {
			_, err := fx.promWait.Deref(ctx)
			return err
		}},
		{name: "Delay.Deref (fresh)", act: func(ctx context.Context) error {
			d, err := refs.NewDelay(ctx, w.s, fx.delayFresh, func(context.Context) (int, error) { return 1, nil })
			if err == nil {
				_, err = d.Deref(ctx)
			}
			return err
		}},
		{name: "Delay.Deref (body ends in fault)", early: true, act: func(ctx context.Context) error {
			d, err := refs.NewDelay(ctx, w.s, fx.delayDone, func(context.Context) (int, error) {
				<-w.fault
				return 42, nil
			})
			if err == nil {
				_, err = d.Deref(ctx)
			}
			return err
		}},
		{name: "Delay.Deref (caller gives up)", early: true, act: func(ctx context.Context) error {
			d, err := refs.NewDelay(ctx, w.s, fx.delayQuit, func(bctx context.Context) (int, error) {
				<-bctx.Done()
				return 0, bctx.Err()
			})
			if err == nil {
				_, err = d.Deref(ctx)
			}
			return err
		}},
		{name: "Mutex.Unlock", prep: func(ctx context.Context) (err error) {
			if heldUnlock, err = locks.NewMutex(w.s, "lock-unlock", locks.WithLease(w.lease)); err == nil {
				err = heldUnlock.Lock(ctx)
			}
			return err
		}, act: func(ctx context.Context) error {
			return heldUnlock.Unlock(ctx)
		}, ok: func(err error) bool { return deadline(err) || errors.Is(err, locks.ErrLost) }},
		{name: "Mutex.Lock (pooled session)", act: func(ctx context.Context) error {
			m, err := locks.NewMutex(w.s, "lock-pooled", locks.WithLease(w.lease))
			if err == nil {
				err = m.Lock(ctx)
			}
			if err == nil {
				return errors.New("locked during the fault")
			}
			return err
		}},
		{name: "Mutex.Lock (new session)", act: func(ctx context.Context) error {
			// Another lease: no session of the pool serves it.
			m, err := locks.NewMutex(w.s, "lock-fresh", locks.WithLease(w.lease+time.Second))
			if err == nil {
				err = m.Lock(ctx)
			}
			if err == nil {
				return errors.New("locked during the fault")
			}
			return err
		}},
		{name: "Mutex.TryLock", act: func(ctx context.Context) error {
			m, err := locks.NewMutex(w.s, "lock-try", locks.WithLease(w.lease))
			if err != nil {
				return err
			}
			ok, err := m.TryLock(ctx)
			if ok {
				return errors.New("locked during the fault")
			}
			if err == nil {
				return errors.New("TryLock said (false, nil): held by another, but nobody holds it")
			}
			return err
		}},
		{name: "group.Join", act: func(ctx context.Context) error {
			g, err := group.Join(ctx, w.s, fx.grp, "b", group.WithLease(w.lease))
			if err == nil {
				_ = g.Leave(context.Background())
				return errors.New("joined during the fault")
			}
			return err
		}},
		{name: "group.Members", act: func(ctx context.Context) error {
			_, err := group.Members(ctx, w.s, fx.grp)
			return err
		}},
		{name: "Group.Leave", prep: func(ctx context.Context) (err error) {
			joined, err = group.Join(ctx, w.s, fx.grp, "a", group.WithLease(w.lease))
			return err
		}, act: func(ctx context.Context) error {
			return joined.Leave(ctx)
		}},
		{name: "Open", act: func(ctx context.Context) error {
			d, err := w.h.Open(ctx, w.addr, w.ns)
			if err == nil {
				_ = d.Close()
				return errors.New("opened during the fault")
			}
			return err
		}},
	}
	return cs
}

// verify checks, with the server back, that everything works and holds a
// value the calls could have left.
func (fx *fixtures) verify(t *testing.T, ctx context.Context) {
	w := fx.w
	t.Run("After", func(t *testing.T) {
		// The clients reconnect first: a call made before they noticed
		// the fault's end may fail (a connection found broken).
		start := time.Now()
		for {
			_, err := fx.ctr.Deref(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil || time.Since(start) > 30*time.Second {
				t.Fatalf("the backend does not answer %v after the fault: %v", time.Since(start).Round(time.Millisecond), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("answering again %v after the fault", time.Since(start).Round(time.Millisecond))
		// Counters: each failed Dosync applied at most once.
		for _, c := range []struct {
			r       *refs.Ref[int]
			s       *stm.STM
			lo, try int
		}{{fx.ctr, w.s, fx.ctr0, int(fx.ctrAttempt.Load())}, {fx.gctr, w.gen, 0, int(fx.gctrTries.Load())}} {
			v, err := c.r.Deref(ctx)
			if err != nil {
				t.Fatalf("Deref %s after the fault: %v", c.r.Name(), err)
			}
			if v < c.lo || v > c.lo+c.try {
				t.Errorf("%s = %d after %d failed increments from %d: lost or applied twice", c.r.Name(), v, c.try, c.lo)
			}
			// A Dosync that failed in the fault may still apply after
			// it: a client whose socket deadlines ignore ctx sends a
			// request held up behind a new connection's handshake once
			// the server answers again. So the increment lands on v or
			// on a value such a late commit left, never below v+1 nor
			// above every increment once.
			if err := c.s.Dosync(ctx, func(tx *txn.Tx) error {
				c.r.Alter(tx, func(v int) int { return v + 1 })
				return nil
			}); err != nil {
				t.Errorf("Dosync on %s after the fault: %v", c.r.Name(), err)
			} else if v2, err := c.r.Deref(ctx); err != nil || v2 < v+1 || v2 > c.lo+c.try+1 {
				t.Errorf("%s = %d, %v after an increment from %d (%d failed increments from %d before it)", c.r.Name(), v2, err, v, c.try, c.lo)
			}
		}
		// The atom.
		if v, err := fx.atom.Deref(ctx); err != nil || v < 10 || v > 10+int(fx.atomTries.Load()) {
			t.Errorf("atom = %d, %v after %d failed swaps from 10", v, err, fx.atomTries.Load())
		} else if nv, err := fx.atom.Swap(ctx, func(x int) int { return x + 1 }); err != nil || nv < v+1 || nv > 11+int(fx.atomTries.Load()) {
			// As for the counters, a failed swap may land late.
			t.Errorf("atom swap after the fault = %d, %v; want %d to %d", nv, err, v+1, 11+int(fx.atomTries.Load()))
		}
		// Promises: one delivery, the same for every handle.
		p2, err := refs.NewPromise[int](ctx, w.s, fx.promDel.Name())
		if err != nil {
			t.Fatal(err)
		}
		won, err := p2.Deliver(ctx, 6)
		if err != nil {
			t.Errorf("Deliver after the fault: %v", err)
		}
		want := 5
		if won {
			want = 6
		}
		for _, p := range []*refs.Promise[int]{fx.promDel, p2} {
			if v, err := p.Deref(ctx); err != nil || v != want {
				t.Errorf("promise %s = %d, %v; want %d (the second delivery won: %v)", p.Name(), v, err, want, won)
			}
		}
		if ok, err := fx.promWait.Deliver(ctx, 9); err != nil || !ok {
			t.Errorf("Deliver of %s after the fault = %v, %v", fx.promWait.Name(), ok, err)
		}
		if v, err := fx.promWait.Deref(ctx); err != nil || v != 9 {
			t.Errorf("promise %s = %d, %v; want 9", fx.promWait.Name(), v, err)
		}
		pg, err := refs.NewPromise[int](ctx, w.s, fx.promGot)
		if err == nil {
			var v int
			if v, err = pg.Deref(ctx); err == nil && v != 77 {
				err = fmt.Errorf("holds %d, want 77", v)
			}
		}
		if err != nil {
			t.Errorf("promise %s: %v", fx.promGot, err)
		}
		// Delays: the body's value, whoever ran it (a claim left by the
		// fault lapses within the STM's lease).
		for _, c := range []struct {
			name string
			want int
			ok   []int
		}{{fx.delayFresh, 1, []int{1}}, {fx.delayDone, 42, []int{42}}, {fx.delayQuit, 7, []int{7}}} {
			d, err := refs.NewDelay(ctx, w.s, c.name, func(context.Context) (int, error) { return c.want, nil })
			if err != nil {
				t.Errorf("delay %s: %v", c.name, err)
				continue
			}
			if v, err := d.Deref(ctx); err != nil || v != c.want {
				t.Errorf("delay %s = %d, %v; want %d", c.name, v, err, c.want)
			}
		}
		// Locks: free again (a stalled Lock's entry removed, or its
		// session ended), with a larger token.
		for _, n := range fx.lockNames {
			m, err := locks.NewMutex(w.s, n, locks.WithLease(w.lease))
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Lock(ctx); err != nil {
				t.Errorf("Lock %s after the fault: %v", n, err)
				continue
			}
			if m.Token() <= fx.tokens[n] {
				t.Errorf("lock %s: token %d after %d", n, m.Token(), fx.tokens[n])
			}
			if err := m.Unlock(ctx); err != nil {
				t.Errorf("Unlock %s after the fault: %v", n, err)
			}
		}
		// The group: its members can be listed, and both names can join
		// (a member whose stalled Join or Leave left an entry is gone
		// within its lease).
		if _, err := group.Members(ctx, w.s, fx.grp); err != nil {
			t.Errorf("Members after the fault: %v", err)
		}
		for _, name := range []string{"a", "b"} {
			var g *group.Group
			var err error
			for {
				g, err = group.Join(ctx, w.s, fx.grp, name, group.WithLease(w.lease))
				if !errors.Is(err, group.ErrMemberExists) || ctx.Err() != nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil {
				t.Errorf("Join %s after the fault: %v", name, err)
				continue
			}
			ms, err := group.Members(ctx, w.s, fx.grp)
			var names []string
			for _, m := range ms {
				names = append(names, m.Name)
			}
			sort.Strings(names)
			if err != nil || !contains(names, name) {
				t.Errorf("Members after %s joined = %v, %v", name, names, err)
			}
			if err := g.Leave(ctx); err != nil {
				t.Errorf("Leave %s: %v", name, err)
			}
		}
		// A new backend opens.
		d, err := w.h.Open(ctx, w.addr, w.ns)
		if err != nil {
			t.Errorf("Open after the fault: %v", err)
		} else {
			_ = d.Close()
		}
	})
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
