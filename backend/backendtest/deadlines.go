package backendtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
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
				opts = append(opts, stm.WithGeneralPath())
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
