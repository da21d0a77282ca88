package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
)

// DefaultWait is how long an older transaction that needs a ref for a
// checked write or ensure waits on a younger live holder before aborting
// it.
const DefaultWait = 2 * time.Millisecond

// maxPause bounds the pause between two looks at a holder's record while a
// transaction waits for it.
const maxPause = 5 * time.Millisecond

// TombstoneKeep is how long an aborted record is kept after its intents are
// rolled back, so that a delayed duplicate request meets it and applies
// nothing.
const TombstoneKeep = time.Minute

// Resolver decides what to do about intents and records met by a
// transaction.
type Resolver struct {
	Coord  backend.Driver
	Wall   clock.Wall
	Lookup func(id string) backend.Driver // backends by ID; nil if unknown
	Wait   time.Duration
	// TrustMissing believes a lookup that reports a record missing,
	// without confirming it: a deliberate protocol bug for proving the
	// checkers (Faults.TrustMissingRecord). Never set it otherwise.
	TrustMissing bool
	// Log returns the logger of what Sweep skips (nil: slog.Default()).
	Log func() *slog.Logger

	mu sync.Mutex
	// unknown holds the records Sweep left for naming a backend it does
	// not know, as of its last run: each is logged once.
	unknown map[string]bool
}

// Priority orders transactions: the smaller Point is older; ties are broken
// by id. The zero Priority (no ID) is unset.
type Priority struct {
	Point clock.Point
	ID    string
	// Seq is the transaction's local age among this process's
	// transactions, for their local turns (Turns); not part of the
	// order Older gives.
	Seq uint64
}

// Older reports whether p is older than q.
func (p Priority) Older(q Priority) bool {
	if p.Point != q.Point {
		return p.Point < q.Point
	}
	return p.ID < q.ID
}

// Action is what a transaction does after meeting an intent.
type Action int

// Actions.
const (
	// Again: the intent is out of the way; repeat the step.
	Again Action = iota
	// Yield: while the transaction waited, an older one aborted it (its
	// own record is aborted): undo and retry the attempt.
	Yield
)

// Record returns the record of the intent's holder, as the coordinator
// has it now (see Records).
func (r *Resolver) Record(ctx context.Context, in *backend.Intent) (backend.Record, error) {
	if in.Coord != r.Coord.ID() {
		return backend.Record{}, fmt.Errorf("%w: %q holds it, this STM uses %q", ErrForeignCoordinator, in.Coord, r.Coord.ID())
	}
	recs, err := r.Records(ctx, in.Txn)
	if err != nil {
		return backend.Record{}, err
	}
	return recs[0], nil
}

// Records looks up the records of intent holders. A record a lookup reports
// missing is never believed as such: the lookup may be served from a
// stale copy (a ZooKeeper follower without sync, a Redis replica), where
// a live pending record looks missing, and rolling its intent back would
// lose its commit. So a missing record is confirmed by AbortRecord, a
// linearizable step in the coordinator, which returns the record as it
// really stands: committed comes back Committed; otherwise no record of
// that id can commit any more (a pending one is now aborted, an absent
// one has an aborted tombstone), and it comes back Missing, confirmed:
// the holder either finished (and its intent was resolved after the
// caller read it) or never will commit, so the caller rolls the intent
// back (a no-op if it is gone) and reads again. For the same reason an
// Aborted record is no proof the holder did not commit: it may be the
// tombstone such a confirmation wrote for a holder that committed,
// finished and was deleted; callers treat it as Missing (roll back, a
// no-op if the intent is gone, and read again), never as a reason to
// read what lies under the intent they saw.
func (r *Resolver) Records(ctx context.Context, ids ...string) ([]backend.Record, error) {
	recs, err := r.Coord.Records(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("txn: look up records %v: %w", ids, err)
	}
	for i, rec := range recs {
		if rec.Status != backend.Missing || r.TrustMissing {
			continue
		}
		final, err := r.Coord.AbortRecord(ctx, ids[i])
		if err != nil {
			return nil, fmt.Errorf("txn: confirm missing record %s: %w", ids[i], err)
		}
		if final.Status == backend.Committed {
			recs[i] = final
		}
	}
	return recs, nil
}

// Expired reports whether rec's lease has run out by this resolver's clock.
func (r *Resolver) Expired(rec backend.Record) bool {
	return r.Wall.Now().After(rec.Lease)
}

