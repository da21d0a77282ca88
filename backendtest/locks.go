package backendtest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/group"
	"github.com/epochal/epochal/locks"
)

const lockLease = 5 * time.Second

func newMutex(t *testing.T, store any, name string) *locks.Mutex {
	t.Helper()
	m, err := locks.NewMutex(sessionStore(store), name, locks.WithLease(lockLease))
	if err != nil {
		t.Fatalf("NewMutex(%q): %v", name, err)
	}
	return m
}

func newRW(t *testing.T, store any, name string) *locks.RWMutex {
	t.Helper()
	m, err := locks.NewRWMutex(sessionStore(store), name, locks.WithLease(lockLease))
	if err != nil {
		t.Fatalf("NewRWMutex(%q): %v", name, err)
	}
	return m
}

func testMutex(t *testing.T, newDriver NewDriver) {
	t.Run("Exclusion", func(t *testing.T) { mutexExclusion(t, newDriver(t)) })
	t.Run("TokensAcrossCrashes", func(t *testing.T) { mutexTokens(t, newDriver(t)) })
	t.Run("TryLock", func(t *testing.T) { mutexTryLock(t, newDriver(t)) })
	t.Run("Reentrant", func(t *testing.T) { mutexReentrant(t, newDriver(t)) })
	t.Run("FIFO", func(t *testing.T) { mutexFIFO(t, newDriver(t)) })
	t.Run("Lost", func(t *testing.T) { mutexLost(t, newDriver(t)) })
	t.Run("BadInput", func(t *testing.T) { mutexBadInput(t, newDriver(t)) })
	t.Run("SharedMutexExcludesGoroutines", func(t *testing.T) { sharedMutexExcludes(t, newDriver(t)) })
	t.Run("OverSTM", func(t *testing.T) {
		d := newDriver(t)
		m := newMutex(t, open(t, d), uniq("stm"))
		if err := m.Lock(tctx(t)); err != nil {
			t.Fatal(err)
		}
		if err := m.Unlock(tctx(t)); err != nil {
			t.Fatal(err)
		}
	})
}

