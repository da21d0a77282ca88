package backendtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/group"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/locks"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// stallDeadline is the deadline of a Dosync that meets a stalled step, and
// stallBound how late past it the Dosync may return: generous for a loaded
// machine, far below the lease (and the 5 s least cleanup time) that the
// engine's cleanup once made the caller wait for.
const (
	stallDeadline = 300 * time.Millisecond
	stallBound    = time.Second
)

// stalling is a driver whose server stops answering at one commit step:
// from the first call of that step on, every call that changes state waits
// until the test lets the server go on (then it is applied) or until its
// ctx ends. A call whose ctx ended first fails as one the server did not
// answer (an unknown outcome), and is applied later anyway, once the
// server goes on: a request delayed in the network.
type stalling struct {
	backend.Driver
	one backend.OnePhase

	mu       sync.Mutex
	at       string // the step that stalls the server ("" none)
	stalled  bool
	released bool
	release  chan struct{}
	late     sync.WaitGroup // calls that met the stall, not applied yet
}

// goOn lets the server go on, and waits until every call that met the
// stall (a delayed one included) has been applied.
func (s *stalling) goOn() {
	s.mu.Lock()
	s.released = true
	close(s.release)
	s.mu.Unlock()
	s.late.Wait()
}

func (s *stalling) stall(ctx context.Context, step string, f func(ctx context.Context) error) error {
	s.mu.Lock()
	if step == s.at {
		s.stalled = true
	}
	stalled := s.stalled && !s.released
	if stalled {
		s.late.Add(1)
	}
	release := s.release
	s.mu.Unlock()
	if !stalled {
		return f(ctx)
	}
	select {
	case <-release:
		defer s.late.Done()
		return f(ctx)
	case <-ctx.Done():
		go func() {
			defer s.late.Done()
			<-release
			_ = f(context.Background())
		}()
		return fmt.Errorf("backendtest: %s: no answer from the stalled server: %w", step, ctx.Err())
	}
}

func (s *stalling) PutRecord(ctx context.Context, r backend.Record) (ok bool, err error) {
	err = s.stall(ctx, "PutRecord", func(ctx context.Context) (e error) { ok, e = s.Driver.PutRecord(ctx, r); return })
	return
}

func (s *stalling) CommitRecord(ctx context.Context, id string) (r backend.Record, err error) {
	err = s.stall(ctx, "CommitRecord", func(ctx context.Context) (e error) { r, e = s.Driver.CommitRecord(ctx, id); return })
	return
}

func (s *stalling) AbortRecord(ctx context.Context, id string) (r backend.Record, err error) {
	err = s.stall(ctx, "AbortRecord", func(ctx context.Context) (e error) { r, e = s.Driver.AbortRecord(ctx, id); return })
	return
}

func (s *stalling) DeleteRecord(ctx context.Context, id string, keep time.Duration) error {
	return s.stall(ctx, "DeleteRecord", func(ctx context.Context) error { return s.Driver.DeleteRecord(ctx, id, keep) })
}

func (s *stalling) Lock(ctx context.Context, req backend.LockRequest) (r backend.LockResult, err error) {
	err = s.stall(ctx, "Lock", func(ctx context.Context) (e error) { r, e = s.Driver.Lock(ctx, req); return })
	return
}

func (s *stalling) Stage(ctx context.Context, id string, items []backend.StageItem) (ok bool, err error) {
	err = s.stall(ctx, "Stage", func(ctx context.Context) (e error) { ok, e = s.Driver.Stage(ctx, id, items); return })
	return
}

func (s *stalling) Resolve(ctx context.Context, req backend.ResolveRequest) error {
	return s.stall(ctx, "Resolve", func(ctx context.Context) error { return s.Driver.Resolve(ctx, req) })
}

func (s *stalling) CommitOnePhase(ctx context.Context, req backend.OnePhaseRequest) (r backend.OnePhaseResult, err error) {
	err = s.stall(ctx, "CommitOnePhase", func(ctx context.Context) (e error) { r, e = s.one.CommitOnePhase(ctx, req); return })
	return
}

