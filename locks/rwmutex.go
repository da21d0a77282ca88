package locks

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// RWMutex is a distributed reader-writer lock: many readers or one writer.
// Readers and writers queue in one line in arrival order (FIFO): a reader
// waits only for writers ahead of it, a writer for everyone ahead of it,
// so a stream of readers cannot starve a writer. Leases, Lost and fencing
// tokens work as for Mutex; a Mutex and an RWMutex of the same name are
// the same lock (a Mutex is a writer).
//
// The holder is the *RWMutex value: RLock and Lock each count and take as
// many RUnlocks and Unlocks. One value holds one mode at a time: RLock
// while it holds the write lock, or Lock while it holds the read lock,
// returns ErrDeadlock.
type RWMutex struct {
	lockBase
	turn chan struct{}
	mu   sync.Mutex
	w, r *hold
}

// NewRWMutex returns the read-write lock called name in store (an
// *stm.STM or a backend.Driver). No round trip.
func NewRWMutex(store any, name string, opts ...Option) (*RWMutex, error) {
	b, err := newBase(store, name, opts)
	if err != nil {
		return nil, err
	}
	return &RWMutex{lockBase: b, turn: make(chan struct{}, 1)}, nil
}

// Name is the lock's name.
func (rw *RWMutex) Name() string { return rw.name }

func take(ctx context.Context, turn chan struct{}) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errNotTaken: a non-blocking attempt found the lock held by another.
var errNotTaken = errors.New("locks: held by another")

func (rw *RWMutex) slot(mode string) (mine, other **hold) {
	if mode == modeWrite {
		return &rw.w, &rw.r
	}
	return &rw.r, &rw.w
}

func (rw *RWMutex) lockMode(mode string) func(context.Context, bool) error {
	return func(ctx context.Context, block bool) error {
		mine, other := rw.slot(mode)
		if *other != nil {
			return fmt.Errorf("%w (lock %q)", ErrDeadlock, rw.name)
		}
		if h := *mine; h != nil {
			if h.sess.Lost() {
				return fmt.Errorf("%w (lock %q: unlock it first)", ErrLost, rw.name)
			}
			h.count++
			return nil
		}
		h, err := rw.acquire(ctx, mode, block)
		if err != nil {
			return err
		}
		if h == nil {
			return errNotTaken
		}
		rw.mu.Lock()
		*mine = h
		rw.mu.Unlock()
		return nil
	}
}

func (rw *RWMutex) unlockMode(ctx context.Context, mode string) error {
	if err := take(context.WithoutCancel(ctx), rw.turn); err != nil {
		return err
	}
	defer func() { <-rw.turn }()
	mine, _ := rw.slot(mode)
	h := *mine
	if h == nil {
		return fmt.Errorf("%w (lock %q)", ErrNotHeld, rw.name)
	}
	h.count--
	if h.count > 0 {
		return nil
	}
	rw.mu.Lock()
	*mine = nil
	rw.mu.Unlock()
	return rw.release(ctx, h)
}

func (rw *RWMutex) lock(ctx context.Context, mode string) error {
	if err := take(ctx, rw.turn); err != nil {
		return fmt.Errorf("locks: %q: %w", rw.name, err)
	}
	defer func() { <-rw.turn }()
	return rw.lockMode(mode)(ctx, true)
}

// Lock takes the write lock, waiting in line for as long as ctx allows.
func (rw *RWMutex) Lock(ctx context.Context) error { return rw.lock(ctx, modeWrite) }

// RLock takes the read lock, waiting for the writers ahead in line.
func (rw *RWMutex) RLock(ctx context.Context) error { return rw.lock(ctx, modeRead) }

// TryLock takes the write lock if it is free or frees before ctx's
// deadline (at once with no deadline); (false, nil) when it does not,
// (false, err) on a failure.
func (rw *RWMutex) TryLock(ctx context.Context) (bool, error) { return rw.tryLock(ctx, modeWrite) }

// TryRLock is TryLock for the read lock.
func (rw *RWMutex) TryRLock(ctx context.Context) (bool, error) { return rw.tryLock(ctx, modeRead) }

func (rw *RWMutex) tryLock(ctx context.Context, mode string) (bool, error) {
	if err := take(ctx, rw.turn); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return false, nil
		}
		return false, fmt.Errorf("locks: %q: %w", rw.name, err)
	}
	defer func() { <-rw.turn }()
	_, timed := ctx.Deadline()
	err := rw.lockMode(mode)(ctx, timed)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, errNotTaken):
		return false, nil
	case timed && errors.Is(err, context.DeadlineExceeded):
		return false, nil
	}
	return false, err
}

// Unlock releases one Lock (ErrNotHeld, ErrLost as Mutex.Unlock).
func (rw *RWMutex) Unlock(ctx context.Context) error { return rw.unlockMode(ctx, modeWrite) }

// RUnlock releases one RLock.
func (rw *RWMutex) RUnlock(ctx context.Context) error { return rw.unlockMode(ctx, modeRead) }

func (rw *RWMutex) held() *hold {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.w != nil {
		return rw.w
	}
	return rw.r
}

// Token is the fencing token of the current holding, read or write (0
// when nothing is held). Write tokens strictly increase, and each is
// larger than the token of every holding, read or write, before it.
func (rw *RWMutex) Token() uint64 {
	if h := rw.held(); h != nil {
		return h.token
	}
	return 0
}

// Lost is closed once the current holding can no longer be counted on
// (already closed when nothing is held); see Mutex.Lost.
func (rw *RWMutex) Lost() <-chan struct{} {
	if h := rw.held(); h != nil {
		return h.sess.Done()
	}
	return closedCh
}