// parallelErr runs f(0) to f(n-1) in goroutines and fails the test with the
// first error any returns.
func parallelErr(t *testing.T, n int, f func(w int) error) {
	t.Helper()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Go(func() { errs <- f(w) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Mutex operations for porcupine: a client acquires or releases.
type mutexOp struct {
	client  int
	acquire bool
}

// MutexModel is a lock's sequential specification: state is the holder
// (-1 when free); acquire succeeds only when free, release only by the
// holder. Only completed operations are recorded, so every output is ok.
var MutexModel = porcupine.Model{
	Init: func() any { return -1 },
	Step: func(state, input, _ any) (bool, any) {
		holder, in := state.(int), input.(mutexOp)
		if in.acquire {
			return holder == -1, in.client
		}
		return holder == in.client, -1
	},
	DescribeOperation: func(input, _ any) string {
		in := input.(mutexOp)
		if in.acquire {
			return fmt.Sprintf("acquire(%d)", in.client)
		}
		return fmt.Sprintf("release(%d)", in.client)
	},
}

// mutexExclusion: goroutines, each with its own Mutex, increment a counter
// with a read, a yield and a write (it loses increments unless exclusion
// holds); tokens strictly increase with the counter; porcupine checks the
// acquire/release history against MutexModel.
func mutexExclusion(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("excl")
	const workers, rounds = 6, 20
	var counter atomic.Int64
	tokens := make([]uint64, workers*rounds)
	base := time.Now()
	var mu sync.Mutex
	var ops []porcupine.Operation
	record := func(c int, acq bool, call, ret time.Time) {
		mu.Lock()
		ops = append(ops, porcupine.Operation{ClientId: c, Input: mutexOp{c, acq}, Output: true,
			Call: int64(call.Sub(base)), Return: int64(ret.Sub(base))})
		mu.Unlock()
	}
	parallelErr(t, workers, func(w int) error {
		m, err := locks.NewMutex(sessionStore(d), name, locks.WithLease(lockLease))
		if err != nil {
			return err
		}
		for i := 0; i < rounds; i++ {
			t0 := time.Now()
			if err := m.Lock(ctx); err != nil {
				return fmt.Errorf("Lock: %w", err)
			}
			record(w, true, t0, time.Now())
			v := counter.Load()
			runtime.Gosched()
			counter.Store(v + 1)
			tokens[v] = m.Token()
			t1 := time.Now()
			if err := m.Unlock(ctx); err != nil {
				return fmt.Errorf("Unlock: %w", err)
			}
			record(w, false, t1, time.Now())
		}
		return nil
	})
	if n := counter.Load(); n != workers*rounds {
		t.Fatalf("counter %d, want %d: increments lost, exclusion failed", n, workers*rounds)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Fatalf("token %d of acquisition %d is not above %d of the one before", tokens[i], i, tokens[i-1])
		}
	}
	if res := porcupine.CheckOperations(MutexModel, ops); !res {
		t.Fatal("porcupine: the acquire/release history is not linearizable as a mutex")
	}
}

// mutexTokens: 1000 acquisitions by four goroutines; every hundredth
// holder "crashes" (its process's session is ended behind its back, as an
// expiry would: every waiter of the process loses its place too). Tokens
// strictly increase in the order of the critical sections, and no
// increment of the guarded counter is lost.
func mutexTokens(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("tokens")
	const workers, total = 4, 1000
	var counter atomic.Int64
	tokens := make([]uint64, total)
	parallelErr(t, workers, func(w int) error {
		m, err := locks.NewMutex(sessionStore(d), name, locks.WithLease(lockLease))
		if err != nil {
			return err
		}
		for {
			if err := m.Lock(ctx); err != nil {
				return fmt.Errorf("Lock: %w", err)
			}
			v := counter.Load()
			if v >= total {
				return m.Unlock(ctx)
			}
			runtime.Gosched()
			counter.Store(v + 1)
			tokens[v] = m.Token()
			if v%100 != 99 {
				if err := m.Unlock(ctx); err != nil {
					return fmt.Errorf("Unlock: %w", err)
				}
				continue
			}
			// Crash: the session ends; the holder finds out and starts
			// over with a new Mutex.
			es, err := d.(backend.Sessions).Entries(ctx, "lock/"+name, true)
			if err != nil || len(es) == 0 {
				return fmt.Errorf("entries of the held lock: %v, %v", es, err)
			}
			if err := d.(backend.Sessions).CloseSession(ctx, es[0].Session.ID); err != nil {
				return err
			}
			select {
			case <-m.Lost():
			case <-ctx.Done():
				return errors.New("Lost not closed after the session ended")
			}
			if err := m.Unlock(ctx); !errors.Is(err, locks.ErrLost) {
				return fmt.Errorf("Unlock after a crash: %v, want ErrLost", err)
			}
			if m, err = locks.NewMutex(sessionStore(d), name, locks.WithLease(lockLease)); err != nil {
				return err
			}
		}
	})
	if n := counter.Load(); n != total {
		t.Fatalf("counter %d, want %d", n, total)
	}
	for i := 1; i < total; i++ {
		if tokens[i] <= tokens[i-1] {
			t.Fatalf("token %d of acquisition %d is not above %d of the one before", tokens[i], i, tokens[i-1])
		}
	}
}

func mutexTryLock(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("try")
	a, b := newMutex(t, d, name), newMutex(t, d, name)
	if ok, err := a.TryLock(ctx); !ok || err != nil {
		t.Fatalf("TryLock of a free lock = %v, %v", ok, err)
	}
	// No deadline: at once.
	if ok, err := b.TryLock(context.Background()); ok || err != nil {
		t.Fatalf("TryLock of a held lock = %v, %v, want false, nil", ok, err)
	}
	// A deadline: false at the deadline, not before.
	tryHeld(t, ctx, b.TryLock)
	if b.Token() != 0 {
		t.Fatal("a failed TryLock left a token")
	}
	// Freed before the deadline: true.
	got := make(chan error, 1)
	go func() {
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		ok, err := b.TryLock(dctx)
		if err == nil && !ok {
			err = errors.New("TryLock gave up although the lock was freed before its deadline")
		}
		if err == nil {
			err = b.Unlock(ctx) // the holder is this goroutine
		}
		got <- err
	}()
	waitEntries(t, d, "lock/"+name, 2)
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if es := entries(t, d.(backend.Sessions), "lock/"+name, false); len(es) != 0 {
		t.Fatalf("entries left after every unlock: %+v", es)
	}
}

// tryHeld calls try (a TryLock of a lock held by another) with a deadline
// and wants (false, nil), once the deadline has passed. A deadline that
// passed before the backend answered is an error wrapping
// context.DeadlineExceeded (not "held"): on a slow machine, try again
// with a longer one.
func tryHeld(t *testing.T, ctx context.Context, try func(context.Context) (bool, error)) {
	t.Helper()
	for d := 200 * time.Millisecond; ; d *= 2 {
		dctx, cancel := context.WithTimeout(ctx, d)
		ok, err := try(dctx)
		cancel()
		if err != nil && errors.Is(err, context.DeadlineExceeded) && !ok && d < 30*time.Second {
			continue // the backend did not answer in time
		}
		if ok || err != nil {
			t.Fatalf("TryLock with a deadline of %v on a held lock = %v, %v, want false, nil", d, ok, err)
		}
		if dctx.Err() == nil {
			t.Fatal("TryLock with a deadline returned false before the deadline")
		}
		return
	}
}

// waitEntries waits until dir holds n entries, by the backend's own waits.
func waitEntries(t *testing.T, d backend.Driver, dir string, n int) []backend.Entry {
	t.Helper()
	ss := d.(backend.Sessions)
	deadline := time.Now().Add(time.Minute)
	for {
		es := entries(t, ss, dir, false)
		if len(es) == n {
			return es
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d entries after a minute, want %d", dir, len(es), n)
		}
		if err := ss.WaitEntries(tctx(t), dir, "", 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
}

func mutexReentrant(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("re")
	a, b := newMutex(t, d, name), newMutex(t, d, name)
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	tok := a.Token()
	if err := a.Lock(ctx); err != nil {
		t.Fatalf("second Lock by the holder: %v", err)
	}
	if a.Token() != tok {
		t.Fatalf("a reentrant Lock changed the token %d -> %d", tok, a.Token())
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.TryLock(context.Background()); ok {
		t.Fatal("another Mutex took the lock after one of two Unlocks")
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx); !errors.Is(err, locks.ErrNotHeld) {
		t.Fatalf("third Unlock: %v, want ErrNotHeld", err)
	}
	if err := b.Unlock(ctx); !errors.Is(err, locks.ErrNotHeld) {
		t.Fatalf("Unlock by a non-holder: %v, want ErrNotHeld", err)
	}
	if ok, err := b.TryLock(ctx); !ok || err != nil {
		t.Fatalf("TryLock after the holder's last Unlock = %v, %v", ok, err)
	}
	if b.Token() <= tok {
		t.Fatalf("new holder's token %d is not above %d", b.Token(), tok)
	}
	if err := b.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// mutexFIFO: waiters get the lock in the order they queued.
func mutexFIFO(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("fifo")
	dir := "lock/" + name
	holder := newMutex(t, d, name)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 4
	order := make(chan int, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		m := newMutex(t, d, name)
		go func() {
			if err := m.Lock(ctx); err != nil {
				errs <- err
				return
			}
			order <- i
			errs <- m.Unlock(ctx)
		}()
		waitEntries(t, d, dir, i+2) // queued before the next one starts
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if got := <-order; got != i {
			t.Fatalf("waiter %d got the lock in turn %d", got, i)
		}
	}
}

// holderSession finds the session of the first entry of dir.
func holderSession(t *testing.T, d backend.Driver, dir string) string {
	t.Helper()
	es := entries(t, d.(backend.Sessions), dir, true)
	if len(es) == 0 {
		t.Fatalf("%s has no entries", dir)
	}
	return es[0].Session.ID
}

// mutexLost: when the holder's session ends, Lost is closed, Unlock says
// ErrLost, another takes the lock with a larger token, and the first can
// take it again.
func mutexLost(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("lost")
	a, b := newMutex(t, d, name), newMutex(t, d, name)
	select {
	case <-a.Lost():
	default:
		t.Fatal("Lost of a Mutex that holds nothing is open")
	}
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	tok := a.Token()
	lost := a.Lost()
	select {
	case <-lost:
		t.Fatal("Lost closed while the session is fine")
	default:
	}
	// End the holder's session behind its back (as an expiry would).
	if err := d.(backend.Sessions).CloseSession(ctx, holderSession(t, d, "lock/"+name)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(time.Minute):
		t.Fatal("Lost not closed a minute after the session ended")
	}
	if err := b.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if b.Token() <= tok {
		t.Fatalf("token %d after a lost holding of %d", b.Token(), tok)
	}
	if err := a.Lock(ctx); !errors.Is(err, locks.ErrLost) {
		t.Fatalf("Lock on a lost holding: %v, want ErrLost", err)
	}
	if err := a.Unlock(ctx); !errors.Is(err, locks.ErrLost) {
		t.Fatalf("Unlock after the session ended: %v, want ErrLost", err)
	}
	if err := b.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Lock(ctx); err != nil {
		t.Fatalf("Lock after ErrLost: %v", err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

func mutexBadInput(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	for _, bad := range []string{"", "/a", "a//b", "a/../b", "sp ace", string(make([]byte, 300))} {
		if _, err := locks.NewMutex(sessionStore(d), bad); !errors.Is(err, locks.ErrName) {
			t.Errorf("NewMutex(%q): %v, want ErrName", bad, err)
		}
		if _, err := locks.NewRWMutex(sessionStore(d), bad); !errors.Is(err, locks.ErrName) {
			t.Errorf("NewRWMutex(%q): %v, want ErrName", bad, err)
		}
	}
	for _, l := range []time.Duration{0, -time.Second} {
		if _, err := locks.NewMutex(sessionStore(d), "ok", locks.WithLease(l)); !errors.Is(err, locks.ErrBadLease) {
			t.Errorf("WithLease(%v): %v, want ErrBadLease", l, err)
		}
	}
	if _, err := locks.NewMutex(noSessions{}, "ok"); !errors.Is(err, locks.ErrUnsupported) {
		t.Errorf("NewMutex over a store without sessions: %v, want ErrUnsupported", err)
	}
	name := uniq("bad")
	m := newMutex(t, d, name)
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := m.Lock(done); !errors.Is(err, context.Canceled) {
		t.Errorf("Lock with a done ctx: %v, want context.Canceled", err)
	}
	if ok, err := m.TryLock(done); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("TryLock with a done ctx: %v, %v, want false, context.Canceled", ok, err)
	}
	if err := m.Unlock(ctx); !errors.Is(err, locks.ErrNotHeld) {
		t.Errorf("Unlock after a failed Lock: %v, want ErrNotHeld", err)
	}
	if es := entries(t, d.(backend.Sessions), "lock/"+name, false); len(es) != 0 {
		t.Errorf("bad input left entries: %+v", es)
	}
	other := newMutex(t, d, name)
	if ok, err := other.TryLock(ctx); !ok || err != nil {
		t.Errorf("the lock is not free after bad input: %v, %v", ok, err)
	}
	_ = other.Unlock(ctx)
}

// sharedMutexExcludes: goroutines sharing one *Mutex exclude each other as
// with sync.Mutex: the holder is the goroutine that called Lock (a second
// Lock on it counts), Unlock from another goroutine is ErrNotHeld, Token
// and Lost are the holder's, and TryLock on another goroutine says
// (false, nil) while the holder holds.
func sharedMutexExcludes(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	m := newMutex(t, d, uniq("shared"))
	const workers, rounds = 4, 15
	var inside atomic.Int64
	var last atomic.Uint64
	parallelErr(t, workers, func(w int) error {
		for i := 0; i < rounds; i++ {
			if err := m.Lock(ctx); err != nil {
				return fmt.Errorf("Lock: %w", err)
			}
			if n := inside.Add(1); n != 1 {
				inside.Add(-1)
				_ = m.Unlock(ctx)
				return fmt.Errorf("%d goroutines inside the critical section of one shared *Mutex", n)
			}
			tok := m.Token()
			if tok <= last.Load() {
				return fmt.Errorf("token %d not above the previous holder's %d", tok, last.Load())
			}
			last.Store(tok)
			if i%5 == 0 { // reentrant on the holding goroutine
				if err := m.Lock(ctx); err != nil {
					return fmt.Errorf("reentrant Lock: %w", err)
				}
				if m.Token() != tok {
					return fmt.Errorf("a reentrant Lock changed the token")
				}
				if err := m.Unlock(ctx); err != nil {
					return fmt.Errorf("inner Unlock: %w", err)
				}
			}
			runtime.Gosched()
			inside.Add(-1)
			if err := m.Unlock(ctx); err != nil {
				return fmt.Errorf("Unlock: %w", err)
			}
		}
		return nil
	})
	// One goroutine holds; the others see it held and cannot unlock it.
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	tok := m.Token()
	other := make(chan error, 1)
	go func() {
		if got := m.Token(); got != 0 {
			other <- fmt.Errorf("Token on a goroutine that does not hold = %d, want 0", got)
			return
		}
		select {
		case <-m.Lost():
		default:
			other <- errors.New("Lost on a goroutine that does not hold is open")
			return
		}
		if err := m.Unlock(ctx); !errors.Is(err, locks.ErrNotHeld) {
			other <- fmt.Errorf("Unlock from a goroutine that does not hold: %v, want ErrNotHeld", err)
			return
		}
		if ok, err := m.TryLock(context.Background()); ok || err != nil {
			other <- fmt.Errorf("TryLock (no deadline) on another goroutine while held = %v, %v; want false, nil", ok, err)
			return
		}
		dctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		if ok, err := m.TryLock(dctx); ok || err != nil {
			other <- fmt.Errorf("TryLock (deadline) on another goroutine while held = %v, %v; want false, nil", ok, err)
			return
		}
		other <- nil
	}()
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	if m.Token() != tok {
		t.Fatalf("the holder's token changed to %d", m.Token())
	}
	select {
	case <-m.Lost():
		t.Fatal("the holder's Lost is closed")
	default:
	}
	// A waiter on another goroutine gets it once the holder unlocks.
	waited := make(chan error, 1)
	go func() {
		if err := m.Lock(ctx); err != nil {
			waited <- err
			return
		}
		if m.Token() <= tok {
			waited <- fmt.Errorf("token %d after %d", m.Token(), tok)
			return
		}
		waited <- m.Unlock(ctx)
	}()
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
}

// sharedRWMutexExcludes: goroutines sharing one *RWMutex: writers exclude
// everyone, readers share.
func sharedRWMutexExcludes(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	m := newRW(t, d, uniq("sharedrw"))
	const workers, rounds = 4, 12
	var readers, writers atomic.Int64
	var bad atomic.Value
	parallelErr(t, workers, func(w int) error {
		for i := 0; i < rounds; i++ {
			if (w+i)%2 == 0 {
				if err := m.Lock(ctx); err != nil {
					return err
				}
				if writers.Add(1) != 1 || readers.Load() != 0 {
					bad.CompareAndSwap(nil, "a writer of a shared *RWMutex shared the lock")
				}
				runtime.Gosched()
				writers.Add(-1)
				if err := m.Unlock(ctx); err != nil {
					return err
				}
				continue
			}
			if err := m.RLock(ctx); err != nil {
				return err
			}
			readers.Add(1)
			if writers.Load() != 0 {
				bad.CompareAndSwap(nil, "a reader of a shared *RWMutex got in with a writer")
			}
			runtime.Gosched()
			readers.Add(-1)
			if err := m.RUnlock(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
}

func testRWMutex(t *testing.T, newDriver NewDriver) {
	t.Run("Readers", func(t *testing.T) { rwReaders(t, newDriver(t)) })
	t.Run("Exclusion", func(t *testing.T) { rwExclusion(t, newDriver(t)) })
	t.Run("SharedRWMutexExcludesWriters", func(t *testing.T) { sharedRWMutexExcludes(t, newDriver(t)) })
}

// rwReaders: readers overlap, a writer waits for them, and a reader that
// comes after a waiting writer waits for the writer (no starvation).
func rwReaders(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("rw")
	dir := "lock/" + name
	r1, r2, r3, w := newRW(t, d, name), newRW(t, d, name), newRW(t, d, name), newRW(t, d, name)
	if err := r1.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r2.RLock(ctx); err != nil { // while r1 holds: readers overlap
		t.Fatal(err)
	}
	if ok, err := w.TryLock(context.Background()); ok || err != nil {
		t.Fatalf("writer TryLock while readers hold = %v, %v", ok, err)
	}
	var writerHolds, writerHad atomic.Bool
	wDone := make(chan error, 1)
	go func() {
		if err := w.Lock(ctx); err != nil {
			wDone <- err
			return
		}
		writerHolds.Store(true)
		writerHad.Store(true)
		writerHolds.Store(false)
		wDone <- w.Unlock(ctx)
	}()
	waitEntries(t, d, dir, 3)
	r3Done := make(chan error, 1)
	go func() {
		if err := r3.RLock(ctx); err != nil {
			r3Done <- err
			return
		}
		if writerHolds.Load() || !writerHad.Load() {
			r3Done <- errors.New("a reader that queued after a waiting writer got the lock before the writer had it")
			return
		}
		r3Done <- r3.RUnlock(ctx)
	}()
	waitEntries(t, d, dir, 4)
	if err := r1.RLock(ctx); err != nil { // reentrant: no new entry
		t.Fatal(err)
	}
	if err := r1.Lock(ctx); !errors.Is(err, locks.ErrDeadlock) {
		t.Fatalf("Lock while holding the read lock: %v, want ErrDeadlock", err)
	}
	for _, r := range []*locks.RWMutex{r1, r1, r2} {
		if err := r.RUnlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-wDone; err != nil {
		t.Fatal(err)
	}
	if err := <-r3Done; err != nil {
		t.Fatal(err)
	}
	if err := r1.RUnlock(ctx); !errors.Is(err, locks.ErrNotHeld) {
		t.Fatalf("extra RUnlock: %v, want ErrNotHeld", err)
	}
	if err := w.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.RLock(ctx); !errors.Is(err, locks.ErrDeadlock) {
		t.Fatalf("RLock while holding the write lock: %v, want ErrDeadlock", err)
	}
	if err := w.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// rwExclusion: goroutines mixing reads and writes never see a writer with
// anyone else inside; write tokens strictly increase.
func rwExclusion(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("rwx")
	const workers, rounds = 5, 12
	var readers, writers atomic.Int64
	var lastWrite atomic.Uint64
	var bad atomic.Value // the first violation; the holder goes on to unlock
	parallelErr(t, workers, func(w int) error {
		m, err := locks.NewRWMutex(sessionStore(d), name, locks.WithLease(lockLease))
		if err != nil {
			return err
		}
		for i := 0; i < rounds; i++ {
			if (w+i)%3 == 0 {
				if err := m.Lock(ctx); err != nil {
					return err
				}
				if writers.Add(1) != 1 || readers.Load() != 0 {
					bad.CompareAndSwap(nil, "a writer shared the lock")
				}
				if tok := m.Token(); tok <= lastWrite.Load() {
					bad.CompareAndSwap(nil, fmt.Sprintf("write token %d not above %d", tok, lastWrite.Load()))
				} else {
					lastWrite.Store(tok)
				}
				runtime.Gosched()
				writers.Add(-1)
				if err := m.Unlock(ctx); err != nil {
					return err
				}
				continue
			}
			if err := m.RLock(ctx); err != nil {
				return err
			}
			readers.Add(1)
			if writers.Load() != 0 {
				bad.CompareAndSwap(nil, "a reader got in with a writer")
			}
			runtime.Gosched()
			readers.Add(-1)
			if err := m.RUnlock(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
}

func testGroup(t *testing.T, newDriver NewDriver) {
	t.Run("Membership", func(t *testing.T) { groupMembership(t, newDriver(t)) })
	t.Run("Rejoin", func(t *testing.T) { groupRejoin(t, newDriver(t)) })
	t.Run("SlowReader", func(t *testing.T) { groupSlowReader(t, newDriver(t)) })
	t.Run("GroupMemberJoinedAndLeftIsReported", func(t *testing.T) { groupJoinedAndLeft(t, newDriver(t)) })
	t.Run("WatchFromSnapshot", func(t *testing.T) { groupWatchFromSnapshot(t, newDriver(t)) })
	t.Run("WatchGap", func(t *testing.T) { groupWatchGap(t, newDriver(t)) })
	t.Run("BadInput", func(t *testing.T) { groupBadInput(t, newDriver(t)) })
	t.Run("MemberDeletedByDelayedLeaveComesBack", func(t *testing.T) { groupDelayedLeaveRemoval(t, newDriver(t)) })
	t.Run("MemberWhoseNameWasTakenComesBack", func(t *testing.T) { groupTakenNameAfterDelayedRemoval(t, newDriver(t)) })
	t.Run("UpdateDuringRejoinIsKept", func(t *testing.T) { groupUpdateDuringRejoin(t, newDriver(t)) })
	t.Run("RefusedUpdateKeepsData", func(t *testing.T) { groupRefusedUpdate(t, newDriver(t)) })
}

func join(t *testing.T, store any, g, member string, opts ...group.Option) *group.Group {
	t.Helper()
	opts = append([]group.Option{group.WithLease(lockLease)}, opts...)
	m, err := group.Join(tctx(t), sessionStore(store), g, member, opts...)
	if err != nil {
		t.Fatalf("Join(%q, %q): %v", g, member, err)
	}
	t.Cleanup(func() { _ = m.Leave(context.Background()) })
	return m
}

// view applies events to a set of names until it equals want.
type view map[string]bool

func (v view) apply(ev group.Event) {
	for _, n := range ev.Joined {
		v[n] = true
	}
	for _, n := range ev.Left {
		delete(v, n)
	}
}

func (v view) names() []string {
	out := make([]string, 0, len(v))
	for n := range v {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func awaitView(t *testing.T, g *group.Group, v view, want ...string) {
	t.Helper()
	slices.Sort(want)
	timeout := time.After(time.Minute)
	for !slices.Equal(v.names(), want) {
		select {
		case ev, ok := <-g.Events():
			if !ok {
				t.Fatalf("%s: events closed with view %v, want %v", g.Member(), v.names(), want)
			}
			v.apply(ev)
		case <-timeout:
			t.Fatalf("%s: view %v after a minute, want %v", g.Member(), v.names(), want)
		}
	}
}

type memberData struct {
	Host string
	Port int
}

func groupMembership(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("grp")
	a := join(t, d, name, "a", group.WithData(memberData{"h1", 1}))
	select {
	case ev := <-a.Events():
		if !slices.Equal(ev.Joined, []string{"a"}) || len(ev.Left) != 0 {
			t.Fatalf("a's first event %+v, want Joined [a]", ev)
		}
	case <-time.After(time.Minute):
		t.Fatal("no first event")
	}
	va := view{"a": true}
	b := join(t, d, name, "b", group.WithData(memberData{"h2", 2}))
	select {
	case ev := <-b.Events():
		if !slices.Equal(ev.Joined, []string{"a", "b"}) {
			t.Fatalf("b's first event %+v, want Joined [a b]", ev)
		}
	case <-time.After(time.Minute):
		t.Fatal("no first event")
	}
	awaitView(t, a, va, "a", "b")
	if _, err := group.Join(ctx, sessionStore(d), name, "a"); !errors.Is(err, group.ErrMemberExists) {
		t.Fatalf("joining a taken name: %v, want ErrMemberExists", err)
	}
	if err := b.Update(ctx, memberData{"h2", 22}); err != nil {
		t.Fatal(err)
	}
	ms, err := group.Members(ctx, sessionStore(d), name)
	if err != nil || len(ms) != 2 || ms[0].Name != "a" || ms[1].Name != "b" {
		t.Fatalf("Members = %+v, %v", ms, err)
	}
	var md memberData
	if err := ms[1].Decode(&md); err != nil || md != (memberData{"h2", 22}) {
		t.Fatalf("b's data %+v, %v", md, err)
	}
	if ms[0].Joined.IsZero() || ms[0].Heartbeat.IsZero() || ms[0].Lease <= 0 || ms[0].Holder == "" {
		t.Fatalf("member details %+v", ms[0])
	}
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Leave(ctx); !errors.Is(err, group.ErrLeft) {
		t.Fatalf("second Leave: %v, want ErrLeft", err)
	}
	if err := b.Update(ctx, 1); !errors.Is(err, group.ErrLeft) {
		t.Fatalf("Update after Leave: %v, want ErrLeft", err)
	}
	for range b.Events() { // closed after Leave
	}
	awaitView(t, a, va, "a")
	ms, err = group.Members(ctx, sessionStore(d), name)
	if err != nil || len(ms) != 1 || ms[0].Name != "a" {
		t.Fatalf("Members after b left = %+v, %v", ms, err)
	}
	// The name is free again.
	join(t, d, name, "b")
	awaitView(t, a, va, "a", "b")
}

// groupRejoin: a member whose session ends joins again by itself.
func groupRejoin(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("rejoin")
	dir := group.DirPrefix + name
	join(t, d, name, "a")
	old := holderSession(t, d, dir)
	if err := d.(backend.Sessions).CloseSession(ctx, old); err != nil {
		t.Fatal(err)
	}
	ss := d.(backend.Sessions)
	deadline := time.Now().Add(time.Minute)
	for {
		es := entries(t, ss, dir, true)
		if len(es) == 1 && es[0].Session.ID != old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member not back a minute after its session ended: %+v", es)
		}
		if err := ss.WaitEntries(ctx, dir, "", 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
}

// groupSlowReader: a member that does not read its events still joins,
// heartbeats and lets others join; when it reads, coalesced events bring
// its view to the membership.
func groupSlowReader(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("slow")
	slow := join(t, d, name, "slow", group.WithBuffer(1))
	var others []*group.Group
	for i := 0; i < 8; i++ {
		others = append(others, join(t, d, name, fmt.Sprintf("m%d", i)))
	}
	for _, g := range others[:5] {
		if err := g.Leave(ctx); err != nil {
			t.Fatal(err)
		}
	}
	v := view{}
	awaitView(t, slow, v, "slow", "m5", "m6", "m7")
}

// sessionsDriver is a driver with sessions.
type sessionsDriver interface {
	backend.Driver
	backend.Sessions
}

// frozen passes every call to its driver, but listings wait while it is
// shut: a watcher over it takes no look meanwhile.
type frozen struct {
	sessionsDriver
	mu       sync.Mutex
	cond     *sync.Cond
	shut     bool
	inflight int
}

func newFrozen(d backend.Driver) *frozen {
	f := &frozen{sessionsDriver: d.(sessionsDriver)}
	f.cond = sync.NewCond(&f.mu)
	return f
}

func (f *frozen) enter() {
	f.mu.Lock()
	for f.shut {
		f.cond.Wait()
	}
	f.inflight++
	f.mu.Unlock()
}

func (f *frozen) exit() {
	f.mu.Lock()
	f.inflight--
	f.cond.Broadcast()
	f.mu.Unlock()
}

// freeze shuts the gate and waits until no listing is in flight.
func (f *frozen) freeze() {
	f.mu.Lock()
	f.shut = true
	for f.inflight > 0 {
		f.cond.Wait()
	}
	f.mu.Unlock()
}

func (f *frozen) thaw() {
	f.mu.Lock()
	f.shut = false
	f.cond.Broadcast()
	f.mu.Unlock()
}

func (f *frozen) Entries(ctx context.Context, dir string, details bool) ([]backend.Entry, error) {
	f.enter()
	defer f.exit()
	return f.sessionsDriver.Entries(ctx, dir, details)
}

func (f *frozen) ReadDir(ctx context.Context, req backend.DirRequest) (backend.DirState, error) {
	f.enter()
	defer f.exit()
	return f.sessionsDriver.ReadDir(ctx, req)
}

// groupJoinedAndLeft: a member that joins and leaves between two looks of
// another member's watcher is reported to it, as joined and left, since
// Members showed it meanwhile.
func groupJoinedAndLeft(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("flicker")
	fd := newFrozen(d)
	a := join(t, fd, name, "a")
	fd.freeze()        // a's watcher takes no look until thaw
	t.Cleanup(fd.thaw) // before a's Leave, should the test stop early
	b := join(t, d, name, "b")
	ms, err := group.Members(ctx, sessionStore(d), name)
	if err != nil || len(ms) != 2 {
		t.Fatalf("Members with a and b in = %+v, %v", ms, err)
	}
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	fd.thaw()
	v := view{}
	var sawJoin, sawLeave bool
	timeout := time.After(time.Minute)
	for !sawLeave {
		select {
		case ev, ok := <-a.Events():
			if !ok {
				t.Fatal("events closed")
			}
			v.apply(ev)
			sawJoin = sawJoin || slices.Contains(ev.Joined, "b")
			sawLeave = sawJoin && slices.Contains(ev.Left, "b")
		case <-timeout:
			t.Fatalf("a was never told that b joined and left (joined seen: %v; view %v)", sawJoin, v.names())
		}
	}
	if got := v.names(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("a's view after b left: %v, want [a]", got)
	}
}

// groupWatchFromSnapshot: MembersAt, then Watch from its snapshot: the
// events after it, and only those, bring the snapshot's members to the
// membership, a member who came and went meanwhile included.
func groupWatchFromSnapshot(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("watch")
	join(t, d, name, "a")
	gone := join(t, d, name, "gone")
	snap, err := group.MembersAt(ctx, sessionStore(d), name)
	if err != nil || len(snap.Members) != 2 || snap.Rev == 0 {
		t.Fatalf("MembersAt = %+v, %v", snap, err)
	}
	if err := gone.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	b := join(t, d, name, "b")
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	join(t, d, name, "c")
	// Only now does the watch start, from the snapshot.
	wctx, cancel := context.WithCancel(ctx)
	events, err := group.Watch(wctx, sessionStore(d), name, snap, group.WithLease(lockLease))
	if err != nil {
		t.Fatal(err)
	}
	v := view{"a": true, "gone": true}
	var sawB bool
	timeout := time.After(time.Minute)
	for !sawB || !slices.Equal(v.names(), []string{"a", "c"}) {
		select {
		case ev := <-events:
			if ev.Gap {
				t.Fatalf("a gap in a watch from a recent snapshot: %+v", ev)
			}
			if slices.Contains(ev.Joined, "a") || slices.Contains(ev.Left, "a") {
				t.Fatalf("event %+v about a, who stayed throughout", ev)
			}
			v.apply(ev)
			sawB = sawB || (slices.Contains(ev.Joined, "b") && slices.Contains(ev.Left, "b"))
		case <-timeout:
			t.Fatalf("view %v a minute into the watch (b came and went reported: %v), want [a c]", v.names(), sawB)
		}
	}
	cancel()
	for range events { // closed when its ctx ends
	}
	if _, err := group.Watch(ctx, sessionStore(d), "", snap); !errors.Is(err, group.ErrName) {
		t.Fatalf("Watch of a bad name: %v, want ErrName", err)
	}
}

// groupWatchGap: a watch from a snapshot older than the group's log of
// joins reaches is told so (Gap), and still brought to the membership.
func groupWatchGap(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("gap")
	join(t, d, name, "a")
	snap, err := group.MembersAt(ctx, sessionStore(d), name)
	if err != nil {
		t.Fatal(err)
	}
	ss := d.(backend.Sessions)
	id, _ := openSession(t, ss, time.Minute)
	for i := range backend.MinAddLog + 5 {
		m := fmt.Sprintf("m%03d", i)
		add(t, ss, id, group.DirPrefix+name, m, false, "")
		if err := ss.RemoveEntry(ctx, id, group.DirPrefix+name, m); err != nil {
			t.Fatal(err)
		}
	}
	join(t, d, name, "z")
	events, err := group.Watch(ctx, sessionStore(d), name, snap, group.WithLease(lockLease))
	if err != nil {
		t.Fatal(err)
	}
	v := view{"a": true}
	gap := false
	timeout := time.After(time.Minute)
	for !slices.Equal(v.names(), []string{"a", "z"}) {
		select {
		case ev := <-events:
			gap = gap || ev.Gap
			v.apply(ev)
		case <-timeout:
			t.Fatalf("view %v a minute into the watch, want [a z]", v.names())
		}
	}
	if !gap {
		t.Fatal("no Gap in a watch from before more joins than the log keeps")
	}
}

func groupBadInput(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	for _, c := range [][2]string{{"", "a"}, {"g", ""}, {"g", "a/b"}, {"a//b", "x"}, {"g", "sp ace"}} {
		if _, err := group.Join(ctx, sessionStore(d), c[0], c[1]); !errors.Is(err, group.ErrName) {
			t.Errorf("Join(%q, %q): %v, want ErrName", c[0], c[1], err)
		}
	}
	if _, err := group.Members(ctx, sessionStore(d), ""); !errors.Is(err, group.ErrName) {
		t.Errorf("Members(\"\"): %v, want ErrName", err)
	}
	if _, err := group.Join(ctx, sessionStore(d), "g", "a", group.WithLease(-time.Second)); !errors.Is(err, group.ErrBadLease) {
		t.Errorf("WithLease(-1s): %v, want ErrBadLease", err)
	}
	if _, err := group.Join(ctx, sessionStore(d), "g", "a", group.WithData(make(chan int))); err == nil {
		t.Error("WithData of a channel: no error")
	}
	if _, err := group.Join(ctx, noSessions{}, "g", "a"); !errors.Is(err, group.ErrUnsupported) {
		t.Errorf("Join over a struct: %v, want ErrUnsupported", err)
	}
	if ms, err := group.Members(ctx, sessionStore(d), "g"); err != nil || len(ms) != 0 {
		t.Errorf("bad input left members: %+v, %v", ms, err)
	}
}

// sessionStore is x as a store of locks and groups (a driver that keeps
// sessions, or an *stm.STM); nil, which they refuse with ErrUnsupported,
// when it is neither.
func sessionStore(x any) backend.SessionStore {
	st, _ := x.(backend.SessionStore)
	return st
}

// noSessions is a store that keeps no sessions.
type noSessions struct{}

func (noSessions) Sessions() backend.Sessions { return nil }

// The wrappers over a driver's sessions are stores of their own: locks
// and groups over them make their calls through the wrapper.
func (f *frozen) Sessions() backend.Sessions        { return f }
func (d *delayedRemove) Sessions() backend.Sessions { return d }
func (d *heldAdd) Sessions() backend.Sessions       { return d }
