// Package lease keeps a process's sessions (backend.Sessions) alive and
// says, by the local clock, when it can no longer be sure one is: the one
// mechanism under every mutex, read-write lock and group membership.
//
// A session is renewed every third of its lease. A renewal sent at t and
// answered with success proves the backend held the session at some time
// after t, so the backend cannot end it before t + lease: the session is
// sure until t + lease*Safety (a margin for clock-rate differences). When
// that local deadline passes without a newer successful renewal (a failed
// renewal, an unreachable server, a process paused by SIGSTOP or a long
// GC), Done is closed at once, before the backend can end the session and
// anyone else can take what it held; a renewal that succeeds after the
// deadline does not reopen it. The session is then closed on the backend,
// best effort, so what it held is freed early.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/epochal/epochal/backend"
)

// Safety is the part of the effective lease a client counts on after a
// successful renewal.
const Safety = 0.9

// Errors.
var (
	// ErrExpired: the local deadline passed without a successful renewal.
	ErrExpired = errors.New("lease: not renewed within the lease")
	// ErrUnsupported: the backend keeps no sessions.
	ErrUnsupported = errors.New("lease: the backend does not support sessions (locks, groups)")
	// ErrBadLease: a lease that is not positive.
	ErrBadLease = errors.New("lease: the lease must be positive")
)

// Holder describes this process for people: host, pid and program.
var Holder = func() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), filepath.Base(os.Args[0]))
}()

// Resolve returns the sessions of a store (Of), or ErrUnsupported.
func Resolve(store backend.SessionStore) (backend.Sessions, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: no store (nil)", ErrUnsupported)
	}
	ss := Of(store)
	if ss == nil {
		return nil, fmt.Errorf("%w: %T keeps no sessions", ErrUnsupported, store)
	}
	return ss, nil
}

// Of returns the sessions x offers, nil if none: x itself if it is a
// backend.Sessions, else what its Sessions method returns (an *stm.STM:
// its coordinator's). A store that is itself a backend.Sessions is used
// as it is, never through a Sessions method: a wrapper that embeds a
// driver and overrides some session calls inherits the driver's Sessions,
// which would hand out the driver underneath, without the overrides.
func Of(x any) backend.Sessions {
	if ss, ok := x.(backend.Sessions); ok {
		return ss
	}
	if st, ok := x.(backend.SessionStore); ok {
		return st.Sessions()
	}
	return nil
}

// Session is one live session and its renewer.
type Session struct {
	drv   backend.Sessions
	id    string
	lease time.Duration // effective
	done  chan struct{}
	stop  chan struct{} // closed by Close: stop renewing

	clk      clock
	obs      Observer
	mu       sync.Mutex
	deadline time.Time // monotonic
	timer    timer
	err      error // why it ended, once done
	closed   bool
	// removals are the background removals of entries (RemoveEntry's
	// retries, Abandon's repeats) still running, by dir and name.
	removals map[[2]string][]*removal

	// pool bookkeeping, under pool.mu
	key  poolKey
	refs int
	gen  int
}

// Open starts a session with a lease and keeps it renewed until Close or
// loss. It logs to slog.Default() (OpenWith).
func Open(ctx context.Context, drv backend.Sessions, lease time.Duration) (*Session, error) {
	return open(ctx, drv, lease, realClock{}, Observer{})
}

// Observer is who hears of a session's background events: Log returns,
// at each record, the logger of its errors (failed renewals, its loss, a
// failed close; nil: slog.Default() then), Lost counts its loss (nil:
// not counted).
type Observer struct {
	Log  func() *slog.Logger
	Lost metric.Int64Counter
}

// OpenWith is Open with the observer of the session's background events.
func OpenWith(ctx context.Context, drv backend.Sessions, lease time.Duration, obs Observer) (*Session, error) {
	return open(ctx, drv, lease, realClock{}, obs)
}

// logger returns the session's logger.
func (s *Session) logger() *slog.Logger {
	if s.obs.Log != nil {
		if l := s.obs.Log(); l != nil {
			return l
		}
	}
	return slog.Default()
}