// Finish resolves one ref's intent held by rec's transaction according to
// the record: forward if committed, back if aborted or missing. A pending
// record is left alone.
func (r *Resolver) Finish(ctx context.Context, drv backend.Driver, name string, rec backend.Record) error {
	var req backend.ResolveRequest
	switch rec.Status {
	case backend.Pending:
		return nil
	case backend.Committed:
		req = backend.ResolveRequest{Txn: rec.ID, Commit: true, CP: rec.CP, Time: rec.Created, Names: []string{name}}
	default:
		req = backend.ResolveRequest{Txn: rec.ID, Names: []string{name}}
	}
	if err := drv.Resolve(ctx, req); err != nil {
		return fmt.Errorf("txn: resolve %q of %s (%s): %w", name, rec.ID, rec.Status, err)
	}
	return nil
}

// Waiter is a transaction that met another's intent while committing.
type Waiter struct {
	Priority Priority
	// Record is the waiter's own pending record ("" on the one-phase
	// path, which has none): once it is aborted the waiter must retry.
	Record string
}

// Wait is one commit attempt's dealings with the intents it meets: how long
// it has waited for each holder and how long it pauses next. Each Clear
// takes one look and returns, so the caller repeats its step (which takes
// the intent if it is gone) between looks. Not safe for concurrent use:
// each backend's lock step of an attempt has its own.
type Wait struct {
	r     *Resolver
	w     Waiter
	met   map[string]time.Time // holder id -> when first met
	pause time.Duration
}

// NewWait starts the dealings of waiter w.
func (r *Resolver) NewWait(w Waiter) *Wait { return &Wait{r: r, w: w} }

// Clear deals with the intent in on drv's ref name, met by the waiter in a
// step it will repeat. It returns Again when the step is worth repeating:
// the holder finished (its intent was rolled forward or back here), or it
// was aborted here, or the waiter paused for a while (the holder may have
// given the intent back meanwhile without finishing: a transaction locking
// several backends gives back the later ones while it waits on an earlier
// one). The holder is aborted instead of waited for once its lease has run
// out, or, when checked (the waiter writes or ensures the ref, so it fails
// anyway if the holder commits) and the waiter is older than the holder,
// after a short wait (r.Wait): the older transaction wins, so a long
// transaction is not starved by short ones. A commute never aborts a live
// holder: it waits, and runs its function only once (I3). Waits never form
// a cycle: the engine waits only while it holds intents on backends
// ordered before drv (txn's lockAll). Yield means the waiter itself was
// aborted meanwhile.
func (wt *Wait) Clear(ctx context.Context, drv backend.Driver, name string, in *backend.Intent, checked bool) (Action, error) {
	r := wt.r
	if in.Coord != r.Coord.ID() {
		return Again, fmt.Errorf("%w: %q holds it, this STM uses %q", ErrForeignCoordinator, in.Coord, r.Coord.ID())
	}
	// One round trip for both records. The waiter's own record is only
	// looked at for Aborted (a stale lookup may show it missing: that
	// proves nothing, and it is not confirmed, which would abort it); the
	// holder's goes through Records' rule.
	ids := []string{in.Txn}
	if wt.w.Record != "" {
		ids = append(ids, wt.w.Record)
	}
	recs, err := r.Coord.Records(ctx, ids)
	if err != nil {
		return Again, fmt.Errorf("txn: look up record %s: %w", in.Txn, err)
	}
	if wt.w.Record != "" && recs[1].Status == backend.Aborted {
		return Yield, nil
	}
	rec := recs[0]
	if rec.Status == backend.Missing {
		if rec, err = r.Record(ctx, in); err != nil {
			return Again, err
		}
	}
	if rec.Status == backend.Pending {
		if wt.met == nil {
			wt.met = make(map[string]time.Time)
		}
		since, ok := wt.met[rec.ID]
		if !ok {
			since = time.Now()
			wt.met[rec.ID] = since
		}
		grace := r.Wait
		if grace <= 0 {
			grace = DefaultWait
		}
		// Only from the second look on: the decision then depends on
		// the grace alone, not on how fast the first look ran.
		wound := ok && checked && wt.w.Priority.Older(Priority{Point: rec.Priority, ID: rec.ID}) && time.Since(since) >= grace
		if !r.Expired(rec) && !wound {
			wt.pause = min(max(2*wt.pause, 50*time.Microsecond), maxPause)
			if err := pauseFor(ctx, wt.pause/2+rand.N(wt.pause)); err != nil {
				return Again, fmt.Errorf("txn: wait for %s: %w", rec.ID, err)
			}
			return Again, nil
		}
		if rec, err = r.Coord.AbortRecord(ctx, rec.ID); err != nil {
			return Again, fmt.Errorf("txn: abort %s: %w", in.Txn, err)
		}
	}
	wt.pause = 0
	return Again, r.Finish(ctx, drv, name, rec)
}

