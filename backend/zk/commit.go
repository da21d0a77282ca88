package zk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
)

// staleLock reports whether a Locked conflict, or a missing ref, was seen
// in the cache: the intent may be gone, so the refs are read again before
// the conflict is reported. Newer and Stale conflicts stand: a cached
// version was committed, and versions only grow.
func staleLock(sts []state, cs []backend.Conflict) bool {
	for _, c := range cs {
		if c.Reason != backend.Locked && c.Reason != backend.Gone {
			continue
		}
		for _, s := range sts {
			if s.name == c.Name && s.cached {
				return true
			}
		}
	}
	return false
}

// anyCached reports whether any state came from the cache.
func anyCached(sts []state) bool {
	for _, s := range sts {
		if s.cached {
			return true
		}
	}
	return false
}

// written records, after a successful Multi, the nodes it wrote.
func (b *Backend) written(sts []state, nodes []*refNode, res []gozk.MultiResponse, first int) {
	for i, s := range sts {
		if nodes[i] == nil || res[first+i].Stat == nil {
			continue
		}
		st := res[first+i].Stat
		n := nodes[i]
		for j := range n.Versions {
			if n.Versions[j].Point == self {
				n.Versions[j].Point = uint64(st.Mzxid)
			}
		}
		if n.Ensured == self {
			n.Ensured = uint64(st.Mzxid)
		}
		b.cache.put(s.name, cached{node: n, version: st.Version, mzxid: st.Mzxid, watched: st.NumChildren > 0})
	}
}

// conflict checks one ref for a Lock (commute false) or a one-phase commit.
func conflict(s state, txn string, mode backend.Mode, rp, base clock.Point, onePhase bool) *backend.Conflict {
	n := s.node
	switch {
	case n == nil:
		return &backend.Conflict{Name: s.name, Reason: backend.Gone}
	case n.Intent != nil && (onePhase || n.Intent.Txn != txn):
		return &backend.Conflict{Name: s.name, Reason: backend.Locked, Intent: n.intent()}
	case onePhase && mode == backend.ModeCommute:
		if newest := n.Versions[0]; clock.Point(newest.Point) != base {
			return &backend.Conflict{Name: s.name, Reason: backend.Stale, Newest: newest.version()}
		}
		return nil
	}
	if bad, p := mode.Conflicts(rp, clock.Point(n.Versions[0].Point), clock.Point(n.Ensured)); bad {
		return &backend.Conflict{Name: s.name, Reason: backend.Newer, Point: p}
	}
	return nil
}

// writeRefs runs a Multi that writes the given nodes (nil: unchanged) with
// version checks, followed by extra ops. On a version conflict it drops
// the refs' cache entries and reports retry; ErrTooLarge if the request
// cannot fit.
func (b *Backend) writeRefs(ctx context.Context, sts []state, nodes []*refNode, extra []any) (res []gozk.MultiResponse, retry bool, err error) {
	var ops []any
	var wr []*refNode
	var idx []int
	for i, n := range nodes {
		if n != nil {
			wr = append(wr, n)
			idx = append(idx, i)
		}
	}
	overhead := requestSize(extra)
	for _, i := range idx {
		overhead += 32 + len(b.refPath(sts[i].name))
	}
	enc, ok := fit(wr, overhead, b.cfg.MaxRequest)
	if !ok {
		return nil, false, fmt.Errorf("%w: %d refs", ErrTooLarge, len(wr))
	}
	for j, i := range idx {
		ops = append(ops, &gozk.SetDataRequest{Path: b.refPath(sts[i].name), Data: enc[j], Version: sts[i].version})
	}
	ops = append(ops, extra...)
	if len(ops) == 0 {
		return nil, false, nil
	}
	res, err = b.multi(ctx, ops)
	var me *multiError
	if errors.As(err, &me) && (errors.Is(err, gozk.ErrBadVersion) || errors.Is(err, gozk.ErrNoNode) && me.Op < len(idx)) {
		for _, i := range idx {
			b.cache.drop(sts[i].name)
		}
		return nil, true, nil
	}
	if err != nil {
		for _, i := range idx {
			b.cache.drop(sts[i].name)
		}
		return nil, false, err
	}
	// Map responses back to sts order for the cache.
	full := make([]gozk.MultiResponse, len(sts))
	for j, i := range idx {
		full[i] = res[j]
	}
	b.written(sts, nodes, full, 0)
	return res, false, nil
}