func open(ctx context.Context, drv backend.Sessions, lease time.Duration, clk clock, obs Observer) (*Session, error) {
	if lease <= 0 {
		return nil, fmt.Errorf("%w: %v", ErrBadLease, lease)
	}
	var raw [12]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (it panics instead)
	id := hex.EncodeToString(raw[:])
	t0 := clk.Now()
	eff, err := drv.OpenSession(ctx, id, lease, Holder)
	if err != nil {
		// An unknown outcome leaves at most a session nobody renews:
		// the backend ends it within its lease.
		return nil, err
	}
	s := &Session{drv: drv, id: id, lease: eff, done: make(chan struct{}), stop: make(chan struct{}), clk: clk, obs: obs}
	s.mu.Lock()
	s.deadline = t0.Add(sure(eff))
	s.timer = clk.AfterFunc(s.deadline.Sub(clk.Now()), s.checkDeadline)
	s.mu.Unlock()
	if !clk.Now().Before(s.deadline) {
		s.lose(ErrExpired)
		return nil, fmt.Errorf("lease: session %s: %w", id, ErrExpired)
	}
	go s.renew()
	return s, nil
}

func sure(lease time.Duration) time.Duration { return time.Duration(float64(lease) * Safety) }

// ID is the session's id in the backend.
func (s *Session) ID() string { return s.id }

// Lease is the effective lease.
func (s *Session) Lease() time.Duration { return s.lease }

// Done is closed once the session can no longer be counted on. A timer
// closes it at the local deadline, but a process just resumed from a pause
// (SIGSTOP, a long GC) may run code before that timer fires: Done and Lost
// therefore look at the deadline themselves first, so a check made right
// before acting is exact. A channel kept from an earlier call is closed by
// the timer.
func (s *Session) Done() <-chan struct{} {
	s.expired()
	return s.done
}

// expired closes Done if the local deadline has passed.
func (s *Session) expired() {
	s.mu.Lock()
	passed := s.err == nil && !s.clk.Now().Before(s.deadline)
	s.mu.Unlock()
	if passed {
		s.lose(ErrExpired)
	}
}

// Err says why Done was closed (nil while it is open).
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Lost reports whether Done is closed (after looking at the deadline).
func (s *Session) Lost() bool {
	s.expired()
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Lose ends the session locally because a backend call found it gone.
func (s *Session) Lose(err error) { s.lose(err) }

func (s *Session) checkDeadline() {
	s.mu.Lock()
	d := s.deadline.Sub(s.clk.Now())
	if d > 0 && s.err == nil {
		s.timer.Reset(d)
	}
	s.mu.Unlock()
	if d <= 0 {
		s.lose(ErrExpired)
	}
}

func (s *Session) lose(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = err
	s.timer.Stop()
	close(s.done)
	closed := s.closed
	s.mu.Unlock()
	if !closed && errors.Is(err, backend.ErrClosed) {
		// The backend was closed under it (an orderly shutdown, while
		// the session lingered in the pool): it ends with it, no loss,
		// and there is nothing left to close.
		s.logger().Debug("epochal: session ended: its backend was closed", "session", s.id, "err", err)
		return
	}
	if !closed {
		if s.obs.Lost != nil {
			s.obs.Lost.Add(context.Background(), 1)
		}
		s.logger().Warn("epochal: session lost: whatever it held (locks, group memberships) is no longer its own", "session", s.id, "lease", s.lease, "err", err)
		// Free what it held early; the backend ends it anyway.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), s.lease)
			defer cancel()
			cerr := s.drv.CloseSession(ctx, s.id)
			switch {
			case cerr == nil, errors.Is(cerr, backend.ErrSessionGone), errors.Is(cerr, backend.ErrClosed):
			case errors.Is(err, backend.ErrSessionGone), errors.Is(err, backend.ErrDataLost):
				// The backend ended it already: nothing is left.
				s.logger().Debug("epochal: closing a lost session failed; the backend had ended it", "session", s.id, "err", cerr)
			default:
				// Lost by the local clock: the backend may hold it, and
				// its entries (locks, members), until its lease there.
				s.logger().Warn("epochal: closing a lost session failed; what it held stays taken until the backend ends it at its lease", "session", s.id, "lease", s.lease, "err", cerr)
			}
		}()
	}
}

