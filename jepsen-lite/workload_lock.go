package jepsenlite

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/epochal/epochal/locks"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"

	"github.com/epochal/epochal/jepsen-lite/check"
)

// lockWorkload: each client takes one of 2 locks (a locks.Mutex per lock
// and client), makes up to 3 fenced writes while it holds it, pausing a
// little between them, and releases it; when it sees Lost it releases at
// once (after, half the time, one stale write the fence must refuse).
type lockWorkload struct {
	worker int
	keys   int
	lease  time.Duration

	mu     sync.Mutex
	fences map[int]*refs.Atom[uint64]
}

// clientLoop is a workload whose clients keep state from one operation
// to the next (the lock workload): runClients runs Loop for each client
// instead of drawing independent operations.
type clientLoop interface {
	Loop(ctx context.Context, s *stm.STM, rec *recorder, c int, r *rand.Rand, cfg clientConfig)
}

// leaseSetter is a workload that uses the run's lease itself.
type leaseSetter interface{ setLease(time.Duration) }

func (l *lockWorkload) setLease(d time.Duration) { l.lease = d }

func (l *lockWorkload) Name() string { return "lock" }

// Linearizable: the mutex checker is porcupine's, and fencing is checked
// in real-time order.
func (l *lockWorkload) Linearizable() bool { return true }

func lockName(k int) string  { return "jepsen-" + strconv.Itoa(k) }
func fenceName(k int) string { return "lockfence/" + strconv.Itoa(k) }

func (l *lockWorkload) fence(ctx context.Context, s *stm.STM, k int) (*refs.Atom[uint64], error) {
	l.mu.Lock()
	a := l.fences[k]
	l.mu.Unlock()
	if a != nil {
		return a, nil
	}
	a, err := refs.NewAtom(ctx, s, fenceName(k), uint64(0))
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fences == nil {
		l.fences = map[int]*refs.Atom[uint64]{}
	}
	if old := l.fences[k]; old != nil {
		return old, nil
	}
	l.fences[k] = a
	return a, nil
}

func (l *lockWorkload) Setup(ctx context.Context, s *stm.STM) error {
	for k := range l.keys {
		if _, err := l.fence(ctx, s, k); err != nil {
			return err
		}
	}
	return nil
}

// Next is used only for the final reads' shape; clients run Loop.
func (l *lockWorkload) Next(r *rand.Rand) (string, any) {
	return "read", check.LockValue{K: r.IntN(l.keys)}
}

func (l *lockWorkload) ReadOnly(f string) bool { return f == "read" }

// Apply runs a read of a fence (the final reads).
func (l *lockWorkload) Apply(ctx context.Context, s *stm.STM, f string, v any) (any, error) {
	in := v.(check.LockValue)
	if f != "read" {
		return nil, fmt.Errorf("%w: lock workload: Apply(%q): clients run Loop", errDeclined, f)
	}
	a, err := l.fence(ctx, s, in.K)
	if err != nil {
		return nil, err
	}
	x, err := a.Deref(ctx)
	return check.LockValue{K: in.K, Seen: x}, err
}

func (l *lockWorkload) Final(context.Context, *stm.STM) ([]invocation, error) {
	var out []invocation
	for k := range l.keys {
		out = append(out, invocation{F: "read", Value: check.LockValue{K: k}})
	}
	return out, nil
}

func (l *lockWorkload) Checkers() []check.Checker {
	return []check.Checker{check.NewMutexChecker(), check.NewFencingChecker()}
}

// errStale: the fence holds a newer token; the write was refused.
var errStale = errors.New("refused: the fence holds a newer token")

// fencedWrite is what a fencing-token-aware resource does: accept a write
// whose token is at least the largest it has seen (recording it), refuse
// an older one.
func fencedWrite(ctx context.Context, a *refs.Atom[uint64], tok uint64) (seen uint64, err error) {
	for {
		cur, err := a.Deref(ctx)
		if err != nil {
			return 0, err
		}
		switch {
		case cur > tok:
			return cur, fmt.Errorf("%w (%d > %d)", errStale, cur, tok)
		case cur == tok:
			return cur, nil
		}
		ok, err := a.CompareAndSet(ctx, cur, tok)
		if err != nil {
			return cur, err
		}
		if ok {
			return cur, nil
		}
	}
}

func chClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// lockClient is one client of the lock workload.
type lockClient struct {
	w    *lockWorkload
	s    *stm.STM
	rec  *recorder
	cfg  clientConfig
	r    *rand.Rand
	proc int
	id   string
	seq  int
	ms   map[int]*locks.Mutex
}

// record writes an event at the current time and returns that time.
func (c *lockClient) record(t check.Type, f string, v check.LockValue, err error) int64 {
	now := c.rec.Now()
	o := check.Op{Type: t, Process: c.proc, F: f, Time: now}.WithValue(v)
	if err != nil {
		o.Error = err.Error()
	}
	_ = c.rec.Record(o) // an error is the recorder's (Err, Failed): the process stops and fails with it
	if t == check.Info {
		c.proc++ // a process whose operation ended in info runs no other
	}
	return now
}

