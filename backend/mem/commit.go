package mem

import (
	"context"
	"slices"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
)

// foreignIntent reports whether r carries an intent of a transaction other
// than txn.
func foreignIntent(r *refState, txn string) bool {
	return r.intent != nil && r.intent.Txn != txn
}

// Lock takes intents on every item, or none.
func (b *Backend) Lock(ctx context.Context, req backend.LockRequest) (backend.LockResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.LockResult{}, err
	}
	var set stripes
	for _, it := range req.Items {
		set |= b.stripeOf(it.Name)
	}
	b.lock(set)
	defer b.unlock(set)
	var res backend.LockResult
	for _, it := range req.Items {
		r := b.ref(it.Name)
		switch {
		case r == nil:
			res.Conflicts = append(res.Conflicts, backend.Conflict{Name: it.Name, Reason: backend.Gone})
		case foreignIntent(r, req.Txn):
			in := *r.intent
			res.Conflicts = append(res.Conflicts, backend.Conflict{Name: it.Name, Reason: backend.Locked, Intent: &in})
		default:
			if bad, p := it.Mode.Conflicts(req.RP, r.versions[0].Point, r.ensured); bad {
				res.Conflicts = append(res.Conflicts, backend.Conflict{Name: it.Name, Reason: backend.Newer, Point: p})
			}
		}
	}
	if len(res.Conflicts) > 0 {
		return res, nil
	}
	res.Newest = make([]backend.Version, len(req.Items))
	for i, it := range req.Items {
		r := b.ref(it.Name)
		res.Newest[i] = r.versions[0]
		if r.intent != nil { // already ours: a repeated request
			r.intent.Round = max(r.intent.Round, req.Round)
			continue
		}
		in := &backend.Intent{Txn: req.Txn, Coord: req.Coord, Write: it.Mode.Writes(), Ensure: it.Mode.Ensures(), Round: req.Round}
		if it.Mode == backend.ModeWrite {
			in.Staged, in.Value = true, slices.Clone(it.Value)
		}
		r.intent = in
	}
	return res, nil
}

// Stage stores values into intents txn holds.
func (b *Backend) Stage(ctx context.Context, txn string, items []backend.StageItem) (bool, error) {
	if err := b.check(ctx); err != nil {
		return false, err
	}
	var set stripes
	for _, it := range items {
		set |= b.stripeOf(it.Name)
	}
	b.lock(set)
	defer b.unlock(set)
	for _, it := range items {
		r := b.ref(it.Name)
		if r == nil || r.intent == nil || r.intent.Txn != txn || !r.intent.Write {
			return false, nil
		}
	}
	for _, it := range items {
		r := b.ref(it.Name)
		r.intent.Staged, r.intent.Value = true, slices.Clone(it.Value)
	}
	return true, nil
}

// Resolve rolls txn's intents forward or back.
func (b *Backend) Resolve(ctx context.Context, req backend.ResolveRequest) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	var set stripes
	for _, name := range req.Names {
		set |= b.stripeOf(name)
	}
	b.lock(set)
	defer b.unlock(set)
	for _, name := range req.Names {
		r := b.ref(name)
		if r == nil || r.intent == nil || r.intent.Txn != req.Txn || !req.Drops(r.intent) {
			continue
		}
		in := r.intent
		r.intent = nil
		if req.Commit && in.Ensure {
			r.ensured = max(r.ensured, req.CP)
		}
		if req.Commit && in.Write && in.Staged {
			b.appendVersion(&b.refs[b.refStripe(name)], name, r, backend.Version{Point: req.CP, Value: in.Value, Txn: req.Txn, Time: req.Time})
		}
	}
	return nil
}

// appendVersion adds v as the newest version of r, the ref name in
// stripe st, trims (keeping backend.WatchKeep older versions while the
// ref is subscribed to), and hints watchers. The caller holds st's lock.
func (b *Backend) appendVersion(st *refStripe, name string, r *refState, v backend.Version) {
	subs := st.subs[name]
	// In place: r.versions is never handed out (reads copy versions out
	// of it, under the stripe lock), and Trim clears what it drops, so
	// a ref that keeps one version reuses its array at every commit.
	vs := append(r.versions, backend.Version{})
	copy(vs[1:], vs)
	vs[0] = v
	r.versions, r.trimmed = history.Trim(vs, backend.KeepFor(r.keep, len(subs) > 0), r.trimmed)
	for s := range subs {
		s.Push(v) // under the stripe lock: in point order
	}
}

// CommitOnePhase commits a transaction whose refs all live here.
func (b *Backend) CommitOnePhase(ctx context.Context, req backend.OnePhaseRequest) (backend.OnePhaseResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.OnePhaseResult{}, err
	}
	// What needs no lock is done before taking them, so that others
	// wait for less: each item's stripe, the copies of the values to
	// store (stored versions are the driver's own), the time.
	const small = 4
	var stripeBuf [small]int
	var valueBuf [small][]byte
	var refBuf [small]*refState
	idx, values, rs := stripeBuf[:0], valueBuf[:0], refBuf[:0]
	if n := len(req.Items); n > small {
		idx, values, rs = make([]int, 0, n), make([][]byte, 0, n), make([]*refState, 0, n)
	}
	var set stripes
	for _, it := range req.Items {
		i := b.refStripe(it.Name)
		idx = append(idx, i)
		set |= 1 << i
		var v []byte
		if it.Mode.Writes() {
			v = slices.Clone(it.Value)
		}
		values = append(values, v)
	}
	now := time.Now()
	recs := b.recStripe(req.Txn)
	b.lock(set)
	defer b.unlock(set)
	recs.mu.Lock()
	defer recs.mu.Unlock()
	if rec, ok := recs.get(req.Txn, now); ok {
		return backend.OnePhaseResult{Status: rec.Status, CP: rec.CP}, nil
	}
	var res backend.OnePhaseResult
	for i, it := range req.Items {
		r := b.refs[idx[i]].refs[it.Name]
		rs = append(rs, r)
		switch {
		case r == nil:
			res.Conflicts = append(res.Conflicts, backend.Conflict{Name: it.Name, Reason: backend.Gone})
		case r.intent != nil:
			in := *r.intent
			res.Conflicts = append(res.Conflicts, backend.Conflict{Name: it.Name, Reason: backend.Locked, Intent: &in})
		case it.Mode.Check():
			if bad, p := it.Mode.Conflicts(req.RP, r.versions[0].Point, r.ensured); bad {
				res.Conflicts = append(res.Conflicts, backend.Conflict{Name: it.Name, Reason: backend.Newer, Point: p})
			}
		case !it.Mode.Check() && r.versions[0].Point != it.Base:
			res.Conflicts = append(res.Conflicts, backend.Conflict{Name: it.Name, Reason: backend.Stale, Newest: r.versions[0]})
		}
	}
	if len(res.Conflicts) > 0 {
		return res, nil
	}
	cp := clock.Point(b.clock.Add(1))
	for i, it := range req.Items {
		r := rs[i]
		if it.Mode.Ensures() {
			r.ensured = max(r.ensured, cp)
		}
		if it.Mode.Writes() {
			b.appendVersion(&b.refs[idx[i]], it.Name, r, backend.Version{Point: cp, Value: values[i], Txn: req.Txn, Time: req.Time})
		}
	}
	recs.putOnePhase(req.Txn, onePhaseRec{rp: req.RP, cp: cp, at: req.Time.UnixNano()}, now)
	return backend.OnePhaseResult{Status: backend.Committed, CP: cp}, nil
}