// renew renews every third of the lease (sooner after a failure) until
// the session is closed or lost.
func (s *Session) renew() {
	period := s.lease / 3
	next := period
	for {
		c, t := s.clk.NewTimer(next)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-s.done:
			t.Stop()
			return
		case <-c:
		}
		s.mu.Lock()
		deadline := s.deadline
		s.mu.Unlock()
		sent := s.clk.Now()
		ctx, cancel := s.clk.WithDeadline(context.Background(), deadline)
		err := s.drv.RenewSession(ctx, s.id, time.Now())
		cancel()
		switch {
		case err == nil:
			s.mu.Lock()
			if s.err == nil && s.clk.Now().Before(s.deadline) {
				s.deadline = sent.Add(sure(s.lease))
				s.timer.Reset(s.deadline.Sub(s.clk.Now()))
				s.mu.Unlock()
			} else {
				s.mu.Unlock()
				s.lose(ErrExpired)
			}
			next = period
		case errors.Is(err, backend.ErrSessionGone), errors.Is(err, backend.ErrClosed), errors.Is(err, backend.ErrDataLost):
			s.lose(err) // ErrClosed: ended, not lost (see lose)
		default:
			s.logger().Warn("epochal: session renewal failed; trying again before the lease runs out", "session", s.id, "lease", s.lease, "err", err)
			next = period / 4 // try again soon; the deadline decides
		}
	}
}

// RemoveEntry removes the session's entry name from dir, waiting for it
// while ctx lasts. It keeps trying, in the background once ctx has ended,
// until the entry is gone (removed, or found gone) or the session is:
// an orphan entry of a live session would block a lock, or keep a member
// in its group. It returns the first attempt's error (backend.ErrEntryGone
// when the entry was already gone), or, if ctx ended before it came,
// ctx's error.
func (s *Session) RemoveEntry(ctx context.Context, dir, name string) error {
	return s.remove(ctx, dir, name, 0)
}

// DelayedKeep is how long after its removal an entry whose adding had an
// unknown outcome is looked for again (Abandon): how long a request may be
// delayed in the network, or in a stopped server's buffers, and still
// arrive. It is engine.TombstoneKeep, a transaction record's.
const DelayedKeep = time.Minute

// Abandon removes an entry whose adding had an unknown outcome, as
// RemoveEntry does. The add may still be on its way: a request delayed in
// the network, or waiting in a stopped server's buffers, can arrive after
// the removal (on Redis, over another connection: nothing orders the
// two), and would leave an orphan entry of a live session. So once the
// entry is gone it is removed again whenever it is found, for DelayedKeep
// or until the session ends or the session's AddEntry adds that entry
// again (which stops the repeats first). It returns what RemoveEntry
// does.
func (s *Session) Abandon(ctx context.Context, dir, name string) error {
	return s.remove(ctx, dir, name, DelayedKeep)
}

// AddEntry adds the session's entry req.Name to req.Dir (req.Session is
// set to the session's id). It first stops every removal of that entry
// this session still runs in the background (RemoveEntry's retries,
// Abandon's repeats) and waits until none is in flight, or ctx ends (its
// error): the backend's removal names the entry, so a removal retried
// after the add would delete the new entry. Adding is idempotent for the
// session: if the old entry is still there, it is the one returned.
func (s *Session) AddEntry(ctx context.Context, req backend.AddEntryRequest) (backend.Entry, error) {
	s.mu.Lock()
	rs := s.removals[[2]string{req.Dir, req.Name}]
	s.mu.Unlock()
	for _, r := range rs {
		if err := r.stop(ctx); err != nil {
			return backend.Entry{}, err
		}
	}
	req.Session = s.id
	return s.drv.AddEntry(ctx, req)
}

// removal is one entry's removal running in the background.
type removal struct {
	dir, name  string
	once       sync.Once
	quit, done chan struct{}
}

// stop ends the removal's repeats and returns once no attempt of it is in
// flight, or when ctx ends (its error).
func (r *removal) stop(ctx context.Context) error {
	r.once.Do(func() { close(r.quit) })
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("lease: stop removing entry %q of %q: %w", r.name, r.dir, ctx.Err())
	}
}