// testStalledStep: the server stops answering at one step of a commit
// (CommitOnePhase on the fast path; PutRecord, Lock, CommitRecord or
// Resolve on the general path) and goes on only after the Dosync has
// returned. The Dosync returns within stallBound of its deadline: with an
// error wrapping context.DeadlineExceeded (stm.ErrOutcomeUnknown when the
// commit may have happened), or nil when the commit point was drawn and
// only the roll-forward stalled. The cleanup (learning the outcome,
// undoing or rolling forward) went on in the background: once the server
// answers, the ref holds the commit exactly when the Dosync said so (or
// either way for an unknown outcome), no record is left, and the ref can
// be changed at once. A review found the engine waiting for that cleanup,
// on a ctx of its own bounded by the lease (5 s at least), before Dosync
// returned: a caller with a 300 ms deadline got its answer 5 s late.
func testStalledStep(t *testing.T, newDriver NewDriver) {
	for _, c := range []struct {
		step    string
		general bool
	}{
		{"CommitOnePhase", false},
		{"PutRecord", true}, {"Lock", true}, {"CommitRecord", true}, {"Resolve", true},
	} {
		t.Run(c.step, func(t *testing.T) {
			raw := newDriver(t)
			one, ok := raw.(backend.OnePhase)
			if !ok {
				t.Skip("the driver has no one-phase commit")
			}
			st := &stalling{Driver: raw, one: one, release: make(chan struct{})}
			opts := []stm.Option{stm.WithLease(time.Second)}
			if c.general {
				opts = append(opts, engine.WithGeneralPath())
			}
			s := open(t, st, opts...)
			r := newRef(t, s, uniq("ctr"), 0)
			st.mu.Lock()
			st.at = c.step
			st.mu.Unlock()

			ctx, cancel := context.WithTimeout(context.Background(), stallDeadline)
			deadline, _ := ctx.Deadline()
			err := s.Dosync(ctx, func(tx *txn.Tx) error {
				r.Set(tx, r.Get(tx)+1)
				return nil
			})
			late := time.Since(deadline)
			cancel()
			st.goOn()
			if late > stallBound {
				t.Errorf("Dosync stalled at %s returned %v after its deadline (bound %v): %v", c.step, late.Round(time.Millisecond), stallBound, err)
			}
			unknown := errors.Is(err, stm.ErrOutcomeUnknown)
			if err != nil && (strings.Contains(err.Error(), "%!") || strings.Count(err.Error(), context.DeadlineExceeded.Error()) != 1) {
				t.Errorf("Dosync stalled at %s: %q: the error should say once why the caller's ctx ended", c.step, err)
			}
			switch {
			case c.step == "Resolve":
				if err != nil {
					t.Errorf("Dosync stalled at the roll-forward, after its commit point: %v, want nil (committed)", err)
				}
			case !errors.Is(err, context.DeadlineExceeded):
				t.Errorf("Dosync stalled at %s: %v, want an error wrapping context.DeadlineExceeded", c.step, err)
			case (c.step == "CommitOnePhase" || c.step == "CommitRecord") != unknown:
				t.Errorf("Dosync stalled at %s: %v; stm.ErrOutcomeUnknown: %v, want %v", c.step, err, unknown, !unknown)
			}

			// The ref changes at once (within the lease, should an
			// intent of the stalled attempt still be pending), and holds
			// what the Dosync said.
			if err := s.Dosync(tctx(t), func(tx *txn.Tx) error {
				r.Set(tx, r.Get(tx)+10)
				return nil
			}); err != nil {
				t.Fatalf("Dosync after the server went on: %v", err)
			}
			v := deref(t, r)
			want := []int{10}
			switch {
			case err == nil:
				want = []int{11}
			case unknown:
				want = []int{10, 11}
			}
			if v != want[0] && v != want[len(want)-1] {
				t.Errorf("after Dosync stalled at %s returned %v, and +10: %d, want %v", c.step, err, v, want)
			}
			// The cleanup leaves nothing behind: what it did not finish
			// in the background, a sweep does once the lease is over.
			start := time.Now()
			for {
				if _, err := s.Recover(tctx(t)); err != nil {
					t.Fatal(err)
				}
				recs, err := raw.ListRecords(tctx(t))
				if err != nil {
					t.Fatal(err)
				}
				var left []backend.Record
				for _, rec := range recs {
					if rec.Status != backend.Aborted { // tombstones stay for a while
						left = append(left, rec)
					}
				}
				if len(left) == 0 {
					break
				}
				if time.Since(start) > wait {
					t.Fatalf("records left %v after the stall at %s: %+v", wait, c.step, left)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// sessionAPI is backend.Sessions under a name that leaves the wrappers
// below free to be backend.SessionStores (their Sessions method).
type sessionAPI = backend.Sessions

func (d *delayedAdd) Sessions() backend.Sessions    { return d }
func (d *retriedRemove) Sessions() backend.Sessions { return d }

// delayedAdd is a driver whose next AddEntry, once armed, gets no answer
// until its ctx ends (an unknown outcome for the caller) and reaches the
// store only when the test lets it, after the caller's cleanup removed
// the entry: a request delayed in the network, or in a stopped server's
// buffers, overtaken by the removal sent on another connection (nothing
// orders two Redis connections).
type delayedAdd struct {
	backend.Driver
	sessionAPI

	mu      sync.Mutex
	armed   bool
	name    string        // the entry whose add is delayed
	removed chan struct{} // closed when a removal of it has returned
	release chan struct{}
	applied chan error
}

func (d *delayedAdd) arm() {
	d.mu.Lock()
	d.armed, d.name = true, ""
	d.removed, d.release, d.applied = make(chan struct{}), make(chan struct{}), make(chan error, 1)
	d.mu.Unlock()
}

func (d *delayedAdd) AddEntry(ctx context.Context, req backend.AddEntryRequest) (backend.Entry, error) {
	d.mu.Lock()
	if !d.armed {
		d.mu.Unlock()
		return d.sessionAPI.AddEntry(ctx, req)
	}
	d.armed, d.name = false, req.Name
	release, applied := d.release, d.applied
	d.mu.Unlock()
	<-ctx.Done()
	go func() {
		<-release
		_, err := d.sessionAPI.AddEntry(context.Background(), req)
		applied <- err
	}()
	return backend.Entry{}, fmt.Errorf("backendtest: add entry %q: no answer: %w", req.Name, ctx.Err())
}

func (d *delayedAdd) RemoveEntry(ctx context.Context, session, dir, name string) error {
	err := d.sessionAPI.RemoveEntry(ctx, session, dir, name)
	d.mu.Lock()
	if name == d.name && d.removed != nil {
		select {
		case <-d.removed:
		default:
			close(d.removed)
		}
	}
	d.mu.Unlock()
	return err
}

// deliver lets the delayed add reach the store once its removal has
// returned, and waits until it has.
func (d *delayedAdd) deliver(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	removed, release, applied := d.removed, d.release, d.applied
	d.mu.Unlock()
	recv(t, removed, "the cleanup's removal of the entry whose add had no answer")
	close(release)
	if err := recv(t, applied, "the delayed add"); err != nil {
		t.Fatalf("the delayed add did not apply: %v", err)
	}
}

// testOrphanOfDelayedAdd: a Lock (and a group Join) whose add gets no
// answer by its deadline removes the entry; the add arrives after the
// removal. The entry so added belongs to the process's pooled session,
// which other holdings keep alive: before, it stayed, and the lock was
// blocked (the name a ghost member) for as long as the process held
// anything else there. Now it is removed again when it shows up, and a
// later Join of the name is not removed by those repeats.
func testOrphanOfDelayedAdd(t *testing.T, newDriver NewDriver) {
	const lease = time.Minute // no renewal is missed: the orphan's session stays
	setup := func(t *testing.T) *delayedAdd {
		raw := newDriver(t)
		ss, ok := raw.(backend.Sessions)
		if !ok {
			t.Skip("the driver keeps no sessions")
		}
		d := &delayedAdd{Driver: raw, sessionAPI: ss}
		// Another lock of this process keeps the pooled session alive.
		keep, err := locks.NewMutex(d, uniq("keep"), locks.WithLease(lease))
		if err != nil {
			t.Fatal(err)
		}
		if err := keep.Lock(tctx(t)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = keep.Unlock(context.Background()) })
		return d
	}
	t.Run("Lock", func(t *testing.T) {
		d := setup(t)
		name := uniq("lock")
		m, err := locks.NewMutex(d, name, locks.WithLease(lease))
		if err != nil {
			t.Fatal(err)
		}
		d.arm()
		ctx, cancel := context.WithTimeout(tctx(t), stallDeadline)
		err = m.Lock(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Lock whose add got no answer: %v, want context.DeadlineExceeded", err)
		}
		d.deliver(t)
		other, err := locks.NewMutex(d, name, locks.WithLease(lease))
		if err != nil {
			t.Fatal(err)
		}
		lctx, lcancel := context.WithTimeout(tctx(t), wait)
		defer lcancel()
		if err := other.Lock(lctx); err != nil {
			t.Fatalf("the lock stays blocked by the entry of the delayed add: %v", err)
		}
		if err := other.Unlock(tctx(t)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Join", func(t *testing.T) {
		d := setup(t)
		grp := uniq("grp")
		d.arm()
		ctx, cancel := context.WithTimeout(tctx(t), stallDeadline)
		_, err := group.Join(ctx, d, grp, "b", group.WithLease(lease))
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Join whose add got no answer: %v, want context.DeadlineExceeded", err)
		}
		d.deliver(t)
		members := func() []string {
			ms, err := group.Members(tctx(t), d, grp)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range ms {
				names = append(names, m.Name)
			}
			return names
		}
		start := time.Now()
		for len(members()) != 0 {
			if time.Since(start) > wait {
				t.Fatalf("a member that never joined is still listed %v later: %v", wait, members())
			}
			time.Sleep(20 * time.Millisecond)
		}
		g, err := group.Join(tctx(t), d, grp, "b", group.WithLease(lease))
		if err != nil {
			t.Fatalf("Join after the delayed add was removed: %v", err)
		}
		defer func() { _ = g.Leave(tctx(t)) }()
		// The repeats of the removal (at most a second apart) are over.
		time.Sleep(2500 * time.Millisecond)
		if got := members(); len(got) != 1 || got[0] != "b" {
			t.Fatalf("members after b joined again: %v, want [b]", got)
		}
	})
}

// retriedRemove is a driver whose next RemoveEntry, once armed, fails
// without removing anything (a connection reset before the request went
// out), and whose removal after that reaches the store only when the test
// lets it: the caller's background retry, in flight.
type retriedRemove struct {
	backend.Driver
	sessionAPI

	mu       sync.Mutex
	name     string        // the entry whose removals are scripted
	armed    int           // removals still to script: 2, 1, then 0
	retrying chan struct{} // closed when the retry has arrived
	release  chan struct{}
	applied  chan struct{} // closed when the retry has applied
	added    chan struct{} // closed when an add arrives while the retry waits
}

func (d *retriedRemove) arm(name string) {
	d.mu.Lock()
	d.name, d.armed = name, 2
	d.retrying, d.release, d.applied, d.added = make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan struct{})
	d.mu.Unlock()
}

func (d *retriedRemove) RemoveEntry(ctx context.Context, session, dir, name string) error {
	d.mu.Lock()
	var n int
	if name == d.name {
		n = d.armed
		d.armed = max(n-1, 0)
	}
	d.mu.Unlock()
	switch n {
	case 2:
		return fmt.Errorf("backendtest: remove entry %q: connection reset (nothing sent)", name)
	case 1:
		close(d.retrying)
		<-d.release
		defer close(d.applied)
	}
	return d.sessionAPI.RemoveEntry(ctx, session, dir, name)
}

func (d *retriedRemove) AddEntry(ctx context.Context, req backend.AddEntryRequest) (backend.Entry, error) {
	d.mu.Lock()
	if req.Name == d.name && d.armed == 0 && d.added != nil {
		select {
		case <-d.applied:
		default:
			select {
			case <-d.added:
			default:
				close(d.added)
			}
		}
	}
	d.mu.Unlock()
	return d.sessionAPI.AddEntry(ctx, req)
}

// testRejoinDuringLeaveRetry: a member's Leave whose removal failed goes
// on removing its entry in the background; the name joins again (through
// the same pooled session) while that retry is in flight. The retry must
// not delete the new member's entry: found under load by TestDeadlines,
// where a Join after the fault returned and Members listed nobody.
func testRejoinDuringLeaveRetry(t *testing.T, newDriver NewDriver) {
	const lease = time.Minute
	raw := newDriver(t)
	ss, ok := raw.(backend.Sessions)
	if !ok {
		t.Skip("the driver keeps no sessions")
	}
	d := &retriedRemove{Driver: raw, sessionAPI: ss}
	grp := uniq("grp")
	g, err := group.Join(tctx(t), d, grp, "a", group.WithLease(lease))
	if err != nil {
		t.Fatal(err)
	}
	// Another member keeps the pooled session alive through the Leave.
	keep, err := group.Join(tctx(t), d, grp, "keep", group.WithLease(lease))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = keep.Leave(context.Background()) }()
	d.arm("a")
	if err := g.Leave(tctx(t)); err == nil {
		t.Fatal("Leave whose removal failed returned nil")
	}
	recv(t, d.retrying, "the Leave's background retry")
	joined := make(chan error, 1)
	var again *group.Group
	go func() {
		var err error
		again, err = group.Join(tctx(t), d, grp, "a", group.WithLease(lease))
		joined <- err
	}()
	// A Join that does not wait for the retry adds its entry now; give it
	// the chance (a fixed one waits, and is never helped by this).
	select {
	case <-d.added:
	case <-time.After(200 * time.Millisecond):
	}
	close(d.release)
	recv(t, d.applied, "the retried removal")
	if err := recv(t, joined, "the second Join"); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = again.Leave(context.Background()) }()
	ms, err := group.Members(tctx(t), d, grp)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
	}
	if !slices.Contains(names, "a") {
		t.Fatalf("members after a joined again: %v: the Leave's retried removal deleted the new entry", names)
	}
}