// Lock takes intents on every item, or none: read, check, one Multi with
// version checks; a lost race reads again.
func (b *Backend) Lock(ctx context.Context, req backend.LockRequest) (backend.LockResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.LockResult{}, err
	}
	names := make([]string, len(req.Items))
	for i, it := range req.Items {
		names[i] = it.Name
	}
	sts, err := b.states(ctx, names)
	for ; ; sts, err = b.readRefs(ctx, names) {
		if err != nil {
			return backend.LockResult{}, fmt.Errorf("zk: lock: %w", err)
		}
		var cs []backend.Conflict
		for i, it := range req.Items {
			if c := conflict(sts[i], req.Txn, it.Mode, req.RP, 0, false); c != nil {
				cs = append(cs, *c)
			}
		}
		if len(cs) > 0 {
			if staleLock(sts, cs) {
				continue
			}
			return backend.LockResult{Conflicts: cs}, nil
		}
		nodes := make([]*refNode, len(sts))
		out := backend.LockResult{Newest: make([]backend.Version, len(sts))}
		for i, it := range req.Items {
			out.Newest[i] = sts[i].node.Versions[0].version()
			if in := sts[i].node.Intent; in != nil { // already ours
				if in.Round < req.Round {
					n := sts[i].node.clone()
					n.Intent.Round = req.Round
					nodes[i] = n
				}
				continue
			}
			n := sts[i].node.clone()
			n.Intent = &intentNode{Txn: req.Txn, Coord: req.Coord, Write: it.Mode.Writes(), Staged: it.Mode == backend.ModeWrite,
				Ensure: it.Mode.Ensures(), Round: req.Round}
			if it.Mode == backend.ModeWrite {
				n.Intent.Value = it.Value
			}
			nodes[i] = n
		}
		_, retry, err := b.writeRefs(ctx, sts, nodes, nil)
		if err != nil {
			return backend.LockResult{}, fmt.Errorf("zk: lock: %w", err)
		}
		if !retry {
			return out, nil
		}
	}
}

// Stage stores values into intents txn holds.
func (b *Backend) Stage(ctx context.Context, txn string, items []backend.StageItem) (bool, error) {
	if err := b.check(ctx); err != nil {
		return false, err
	}
	names := make([]string, len(items))
	for i, it := range items {
		names[i] = it.Name
	}
	sts, err := b.states(ctx, names)
	for ; ; sts, err = b.readRefs(ctx, names) {
		if err != nil {
			return false, fmt.Errorf("zk: stage: %w", err)
		}
		nodes := make([]*refNode, len(sts))
		ok := true
		for i, s := range sts {
			if s.node == nil || s.node.Intent == nil || s.node.Intent.Txn != txn || !s.node.Intent.Write {
				ok = false
				break
			}
			n := s.node.clone()
			n.Intent.Staged, n.Intent.Value = true, items[i].Value
			nodes[i] = n
		}
		if !ok {
			if anyCached(sts) {
				continue
			}
			return false, nil
		}
		_, retry, err := b.writeRefs(ctx, sts, nodes, nil)
		if err != nil {
			return false, fmt.Errorf("zk: stage: %w", err)
		}
		if !retry {
			return true, nil
		}
	}
}

// Resolve rolls txn's intents forward or back. Refs without txn's intent
// are left alone; if none has it, the session syncs and looks once more
// (a helper may be served by a lagging server).
func (b *Backend) Resolve(ctx context.Context, req backend.ResolveRequest) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	synced := false
	sts, err := b.states(ctx, req.Names)
	for ; ; sts, err = b.readRefs(ctx, req.Names) {
		if err != nil {
			return fmt.Errorf("zk: resolve %s: %w", req.Txn, err)
		}
		nodes := make([]*refNode, len(sts))
		mine := 0
		for i, s := range sts {
			if s.node == nil || s.node.Intent == nil || s.node.Intent.Txn != req.Txn || !req.Drops(s.node.intent()) {
				continue
			}
			mine++
			n := s.node.clone()
			in := n.Intent
			n.Intent = nil
			if req.Commit {
				if in.Ensure && uint64(req.CP) > n.Ensured {
					n.Ensured = uint64(req.CP)
				}
				if in.Write && in.Staged {
					n.add(versionRec{Point: uint64(req.CP), Ms: req.Time.UnixMilli(), Txn: req.Txn, Value: in.Value}, s.watched)
				}
			}
			nodes[i] = n
		}
		if mine < len(sts) {
			if anyCached(sts) {
				continue
			}
			if mine == 0 && !synced {
				synced = true
				if err := b.sync(ctx); err != nil {
					return fmt.Errorf("zk: resolve %s: %w", req.Txn, err)
				}
				continue
			}
		}
		if mine == 0 {
			return nil
		}
		_, retry, err := b.writeRefs(ctx, sts, nodes, nil)
		if err != nil {
			return fmt.Errorf("zk: resolve %s: %w", req.Txn, err)
		}
		if !retry {
			return nil
		}
	}
}

