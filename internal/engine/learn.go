package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/detach"
)

// learn settles the outcome of a commit of id whose request may or may not
// have applied (I7 in docs/design.md), for both commit paths and for
// CompareAndSet: it aborts id's record in coord (writing an aborted
// tombstone if it has none, so a delayed copy of the request can never
// commit it later) and returns the record as it then stands: Committed if
// the commit applied, otherwise certainly not applied, nor ever will be.
// then, if not nil, runs in the same step with what was learned (a commit
// rolls its intents forward or back).
//
// The step runs on a ctx of its own bounded by bound (see detach) and goes
// on when ctx ends: learn then returns at once with known false, and the
// step still makes the outcome final.
func learn(ctx context.Context, coord backend.Driver, id string, bound time.Duration, then func(ctx context.Context, rec backend.Record, err error)) (rec backend.Record, err error, known bool) {
	var lrec backend.Record
	var lerr error
	learned := make(chan struct{})
	if detach.Run(ctx, bound, func(lctx context.Context) {
		lrec, lerr = coord.AbortRecord(lctx, id)
		close(learned)
		if then != nil {
			then(lctx, lrec, lerr)
		}
	}) {
		return lrec, lerr, true
	}
	select {
	case <-learned: // lrec and lerr are written; only then goes on
		return lrec, lerr, true
	default:
		return backend.Record{}, nil, false
	}
}

// outcomeUnknown is the error of a commit (what: "transaction ID", "change
// of ...") whose request failed with cause and whose outcome learn could
// not tell: still being learned (known false) or lookErr.
func outcomeUnknown(ctx context.Context, what string, cause error, known bool, lookErr error) error {
	if !known {
		return fmt.Errorf("%w: %s: %w (its outcome is being learned in the background)", ErrOutcomeUnknown, what, withCtx(ctx, cause))
	}
	return fmt.Errorf("%w: %s: %w (learning its outcome: %v)", ErrOutcomeUnknown, what, withCtx(ctx, cause), lookErr)
}

// lostUnknown is the error of a commit step (what: "transaction ID",
// "change of ...") refused with err, which wraps backend.ErrDataLost. A
// driver that finds its data gone behind what this process saw refuses
// the request before applying it (ErrDataLost wraps ErrNotApplied), but
// the request it refused may be a resend (a client library's, after a
// broken connection) of one that applied on the data that was then lost,
// as after a Redis failover: whether the commit took effect is unknown.
// The error is ErrOutcomeUnknown and ErrDataLost for errors.Is, never
// backend.ErrNotApplied, and says err. Every commit step that decides an
// outcome (CommitOnePhase, CommitRecord) checks for it first.
func lostUnknown(what string, err error) error {
	return &lostError{msg: fmt.Sprintf("%v: %s: the backend's data went back behind what this process saw, and an earlier copy of the request may have applied on the data that was lost: %v", ErrOutcomeUnknown, what, err), lost: err}
}

// lostError is lostUnknown's: it unwraps to nothing, so that the
// ErrNotApplied that ErrDataLost wraps does not show through. lost is the
// driver's error, which the Runtime keeps (noteLost) to refuse later
// calls with: they certainly apply nothing.
type lostError struct {
	msg  string
	lost error
}

func (e *lostError) Error() string { return e.msg }

func (e *lostError) Is(target error) bool {
	return target == ErrOutcomeUnknown || target == backend.ErrDataLost
}

// withCtx is err, wrapping ctx's error too if ctx has ended.
func withCtx(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if cerr == nil || errors.Is(err, cerr) {
		return err
	}
	return fmt.Errorf("%w (%w)", err, cerr)
}

// ErrChanged is CompareAndSet's error when the reference's newest version
// is no longer the one expected, or the change certainly did not apply and
// may be tried again.
var ErrChanged = errors.New("changed")

// ErrLocked is CompareAndSet's error when a transaction holds the
// reference (its intent is on it).
var ErrLocked = errors.New("a transaction holds it")

// CompareAndSet writes data as the new version of the reference name on
// drv if its newest version is still at rp (any version when rp is the
// largest point): one one-phase commit, the atoms', promises' and delays'
// change. It returns the commit point; ErrChanged when a newer version won
// or the change certainly did not apply; backend.ErrNotFound when the
// reference is gone; ErrLocked when a transaction holds it; an error
// wrapping ErrOutcomeUnknown when the outcome could not be learned. An
// unknown outcome is learned (learn) as a commit's is. what names the
// reference in errors.
func (s *Runtime) CompareAndSet(ctx context.Context, drv backend.Driver, one backend.OnePhase, name, what string, rp clock.Point, data []byte) (cp clock.Point, err error) {
	if err := s.Err(); err != nil {
		return 0, err
	}
	defer func() { err = s.Note(err) }()
	env := s.env
	id := env.NewID()
	res, err := one.CommitOnePhase(ctx, backend.OnePhaseRequest{Txn: id, RP: rp, Time: env.Wall.Now(),
		Items: []backend.OnePhaseItem{{Name: name, Mode: backend.ModeWrite, Value: data}}})
	if err != nil {
		if errors.Is(err, backend.ErrDataLost) {
			return 0, lostUnknown("change of "+what, err)
		}
		if errors.Is(err, backend.ErrNotApplied) {
			return 0, fmt.Errorf("refs: change %s: %w", what, err)
		}
		rec, lerr, known := learn(ctx, drv, id, max(env.Lease, time.Second), func(_ context.Context, _ backend.Record, err error) {
			if err != nil { // once the caller has gone, nobody else hears of it
				env.Log().Warn("epochal: learning the outcome of a change failed; its record's lease settles it", "ref", name, "change", id, "backend", drv.ID(), "err", err)
			}
		})
		switch {
		case !known || lerr != nil:
			return 0, outcomeUnknown(ctx, "change of "+what, err, known, lerr)
		case rec.Status != backend.Committed:
			return 0, ErrChanged // certainly not applied: try again
		}
		res = backend.OnePhaseResult{Status: backend.Committed, CP: rec.CP}
	}
	switch res.Status {
	case backend.Committed:
		// A point of drv's clock: it raises the transactions' floor only
		// if drv is the coordinator (points of two clocks never mix).
		env.ObserveOn(drv, res.CP)
		return res.CP, nil
	case backend.Aborted:
		return 0, ErrChanged
	}
	for _, c := range res.Conflicts {
		switch c.Reason {
		case backend.Gone:
			return 0, fmt.Errorf("refs: change %s: %w", what, backend.ErrNotFound)
		case backend.Locked:
			return 0, fmt.Errorf("refs: change %s: %w (%s): it is changed outside transactions only", what, ErrLocked, c.Intent.Txn)
		}
	}
	return 0, ErrChanged
}
