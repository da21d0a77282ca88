package locks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/internal/goid"
	"github.com/epochal/epochal/internal/lease"
)

// RWMutex is a distributed reader-writer lock: many readers or one writer.
// Readers and writers queue in one line in arrival order (FIFO): a reader
// waits only for writers ahead of it, a writer for everyone ahead of it,
// so a stream of readers cannot starve a writer. Leases, Lost and fencing
// tokens work as for Mutex; a Mutex and an RWMutex of the same name are
// the same lock (a Mutex is a writer).
//
// A *RWMutex shared by goroutines excludes them as sync.RWMutex does: the
// holder is the goroutine that called Lock or RLock. A writer excludes
// every other goroutine, of this process or any other; readers share, and
// each reading goroutine holds its own place in the backend's line (and
// its own token). The goroutines of one *RWMutex wait for each other in
// the process, in arrival order and each as long as its ctx allows,
// before they queue at the backend. Lock or RLock again on the holding
// goroutine counts (reentrant) and takes as many Unlocks or RUnlocks; a
// goroutine holds one mode at a time: RLock while it holds the write lock,
// or Lock while it holds the read lock, returns ErrDeadlock. Unlock or
// RUnlock on a goroutine that does not hold the lock in that mode returns
// ErrNotHeld.
type RWMutex struct {
	lockBase

	mu      sync.Mutex
	writer  uint64            // the goroutine let in to write (0: none)
	readers int               // goroutines let in to read
	queue   []*waiter         // goroutines waiting to be let in, in arrival order
	holds   map[uint64]*ghold // goroutine -> what it holds
}

// waiter is a goroutine waiting in the process to be let in.
type waiter struct {
	mode  string
	g     uint64
	ready chan struct{} // closed when let in
	in    bool
}

// ghold is a goroutine's holding.
type ghold struct {
	mode string
	h    *hold
}

// NewRWMutex returns the read-write lock called name in store (an
// *stm.STM or a driver that keeps sessions: see NewMutex). No round trip.
func NewRWMutex(store backend.SessionStore, name string, opts ...Option) (*RWMutex, error) {
	b, err := newBase(store, name, opts)
	if err != nil {
		return nil, err
	}
	return &RWMutex{lockBase: b, holds: make(map[uint64]*ghold)}, nil
}

// Name is the lock's name.
func (rw *RWMutex) Name() string { return rw.name }

// fits reports whether a goroutine of mode may be let in now, ahead of
// nobody. The caller holds mu.
func (rw *RWMutex) fits(mode string) bool {
	if mode == lease.ModeWrite {
		return rw.writer == 0 && rw.readers == 0
	}
	return rw.writer == 0
}

func (rw *RWMutex) letIn(mode string, g uint64) {
	if mode == lease.ModeWrite {
		rw.writer = g
	} else {
		rw.readers++
	}
}

// letOut undoes letIn and lets the next waiters in. The caller holds mu.
func (rw *RWMutex) letOut(mode string) {
	if mode == lease.ModeWrite {
		rw.writer = 0
	} else {
		rw.readers--
	}
	rw.letNext()
}

// letNext lets in the waiters at the head of the queue that fit. The
// caller holds mu.
func (rw *RWMutex) letNext() {
	for len(rw.queue) > 0 && rw.fits(rw.queue[0].mode) {
		w := rw.queue[0]
		rw.queue = rw.queue[1:]
		rw.letIn(w.mode, w.g)
		w.in = true
		close(w.ready)
	}
}

// admit lets goroutine g in for mode, waiting behind the goroutines ahead
// of it in the process. wait false: give up at once (errHeld) rather than
// wait. A ctx that ends first is errHeld wrapping ctx's error.
func (rw *RWMutex) admit(ctx context.Context, mode string, g uint64, wait bool) error {
	rw.mu.Lock()
	if len(rw.queue) == 0 && rw.fits(mode) {
		rw.letIn(mode, g)
		rw.mu.Unlock()
		return nil
	}
	if !wait {
		rw.mu.Unlock()
		return errHeld
	}
	w := &waiter{mode: mode, g: g, ready: make(chan struct{})}
	rw.queue = append(rw.queue, w)
	rw.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if w.in {
		rw.letOut(mode) // let in just now: pass it on
	} else {
		rw.queue = slices.DeleteFunc(rw.queue, func(x *waiter) bool { return x == w })
		rw.letNext() // a writer that gave up may have kept readers out
	}
	return fmt.Errorf("%w: %w", errHeld, ctx.Err())
}

