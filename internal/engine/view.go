package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
)

// Seen is what a reader makes of another transaction's intent on a ref,
// given the holder's record: the read rule (docs/design.md, "Reading"),
// written once here for transactions (Tx.load), for reads outside them
// (refs' History, At, watches) and for the CLI (through View).
type Seen int

const (
	// Underneath: the holder is pending, or committed without writing the
	// ref (an ensure): the version under the intent is the newest
	// committed one. A pending holder cannot commit at or before a point
	// drawn before it commits (drawing its commit point and marking it
	// committed are one step), so readers never wait for writers.
	Underneath Seen = iota
	// AtCommit: the holder committed a staged write: the intent's value
	// is a version at the record's commit point, whether or not it has
	// been rolled forward yet.
	AtCommit
	// ReadAgain: the record is aborted or missing. The holder will never
	// commit, or it committed and finished between the read and the
	// lookup (its record deleted, perhaps with an aborted tombstone in its
	// place: see Resolver.Records): roll the intent back (a no-op if it is
	// gone) and read again, never read what lay under it.
	ReadAgain
)

// Rule is the read rule: what a reader of a ref with intent in on it
// sees, rec being the record of in's holder as the coordinator has it
// (a missing record confirmed, see Resolver.Records).
func Rule(in *backend.Intent, rec backend.Record) Seen {
	switch rec.Status {
	case backend.Committed:
		if in.Write && in.Staged {
			return AtCommit
		}
		return Underneath
	case backend.Pending:
		return Underneath
	}
	return ReadAgain
}

// IntentVersion is the version an AtCommit intent is.
func IntentVersion(in *backend.Intent, rec backend.Record) backend.Version {
	return backend.Version{Point: rec.CP, Value: in.Value, Txn: rec.ID, Time: rec.Created}
}

// RefView is a ref's kept history as a reader outside a transaction sees
// it (Resolver.View).
type RefView struct {
	// VersionsResult is what the driver returned; its Versions are newest
	// first and, when the view does not help (read-only), start with the
	// value of a committed transaction whose intent is not rolled forward
	// yet (Unresolved).
	backend.VersionsResult
	// Unresolved is that transaction's commit point, 0 if none.
	Unresolved clock.Point
	// Holder is the record of the intent's holder when it was looked up
	// (the intent's coordinator is the resolver's), else nil.
	Holder *backend.Record
}

// ViewOptions say how View reads.
type ViewOptions struct {
	// MaxValue, if > 0, leaves values larger than it out of the view
	// (Version.Omitted), unsent by drivers that offer
	// backend.BoundedVersions.
	MaxValue int
	// ReadOnly looks the holder's record up without confirming a missing
	// one and finishes no intent: what an inspector (the CLI) does. A
	// committed intent's value is then shown as its version (Unresolved).
	// Otherwise a final intent is rolled forward or back and the history
	// read again, so a reader always finds the newest committed value
	// among the versions.
	ReadOnly bool
	// Kind, if set, is the kind of reference the caller reads: a ref of
	// another kind is returned as read, nothing resolved, for the caller
	// to refuse.
	Kind backend.Kind
}

// viewTries bounds how often View reads the history: again after each
// intent it finished.
const viewTries = 4

// View reads name's kept history on drv as a reader sees it, by the read
// rule (Rule).
func (r *Resolver) View(ctx context.Context, drv backend.Driver, name string, o ViewOptions) (RefView, error) {
	bounded, _ := drv.(backend.BoundedVersions)
	for tries := 0; ; tries++ {
		var vr backend.VersionsResult
		var err error
		if bounded != nil && o.MaxValue > 0 {
			vr, err = bounded.VersionsBounded(ctx, name, o.MaxValue)
		} else {
			vr, err = drv.Versions(ctx, name)
		}
		if err != nil {
			return RefView{VersionsResult: vr}, err
		}
		if o.MaxValue > 0 {
			// A driver without BoundedVersions sent them: leave them out
			// all the same, before anything decodes them.
			for i, v := range vr.Versions {
				if len(v.Value) > o.MaxValue {
					vr.Versions[i].Value, vr.Versions[i].Omitted = nil, len(v.Value)
				}
			}
		}
		view := RefView{VersionsResult: vr}
		in := vr.Intent
		if in == nil || o.Kind != "" && vr.Kind != "" && vr.Kind != o.Kind {
			// No intent; or a reference of another kind, which the caller
			// refuses: nothing to resolve for it.
			return view, nil
		}
		var rec backend.Record
		switch {
		case !o.ReadOnly:
			// Confirmed if missing; ErrForeignCoordinator if the intent's
			// coordinator is not ours (a reader cannot tell what it is).
			if rec, err = r.Record(ctx, in); err != nil {
				return view, err
			}
		case in.Coord != r.Coord.ID():
			return view, nil // an inspector shows the intent, holder unknown
		default:
			recs, err := r.Coord.Records(ctx, []string{in.Txn})
			if err != nil {
				return view, fmt.Errorf("look up record %s: %w", in.Txn, err)
			}
			rec = recs[0] // one per id (the contract)
		}
		view.Holder = &rec
		seen := Rule(in, rec)
		last := tries+1 == viewTries
		if o.ReadOnly || last || rec.Status == backend.Pending {
			switch {
			case seen == AtCommit:
				// Its value is the newest committed version: show it as one.
				if v := IntentVersion(in, rec); len(vr.Versions) == 0 || v.Point > vr.Versions[0].Point {
					if o.MaxValue > 0 && len(v.Value) > o.MaxValue {
						v.Value, v.Omitted = nil, len(v.Value)
					}
					view.Versions = append([]backend.Version{v}, vr.Versions...)
					view.Unresolved = v.Point
				}
				return view, nil
			case seen == ReadAgain && o.ReadOnly && !last:
				continue // look again; an inspector writes nothing
			}
			return view, nil
		}
		// A reader finishes a final intent at once, whatever the holder's
		// lease (ReaderFinishesFinalIntentsAtOnce): forward if committed
		// (a write or an ensure), back if aborted or missing (a no-op if it
		// is gone). Then it reads again.
		if err := r.Finish(ctx, drv, name, rec); err != nil && !errors.Is(err, context.Canceled) {
			return view, err
		}
	}
}

// Inspector reads a coordinator's transaction records and its refs'
// histories without changing anything: what the CLI shows. Its views
// follow the read rule (Rule) as transactions do, read-only.
type Inspector struct{ r Resolver }

// NewInspector returns an Inspector of coord.
func NewInspector(coord backend.Driver) *Inspector {
	return &Inspector{r: Resolver{Coord: coord, Wall: clock.System}}
}

// Records looks up transaction records as the coordinator has them (a
// missing one is reported Missing, unconfirmed).
func (i *Inspector) Records(ctx context.Context, ids []string) ([]backend.Record, error) {
	return i.r.Coord.Records(ctx, ids)
}

// ListRecords lists every transaction record.
func (i *Inspector) ListRecords(ctx context.Context) ([]backend.Record, error) {
	return i.r.Coord.ListRecords(ctx)
}

// View reads name's history (Resolver.View, read-only), leaving out values
// larger than maxValue when it is > 0.
func (i *Inspector) View(ctx context.Context, name string, maxValue int) (RefView, error) {
	return i.r.View(ctx, i.r.Coord, name, ViewOptions{MaxValue: maxValue, ReadOnly: true})
}
