package stm_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/faulty"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/internal/testkit/logrec"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// loggedSTM opens an STM over a faulty wrapper of a mem backend, logging
// to a recorder, with opts after WithLogger.
func loggedSTM(t *testing.T, opts ...stm.Option) (*stm.STM, faulty.Wrapped, *logrec.Handler) {
	t.Helper()
	be := mem.New()
	t.Cleanup(func() { _ = be.Close() })
	f := faulty.Wrap(be)
	h, log := logrec.New()
	s, err := stm.Open(context.Background(), f, append([]stm.Option{stm.WithLogger(log)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, f, h
}

// A failed background sweep is logged, with the coordinator and the
// error, to the STM's logger.
func TestSweepFailureLogged(t *testing.T) {
	ctx := context.Background()
	_, f, h := loggedSTM(t, stm.WithSweepInterval(time.Millisecond))
	f.SetHook(func(c faulty.Call) faulty.Fault {
		if c.Op == faulty.OpListRecords {
			return faulty.FailBefore
		}
		return faulty.Pass
	})
	wctx, cancel := context.WithTimeout(ctx, time.Minute) // a bound, not a timing
	defer cancel()
	r, ok := h.Wait(wctx, func(r logrec.Record) bool {
		return r.Message == "epochal: the background sweep failed; the next one tries again"
	})
	if !ok {
		t.Fatalf("no sweep failure logged; records: %v", h.Records())
	}
	if err, _ := r.Attrs["err"].(error); !errors.Is(err, faulty.ErrInjected) {
		t.Errorf("err = %v, want the injected fault", r.Attrs["err"])
	}
	if r.Attrs["coordinator"] != f.ID() {
		t.Errorf("coordinator = %v, want %s", r.Attrs["coordinator"], f.ID())
	}
}

// A failed cleanup after a commit (here deleting the committed record) is
// logged with the transaction's id; the commit itself succeeds.
func TestCleanupFailureLogged(t *testing.T) {
	ctx := context.Background()
	s, f, h := loggedSTM(t, stm.WithSweepInterval(0), engine.WithGeneralPath())
	r, err := refs.New(ctx, s, "log/a", 0)
	if err != nil {
		t.Fatal(err)
	}
	f.SetHook(func(c faulty.Call) faulty.Fault {
		if c.Op == faulty.OpDeleteRecord {
			return faulty.FailBefore
		}
		return faulty.Pass
	})
	var id string
	if err := s.Dosync(ctx, func(tx *txn.Tx) error {
		id = tx.ID()
		r.Set(tx, 1)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// With a ctx that never ends, the cleanup ran on Dosync's goroutine.
	var found bool
	for _, rec := range h.Records() {
		if rec.Message == "epochal: a commit's cleanup failed; readers and the sweeper finish it" && rec.Attrs["txn"] == id {
			found = true
			if rec.Attrs["step"] != "delete the committed record" {
				t.Errorf("step = %v", rec.Attrs["step"])
			}
		}
	}
	if !found {
		t.Fatalf("no cleanup failure logged for %s; records: %v", id, h.Records())
	}
}

// A commit whose CommitRecord failed and whose outcome could not be
// learned either (AbortRecord failed too) returns ErrOutcomeUnknown and
// logs the failed lookup with the transaction's id.
func TestUnknownOutcomeLogged(t *testing.T) {
	t.Run("general", func(t *testing.T) { testUnknownOutcomeLogged(t, true) })
	t.Run("one_phase", func(t *testing.T) { testUnknownOutcomeLogged(t, false) })
}

func testUnknownOutcomeLogged(t *testing.T, general bool) {
	ctx := context.Background()
	opts := []stm.Option{stm.WithSweepInterval(0)}
	if general {
		opts = append(opts, engine.WithGeneralPath())
	}
	s, f, h := loggedSTM(t, opts...)
	r, err := refs.New(ctx, s, "log/a", 0)
	if err != nil {
		t.Fatal(err)
	}
	f.SetHook(func(c faulty.Call) faulty.Fault {
		if c.Op == faulty.OpCommitRecord || c.Op == faulty.OpCommitOnePhase || c.Op == faulty.OpAbortRecord {
			return faulty.FailBefore
		}
		return faulty.Pass
	})
	var id string
	err = s.Dosync(ctx, func(tx *txn.Tx) error {
		id = tx.ID()
		r.Set(tx, 1)
		return nil
	})
	if !errors.Is(err, stm.ErrOutcomeUnknown) {
		t.Fatalf("Dosync = %v, want ErrOutcomeUnknown", err)
	}
	for _, rec := range h.Records() {
		if rec.Attrs["txn"] == id && rec.Attrs["step"] == "learn the outcome of a failed commit" {
			if e, _ := rec.Attrs["err"].(error); !errors.Is(e, faulty.ErrInjected) {
				t.Fatalf("err = %v, want the injected fault", rec.Attrs["err"])
			}
			return
		}
	}
	t.Fatalf("no failed lookup logged for %s: %v", id, h.Records())
}

// An atom's change whose outcome could not be learned logs the failed
// lookup with the ref's name.
func TestAtomUnknownOutcomeLogged(t *testing.T) {
	ctx := context.Background()
	s, f, h := loggedSTM(t, stm.WithSweepInterval(0))
	a, err := refs.NewAtom(ctx, s, "log/atom", 0)
	if err != nil {
		t.Fatal(err)
	}
	f.SetHook(func(c faulty.Call) faulty.Fault {
		if c.Op == faulty.OpCommitOnePhase || c.Op == faulty.OpAbortRecord {
			return faulty.FailBefore
		}
		return faulty.Pass
	})
	if err := a.Reset(ctx, 1); !errors.Is(err, stm.ErrOutcomeUnknown) {
		t.Fatalf("Reset = %v, want ErrOutcomeUnknown", err)
	}
	for _, rec := range h.Records() {
		if rec.Message == "epochal: learning the outcome of a change failed; its record's lease settles it" && rec.Attrs["ref"] == "log/atom" {
			return
		}
	}
	t.Fatalf("no failed lookup logged: %v", h.Records())
}

// A record naming a backend this STM does not know is left for a process
// that knows it, and logged once (not at every sweep).
func TestUnknownBackendLoggedOnce(t *testing.T) {
	ctx := context.Background()
	s, be, h := loggedSTM(t, stm.WithSweepInterval(0))
	past := time.Now().Add(-time.Hour)
	rec := backend.Record{ID: "log-unknown", Created: past, Lease: past, Refs: []backend.RefAddr{{Backend: "elsewhere", Name: "x"}}}
	if _, err := be.PutRecord(ctx, rec); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := s.Recover(ctx); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for _, r := range h.Records() {
		if r.Message == "epochal: a transaction record names a backend this STM does not know; it is left for a process that knows it" {
			n++
			if r.Attrs["txn"] != "log-unknown" || r.Level != slog.LevelWarn {
				t.Errorf("record %+v", r)
			}
			if e, _ := r.Attrs["err"].(error); !errors.Is(e, engine.ErrUnknownBackend) {
				t.Errorf("err = %v, want ErrUnknownBackend", r.Attrs["err"])
			}
		}
	}
	if n != 1 {
		t.Fatalf("logged %d times over 3 sweeps, want once: %v", n, h.Records())
	}
}
