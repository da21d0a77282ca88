package locks

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
)

// DefaultWait is how long an older transaction waits on a younger live one
// before aborting it.
const DefaultWait = 2 * time.Millisecond

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
}

// Priority orders transactions: the smaller Point is older; ties are broken
// by id.
type Priority struct {
	Point clock.Point
	ID    string
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
	// Yield: a live older transaction holds it; back off and retry the
	// attempt.
	Yield
)

// Record returns the record of the intent's holder.
func (r *Resolver) Record(ctx context.Context, in *backend.Intent) (backend.Record, error) {
	if in.Coord != r.Coord.ID() {
		return backend.Record{}, fmt.Errorf("%w: %q holds it, this STM uses %q", ErrForeignCoordinator, in.Coord, r.Coord.ID())
	}
	recs, err := r.Coord.Records(ctx, []string{in.Txn})
	if err != nil {
		return backend.Record{}, fmt.Errorf("locks: look up record %s: %w", in.Txn, err)
	}
	return recs[0], nil
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
		return fmt.Errorf("locks: resolve %q of %s (%s): %w", name, rec.ID, rec.Status, err)
	}
	return nil
}

// Clear gets the intent in on drv's ref name out of the way of transaction
// me, or says to yield.
func (r *Resolver) Clear(ctx context.Context, drv backend.Driver, name string, in *backend.Intent, me Priority) (Action, error) {
	rec, err := r.Record(ctx, in)
	if err != nil {
		return Yield, err
	}
	if rec.Status == backend.Pending {
		holder := Priority{rec.Priority, rec.ID}
		if !r.Expired(rec) {
			if !me.Older(holder) {
				return Yield, nil
			}
			// Older wins, but give a live younger holder that is about to
			// commit a moment to do so.
			if rec, err = r.waitFor(ctx, rec); err != nil {
				return Yield, err
			}
		}
		if rec.Status == backend.Pending {
			if rec, err = r.Coord.AbortRecord(ctx, rec.ID); err != nil {
				return Yield, fmt.Errorf("locks: abort %s: %w", in.Txn, err)
			}
		}
	}
	return Again, r.Finish(ctx, drv, name, rec)
}

// waitFor polls a pending record, with growing jittered pauses, for up to
// r.Wait; it returns the record as last seen.
func (r *Resolver) waitFor(ctx context.Context, rec backend.Record) (backend.Record, error) {
	wait := r.Wait
	if wait <= 0 {
		wait = DefaultWait
	}
	deadline := time.Now().Add(wait)
	pause := 50 * time.Microsecond
	for rec.Status == backend.Pending && time.Now().Before(deadline) {
		t := time.NewTimer(pause/2 + rand.N(pause))
		select {
		case <-ctx.Done():
			t.Stop()
			return rec, ctx.Err()
		case <-t.C:
		}
		pause *= 2
		recs, err := r.Coord.Records(ctx, []string{rec.ID})
		if err != nil {
			return rec, fmt.Errorf("locks: look up record %s: %w", rec.ID, err)
		}
		rec = recs[0]
	}
	return rec, nil
}

// Recover finishes a whole transaction from its record: it aborts the record
// if it is pending (the caller decides that its lease is over), resolves
// every intent it names, and deletes it. It returns the final status.
func (r *Resolver) Recover(ctx context.Context, rec backend.Record) (backend.Status, error) {
	var err error
	if rec.Status == backend.Pending {
		if rec, err = r.Coord.AbortRecord(ctx, rec.ID); err != nil {
			return backend.Pending, fmt.Errorf("locks: abort %s: %w", rec.ID, err)
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
			return rec.Status, fmt.Errorf("locks: recover %s on %s: %w", rec.ID, id, err)
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
		return rec.Status, fmt.Errorf("locks: delete record %s: %w", rec.ID, err)
	}
	return rec.Status, nil
}

// Sweep recovers every record whose lease has run out: dead committers'
// pending records are aborted and their intents rolled back, committed ones
// rolled forward, and the records deleted. It returns how many it recovered.
// Records that are already tombstones or one-phase commit records (no refs,
// not pending) are left to expire. A record naming a backend this resolver
// does not know is finished as far as it can be and skipped. A failure on
// one record does not stop the sweep: the failures are joined in the error
// and those records are left for the next sweep. Failing to list the
// records at all is an error wrapping ErrListRecords.
func (r *Resolver) Sweep(ctx context.Context) (int, error) {
	recs, err := r.Coord.ListRecords(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrListRecords, err)
	}
	n := 0
	var errs []error
	for _, rec := range recs {
		if !r.Expired(rec) || (rec.Status != backend.Pending && len(rec.Refs) == 0) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return n, err
		}
		switch _, err := r.Recover(ctx, rec); {
		case err == nil:
			n++
		case !errors.Is(err, ErrUnknownBackend):
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}