// CommitOnePhase commits in ONE Multi: a version-checked SetData per ref,
// the creation of the transaction's record (which fails if the id was
// aborted) and a touch of the clock node. The commit point is the Multi's
// zxid, which the new versions store as self.
func (b *Backend) CommitOnePhase(ctx context.Context, req backend.OnePhaseRequest) (backend.OnePhaseResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.OnePhaseResult{}, err
	}
	names := make([]string, len(req.Items))
	for i, it := range req.Items {
		names[i] = it.Name
	}
	rec := &recNode{Status: int(backend.Committed), CP: self, Created: req.Time.UnixMilli()}
	recOp := &gozk.CreateRequest{Path: b.onePath(req.Txn), Data: rec.encode(), Acl: b.acl}
	// Commits of this process to one ref take turns: the second then
	// checks against what the first wrote (the cache) instead of sending
	// a Multi bound to fail, which would cost the ensemble a write.
	unlock, err := b.gate.lock(ctx, names)
	if err != nil {
		return backend.OnePhaseResult{}, err
	}
	defer unlock()
	sts, err := b.states(ctx, names)
	for ; ; sts, err = b.readRefs(ctx, names) {
		if err != nil {
			return backend.OnePhaseResult{}, fmt.Errorf("zk: commit %s: %w", req.Txn, err)
		}
		var cs []backend.Conflict
		for i, it := range req.Items {
			if c := conflict(sts[i], req.Txn, it.Mode, req.RP, it.Base, true); c != nil {
				cs = append(cs, *c)
			}
		}
		if len(cs) > 0 {
			if staleLock(sts, cs) {
				continue
			}
			if wroteAny(sts, req.Txn) {
				// A repeat of a request that committed.
				if r, _, _, err := b.lookup(ctx, req.Txn); err == nil && r != nil {
					return backend.OnePhaseResult{Status: backend.Status(r.Status), CP: clock.Point(r.CP)}, nil
				}
			}
			return backend.OnePhaseResult{Conflicts: cs}, nil
		}
		nodes := make([]*refNode, len(sts))
		for i, it := range req.Items {
			n := sts[i].node.clone()
			if it.Mode.Ensures() {
				n.Ensured = self
			}
			if it.Mode.Writes() {
				n.add(versionRec{Point: self, Ms: req.Time.UnixMilli(), Txn: req.Txn, Value: it.Value}, sts[i].watched)
			}
			nodes[i] = n
		}
		res, retry, err := b.writeRefs(ctx, sts, nodes, []any{recOp, b.clockOp()})
		var me *multiError
		switch {
		case errors.As(err, &me) && errors.Is(me.Err, gozk.ErrNodeExists):
			// The id has a record: an aborted tombstone (or, after an
			// unknown outcome, this very commit).
			recs, err := b.Records(ctx, []string{req.Txn})
			if err != nil {
				return backend.OnePhaseResult{}, err
			}
			if recs[0].Status == backend.Committed {
				return backend.OnePhaseResult{Status: backend.Committed, CP: recs[0].CP}, nil
			}
			return backend.OnePhaseResult{Status: backend.Aborted}, nil
		case err != nil:
			return backend.OnePhaseResult{}, fmt.Errorf("zk: commit %s: %w", req.Txn, err)
		case retry:
			continue
		}
		cp := point(res[len(res)-1].Stat.Mzxid)
		b.forget(req.Txn)
		return backend.OnePhaseResult{Status: backend.Committed, CP: cp}, nil
	}
}

// wroteAny reports whether txn wrote a version any of the refs keep.
func wroteAny(sts []state, txn string) bool {
	for _, s := range sts {
		if s.node == nil {
			continue
		}
		for _, v := range s.node.Versions {
			if v.Txn == txn {
				return true
			}
		}
	}
	return false
}

// gate serializes this process's one-phase commits per ref: striped
// locks, taken in stripe order, each a channel holding one token so that a
// wait for one ends with the waiter's ctx (a commit stuck in a stalled
// server's Multi holds its stripes until its own ctx ends).
type gate struct {
	once sync.Once
	mu   [256]chan struct{} // a token each: held while full
}

// lock takes the turns of names, in order, waiting no longer than ctx: a
// call whose ctx ends while it waits sent nothing (the error wraps
// backend.ErrNotApplied).
func (g *gate) lock(ctx context.Context, names []string) (unlock func(), err error) {
	g.once.Do(func() {
		for i := range g.mu {
			g.mu[i] = make(chan struct{}, 1)
		}
	})
	var idx []int
	for _, n := range names {
		idx = append(idx, int(fnv32(n)%uint32(len(g.mu))))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for k, i := range idx {
		select {
		case g.mu[i] <- struct{}{}:
		case <-ctx.Done():
			for _, j := range idx[:k] {
				<-g.mu[j]
			}
			return nil, fmt.Errorf("zk: waiting for this process's commits to %v: %w (%w)", names, ctx.Err(), backend.ErrNotApplied)
		}
	}
	return func() {
		for _, i := range idx {
			<-g.mu[i]
		}
	}, nil
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