// track registers r with the session until it is done.
func (s *Session) track(r *removal) {
	k := [2]string{r.dir, r.name}
	s.mu.Lock()
	if s.removals == nil {
		s.removals = make(map[[2]string][]*removal)
	}
	s.removals[k] = append(s.removals[k], r)
	s.mu.Unlock()
	go func() {
		<-r.done
		s.mu.Lock()
		defer s.mu.Unlock()
		rs := slices.DeleteFunc(s.removals[k], func(x *removal) bool { return x == r })
		if len(rs) == 0 {
			delete(s.removals, k)
		} else {
			s.removals[k] = rs
		}
	}()
}

// remove is RemoveEntry, and with linger > 0 Abandon.
func (s *Session) remove(ctx context.Context, dir, name string, linger time.Duration) error {
	try := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), s.lease)
		defer cancel()
		return s.drv.RemoveEntry(ctx, s.id, dir, name)
	}
	gone := func(err error) bool {
		return err == nil || errors.Is(err, backend.ErrEntryGone) || errors.Is(err, backend.ErrClosed)
	}
	first := make(chan error, 1)
	r := &removal{dir: dir, name: name, quit: make(chan struct{}), done: make(chan struct{})}
	quit, done := r.quit, r.done
	s.track(r)
	go func() {
		defer close(done)
		err := try()
		first <- err          // the caller reports this one
		var until time.Time   // set once gone: look again until then
		var failing time.Time // since when the removal fails (zero: it does not)
		warned := false
		for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
			if !gone(err) {
				// A persistent failure leaves an orphan entry of a live
				// session (a lock blocked, a member kept): said once,
				// after a lease; the retries before it are expected.
				now := time.Now()
				if failing.IsZero() {
					failing = now
				} else if !warned && now.Sub(failing) >= s.lease {
					warned = true
					s.logger().Warn("epochal: a session's entry could not be removed for a lease; it keeps trying until the entry or the session is gone", "session", s.id, "dir", dir, "entry", name, "err", err)
				} else if !warned {
					s.logger().Debug("epochal: removing a session's entry failed; it tries again", "session", s.id, "dir", dir, "entry", name, "err", err)
				}
			} else {
				if warned {
					s.logger().Info("epochal: a session's entry that could not be removed is gone", "session", s.id, "dir", dir, "entry", name)
				}
				failing, warned = time.Time{}, false
			}
			if gone(err) {
				if linger <= 0 || errors.Is(err, backend.ErrClosed) {
					return
				}
				if until.IsZero() {
					until = time.Now().Add(linger)
				}
				if time.Now().After(until) {
					return
				}
			}
			t := time.NewTimer(wait)
			select {
			case <-s.Done():
				t.Stop()
				return // the backend removes its entries
			case <-quit:
				t.Stop()
				return
			case <-t.C:
			}
			err = try()
		}
	}()
	var err error
	select {
	case err = <-first:
	case <-ctx.Done():
		select {
		case err = <-first:
		default:
			return fmt.Errorf("lease: remove entry %q of %q: %w (the removal goes on in the background)", name, dir, ctx.Err())
		}
	}
	if gone(err) {
		return err
	}
	return fmt.Errorf("%w (the removal goes on in the background)", err)
}

// Close stops renewing and ends the session on the backend.
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	s.mu.Unlock()
	err := s.drv.CloseSession(ctx, s.id)
	s.lose(errClosed)
	return err
}

var errClosed = errors.New("lease: session closed")

// --- the pool: one shared session per backend and lease in a process ---

type poolKey struct {
	drv   backend.Sessions
	lease time.Duration
}

// opening is an OpenSession in flight for a key: callers for the same key
// wait for it (each as long as its own ctx allows) instead of opening
// another.
type opening struct {
	done    chan struct{} // closed when the open has returned
	waiters int           // callers waiting for it (for tests)
}

// pool.mu guards the maps and the sessions' refs and gen; it is never held
// across a call to the backend, so a backend that does not answer holds up
// only the callers of its own key.
var pool struct {
	mu    sync.Mutex
	m     map[poolKey]*Session
	opens map[poolKey]*opening
	gen   int
}

// Linger is how long an unused pooled session stays open, so that a lock
// taken and released in a loop does not open a session each time.
var Linger = 5 * time.Second

// Acquire returns this process's live session for drv and lease, opening
// one if needed; Release gives it back. A session opened here logs its
// background errors to slog.Default() (AcquireWith). Concurrent callers for the same
// drv and lease share one OpenSession in flight, each waiting no longer
// than its own ctx; if that open fails, a caller still waiting opens
// again with its own ctx. No caller ever waits for another key's open.
func Acquire(ctx context.Context, drv backend.Sessions, lease time.Duration) (*Session, error) {
	return AcquireWith(ctx, drv, lease, Observer{})
}