// Loop implements clientLoop: acquire, write, release, until ctx ends
// (a holding in progress is then finished: writes skipped, released).
func (l *lockWorkload) Loop(ctx context.Context, s *stm.STM, rec *recorder, ci int, r *rand.Rand, cfg clientConfig) {
	c := &lockClient{w: l, s: s, rec: rec, cfg: cfg, r: r, proc: cfg.ProcessBase + ci*1_000_000,
		id: fmt.Sprintf("w%dc%d", l.worker, ci), ms: map[int]*locks.Mutex{}}
	next := time.Now()
	for n := 0; ctx.Err() == nil && (cfg.Ops <= 0 || n < cfg.Ops); n++ {
		if !pace(ctx, r, cfg.Rate, &next) {
			return
		}
		c.holding(ctx, r.IntN(l.keys))
	}
}

func (c *lockClient) mutex(k int) (*locks.Mutex, error) {
	if m := c.ms[k]; m != nil {
		return m, nil
	}
	m, err := locks.NewMutex(c.s, lockName(k), locks.WithLease(c.w.lease))
	if err != nil {
		return nil, err
	}
	c.ms[k] = m
	return m, nil
}

// holding runs one acquire and, if it succeeds, the writes and the
// release under it.
func (c *lockClient) holding(ctx context.Context, k int) {
	c.seq++
	v := check.LockValue{K: k, Holding: c.id + "." + strconv.Itoa(c.seq)}
	m, err := c.mutex(k)
	if err != nil {
		c.record(check.Invoke, "acquire", v, nil)
		c.record(check.Fail, "acquire", v, err)
		return
	}
	invoked := c.record(check.Invoke, "acquire", v, nil)
	// Wait for the lock at most a lease: long enough to outlast a dead
	// holder's lease, short enough that some acquires fail.
	actx, cancel := context.WithTimeout(context.Background(), min(c.cfg.OpTimeout, c.w.lease))
	got, err := m.TryLock(actx)
	cancel()
	if !got {
		// TryLock leaves nothing held when it does not succeed: the
		// acquire certainly did not happen.
		if err == nil {
			err = errors.New("still held by another at the deadline")
		}
		c.record(check.Fail, "acquire", v, err)
		return
	}
	v.Token = m.Token()
	lost := m.Lost()
	heldAt := invoked
	if t := c.record(check.OK, "acquire", v, nil); !chClosed(m.Lost()) { // a fresh look: Lost checks the deadline
		heldAt = t
	}
	f, ferr := c.w.fence(context.Background(), c.s, k)
	writes := c.r.IntN(4)
	if ferr != nil {
		writes = 0
	}
	pause := c.w.lease / 4
	for range writes {
		if ctx.Err() != nil {
			break
		}
		t := time.NewTimer(time.Duration(c.r.Int64N(int64(pause) + 1)))
		select {
		case <-t.C:
		case <-lost:
		case <-ctx.Done():
		}
		t.Stop()
		if chClosed(lost) || ctx.Err() != nil {
			break
		}
		heldAt = c.write(f, v, heldAt, false)
	}
	if chClosed(lost) && ferr == nil && ctx.Err() == nil && c.r.IntN(2) == 0 {
		heldAt = c.write(f, v, heldAt, true)
	}
	c.release(m, v, heldAt)
}

// write makes one fenced write and returns the holding's HeldAt, advanced
// to the write's invoke if Lost was still open then.
func (c *lockClient) write(f *refs.Atom[uint64], v check.LockValue, heldAt int64, stale bool) int64 {
	in := check.LockValue{K: v.K, Holding: v.Holding, Token: v.Token, Stale: stale}
	m := c.ms[v.K]
	t := c.record(check.Invoke, "write", in, nil)
	if !chClosed(m.Lost()) {
		heldAt = t
	}
	wctx, cancel := context.WithTimeout(context.Background(), c.cfg.OpTimeout)
	seen, err := fencedWrite(wctx, f, v.Token)
	cancel()
	out := in
	out.Seen, out.HeldAt = seen, heldAt
	switch {
	case err == nil:
		c.record(check.OK, "write", out, nil)
	case errors.Is(err, errStale):
		c.record(check.Fail, "write", out, err)
	default:
		out.Seen = 0
		c.record(check.Info, "write", out, err)
	}
	return heldAt
}

// release unlocks: ok (Lost set if the lease had been lost), or info if
// the outcome is unknown.
func (c *lockClient) release(m *locks.Mutex, v check.LockValue, heldAt int64) {
	in := check.LockValue{K: v.K, Holding: v.Holding, Token: v.Token}
	t := c.record(check.Invoke, "release", in, nil)
	if !chClosed(m.Lost()) {
		heldAt = t
	}
	rctx, cancel := context.WithTimeout(context.Background(), c.cfg.OpTimeout)
	err := m.Unlock(rctx)
	cancel()
	out := in
	out.HeldAt = heldAt
	switch {
	case err == nil:
		c.record(check.OK, "release", out, nil)
	case errors.Is(err, locks.ErrLost):
		// The lease ran out before the release: the holding ended at
		// some time after HeldAt, before now.
		out.Lost = true
		c.record(check.OK, "release", out, nil)
	default:
		// ErrNotHeld (the Mutex forgot the holding) or a backend error:
		// the Mutex no longer holds it, the lock is freed when the
		// removal or the lease ends.
		c.record(check.Info, "release", out, err)
	}
}