// lock takes the lock in mode for the calling goroutine. block false:
// give up (errHeld) when another holds it.
func (rw *RWMutex) lock(ctx context.Context, mode string, block bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("locks: %q: %w", rw.name, err)
	}
	g := goid.Get()
	rw.mu.Lock()
	if gh := rw.holds[g]; gh != nil {
		defer rw.mu.Unlock()
		if gh.mode != mode {
			return fmt.Errorf("%w (lock %q)", ErrDeadlock, rw.name)
		}
		if gh.h.sess.Lost() {
			return fmt.Errorf("%w (lock %q: unlock it first)", ErrLost, rw.name)
		}
		gh.h.count++
		return nil
	}
	rw.mu.Unlock()
	start := time.Now()
	if err := rw.admit(ctx, mode, g, block); err != nil {
		err = fmt.Errorf("locks: %q: %w", rw.name, err)
		rw.noteWait(ctx, mode, start, err)
		return err
	}
	h, err := rw.acquire(ctx, mode, block)
	rw.noteWait(ctx, mode, start, err)
	if h != nil {
		h.since = time.Now()
	}
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if err != nil {
		rw.letOut(mode)
		return err
	}
	rw.holds[g] = &ghold{mode: mode, h: h}
	return nil
}

func (rw *RWMutex) unlock(ctx context.Context, mode string) error {
	g := goid.Get()
	rw.mu.Lock()
	gh := rw.holds[g]
	if gh == nil || gh.mode != mode {
		rw.mu.Unlock()
		return fmt.Errorf("%w (lock %q, by this goroutine)", ErrNotHeld, rw.name)
	}
	gh.h.count--
	if gh.h.count > 0 {
		rw.mu.Unlock()
		return nil
	}
	delete(rw.holds, g)
	rw.mu.Unlock()
	rw.heldHist.Record(context.WithoutCancel(ctx), time.Since(gh.h.since).Seconds(), metric.WithAttributes(modeAttr(mode)))
	err := rw.release(ctx, gh.h)
	rw.mu.Lock()
	rw.letOut(mode)
	rw.mu.Unlock()
	return err
}

// Lock takes the write lock, waiting in line for as long as ctx allows.
func (rw *RWMutex) Lock(ctx context.Context) error { return rw.lock(ctx, lease.ModeWrite, true) }

// RLock takes the read lock, waiting for the writers ahead in line.
func (rw *RWMutex) RLock(ctx context.Context) error { return rw.lock(ctx, lease.ModeRead, true) }

// TryLock takes the write lock if it is free or frees before ctx's
// deadline (at once with no deadline). It returns (false, nil) when the
// lock is still held by another (another goroutine, here or in another
// process) at the deadline, and (false, err) on a failure: a backend that
// fails, or does not answer before the deadline, or a ctx canceled.
func (rw *RWMutex) TryLock(ctx context.Context) (bool, error) {
	return rw.tryLock(ctx, lease.ModeWrite)
}

// TryRLock is TryLock for the read lock.
func (rw *RWMutex) TryRLock(ctx context.Context) (bool, error) {
	return rw.tryLock(ctx, lease.ModeRead)
}

func (rw *RWMutex) tryLock(ctx context.Context, mode string) (bool, error) {
	_, timed := ctx.Deadline()
	err := rw.lock(ctx, mode, timed)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, errHeld) && !errors.Is(err, context.Canceled):
		return false, nil
	}
	return false, err
}

// Unlock releases one Lock of the calling goroutine (ErrNotHeld, ErrLost
// as Mutex.Unlock).
func (rw *RWMutex) Unlock(ctx context.Context) error { return rw.unlock(ctx, lease.ModeWrite) }

// RUnlock releases one RLock of the calling goroutine.
func (rw *RWMutex) RUnlock(ctx context.Context) error { return rw.unlock(ctx, lease.ModeRead) }

// held is the calling goroutine's holding, or nil.
func (rw *RWMutex) held() *hold {
	g := goid.Get()
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if gh := rw.holds[g]; gh != nil {
		return gh.h
	}
	return nil
}

// Token is the fencing token of the calling goroutine's holding, read or
// write (0 when it holds nothing). Write tokens strictly increase, and
// each is larger than the token of every holding, read or write, before
// it.
func (rw *RWMutex) Token() uint64 {
	if h := rw.held(); h != nil {
		return h.token
	}
	return 0
}

// Lost is closed once the calling goroutine's holding can no longer be
// counted on (already closed when it holds nothing); see Mutex.Lost.
func (rw *RWMutex) Lost() <-chan struct{} {
	if h := rw.held(); h != nil {
		return h.sess.Done()
	}
	return closedCh
}