// AcquireWith is Acquire whose session, if it opens one, reports to obs.
// A pooled session is shared: it reports to the observer of the caller
// that opened it.
func AcquireWith(ctx context.Context, drv backend.Sessions, lease time.Duration, obs Observer) (*Session, error) {
	k := poolKey{drv, lease}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pool.mu.Lock()
		if s := pool.m[k]; s != nil && !s.Lost() {
			s.refs++
			pool.mu.Unlock()
			return s, nil
		}
		if op := pool.opens[k]; op != nil {
			op.waiters++
			pool.mu.Unlock()
			var err error
			select {
			case <-op.done: // take its session, or open again
			case <-ctx.Done():
				err = ctx.Err()
			}
			pool.mu.Lock()
			op.waiters--
			pool.mu.Unlock()
			if err != nil {
				return nil, err
			}
			continue
		}
		op := &opening{done: make(chan struct{})}
		if pool.opens == nil {
			pool.opens = make(map[poolKey]*opening)
		}
		pool.opens[k] = op
		pool.mu.Unlock()

		s, err := OpenWith(ctx, drv, lease, obs)

		pool.mu.Lock()
		delete(pool.opens, k)
		if err == nil {
			if pool.m == nil {
				pool.m = make(map[poolKey]*Session)
			}
			s.key, s.refs = k, 1
			pool.m[k] = s
		}
		pool.mu.Unlock()
		close(op.done)
		return s, err
	}
}

// Release gives back a session from Acquire. An unused session is closed
// after Linger.
func (s *Session) Release() {
	pool.mu.Lock()
	defer pool.mu.Unlock()
	s.refs--
	if s.refs > 0 {
		return
	}
	if s.Lost() {
		if pool.m[s.key] == s {
			delete(pool.m, s.key)
		}
		return
	}
	pool.gen++
	s.gen = pool.gen
	gen := s.gen
	time.AfterFunc(Linger, func() {
		pool.mu.Lock()
		idle := s.refs == 0 && s.gen == gen
		if idle && pool.m[s.key] == s {
			delete(pool.m, s.key)
		}
		pool.mu.Unlock()
		if idle {
			ctx, cancel := context.WithTimeout(context.Background(), s.lease)
			defer cancel()
			switch err := s.Close(ctx); {
			case err == nil:
			case errors.Is(err, backend.ErrClosed):
				s.logger().Debug("epochal: an idle session was not closed: its backend was closed already", "session", s.id, "err", err)
			default:
				s.logger().Warn("epochal: closing an idle session failed; the backend ends it at its lease", "session", s.id, "err", err)
			}
		}
	})
}

// clock is what a session measures its lease by: the real clock, or a
// test's (internal tests advance it by hand, so that no test depends on
// how fast the machine runs).
type clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) timer
	NewTimer(d time.Duration) (<-chan time.Time, timer)
	// WithDeadline is context.WithDeadline by this clock.
	WithDeadline(ctx context.Context, d time.Time) (context.Context, context.CancelFunc)
}

type timer interface {
	Stop() bool
	Reset(d time.Duration) bool
}

type realClock struct{}

func (realClock) Now() time.Time                            { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) timer { return time.AfterFunc(d, f) }
func (realClock) NewTimer(d time.Duration) (<-chan time.Time, timer) {
	t := time.NewTimer(d)
	return t.C, t
}
func (realClock) WithDeadline(ctx context.Context, d time.Time) (context.Context, context.CancelFunc) {
	return context.WithDeadline(ctx, d)
}

// LockDirPrefix is the prefix of every lock's dir (package locks) among a
// backend's session dirs; the rest is the lock's name. The CLI lists locks
// by it.
const LockDirPrefix = "lock/"

// Lock entries are named by their mode, a dot and a random id.
const (
	ModeWrite = "w"
	ModeRead  = "r"
)

// EntryMode tells a lock entry's mode from its name: "write" or "read".
func EntryMode(entryName string) string {
	if len(entryName) > 1 && entryName[:2] == ModeRead+"." {
		return "read"
	}
	return "write"
}