// pauseFor pauses for d unless ctx ends first.
func pauseFor(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Recover finishes a whole transaction from its record: it aborts the record
// if it is pending (the caller decides that its lease is over), resolves
// every intent it names, and deletes it. It returns the final status.
func (r *Resolver) Recover(ctx context.Context, rec backend.Record) (backend.Status, error) {
	var err error
	if rec.Status == backend.Pending {
		if rec, err = r.Coord.AbortRecord(ctx, rec.ID); err != nil {
			return backend.Pending, fmt.Errorf("txn: abort %s: %w", rec.ID, err)
		}
	}
	byBackend := map[string][]string{}
	var ids []string
	for _, a := range rec.Refs {
		if byBackend[a.Backend] == nil {
			ids = append(ids, a.Backend)
		}
		byBackend[a.Backend] = append(byBackend[a.Backend], a.Name)
	}
	var unknown []string
	for _, id := range ids {
		drv := r.Lookup(id)
		if drv == nil {
			unknown = append(unknown, id)
			continue
		}
		req := backend.ResolveRequest{Txn: rec.ID, Commit: rec.Status == backend.Committed, CP: rec.CP, Time: rec.Created, Names: byBackend[id]}
		if err := drv.Resolve(ctx, req); err != nil {
			return rec.Status, fmt.Errorf("txn: recover %s on %s: %w", rec.ID, id, err)
		}
	}
	if len(unknown) > 0 {
		// Everything this process can do is done; the record stays for
		// a process that knows the rest.
		return rec.Status, fmt.Errorf("%w: %s names %v", ErrUnknownBackend, rec.ID, unknown)
	}
	keep := time.Duration(0)
	if rec.Status != backend.Committed {
		keep = TombstoneKeep
	}
	if err := r.Coord.DeleteRecord(ctx, rec.ID, keep); err != nil {
		return rec.Status, fmt.Errorf("txn: delete record %s: %w", rec.ID, err)
	}
	return rec.Status, nil
}

// Sweep recovers every record whose lease has run out: dead committers'
// pending records are aborted and their intents rolled back, committed ones
// rolled forward, and the records deleted. It returns how many it recovered.
// Records that are already tombstones or one-phase commit records (no refs,
// not pending) are left to expire. A record naming a backend this resolver
// does not know is finished as far as it can be and skipped (logged once,
// at the first sweep that skips it). A failure on one record does not
// stop the sweep: the failures are joined in the error and those records
// are left for the next sweep. Failing to list the records at all is an
// error wrapping ErrListRecords.
func (r *Resolver) Sweep(ctx context.Context) (int, error) {
	recs, err := r.Coord.ListRecords(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrListRecords, err)
	}
	n := 0
	var errs []error
	unknown := map[string]bool{}
	defer func() {
		r.mu.Lock()
		r.unknown = unknown
		r.mu.Unlock()
	}()
	for _, rec := range recs {
		if !r.Expired(rec) || (rec.Status != backend.Pending && len(rec.Refs) == 0) {
			continue
		}
		if err := ctx.Err(); err != nil {
			maps.Copy(unknown, r.unknownSoFar()) // not looked at: keep them
			return n, err
		}
		switch _, err := r.Recover(ctx, rec); {
		case err == nil:
			n++
		case errors.Is(err, ErrUnknownBackend):
			unknown[rec.ID] = true
			if !r.unknownSoFar()[rec.ID] {
				r.logger().Warn("epochal: a transaction record names a backend this STM does not know; it is left for a process that knows it", "txn", rec.ID, "coordinator", r.Coord.ID(), "err", err)
			}
		default:
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// unknownSoFar returns the records the last Sweep left for naming an
// unknown backend.
func (r *Resolver) unknownSoFar() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unknown
}

func (r *Resolver) logger() *slog.Logger {
	if r.Log != nil {
		if l := r.Log(); l != nil {
			return l
		}
	}
	return slog.Default()
}
