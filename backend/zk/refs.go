package zk

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
)

func (b *Backend) refPath(name string) string  { return b.refsP + "/" + escape(name) }
func (b *Backend) metaPath(name string) string { return b.metaP + "/" + escape(name) }

// state is one ref as read: node nil when absent.
type state struct {
	name    string
	node    *refNode
	version int32
	mzxid   int64
	cached  bool // from the cache, not read just now
	// watched: the znode has children, the marks of open subscriptions
	// (see Subscribe), so commits keep backend.WatchKeep versions.
	watched bool
	// err: the znode does not hold a ref node (ErrMalformed, naming the
	// ref); node is nil. Only readRefsEach returns such states.
	err error
}

// readRefs reads refs in one round trip and caches what it read. A
// malformed ref node fails it (ErrMalformed, naming the ref).
func (b *Backend) readRefs(ctx context.Context, names []string) ([]state, error) {
	sts, err := b.readRefsEach(ctx, names)
	if err != nil {
		return nil, err
	}
	for _, st := range sts {
		if st.err != nil {
			return nil, st.err
		}
	}
	return sts, nil
}

// readRefsEach is readRefs, except that a malformed ref node only sets
// its own state's err.
func (b *Backend) readRefsEach(ctx context.Context, names []string) ([]state, error) {
	paths := make([]string, len(names))
	for i, n := range names {
		paths[i] = b.refPath(n)
	}
	data, stats, err := b.get(ctx, paths)
	if err != nil {
		return nil, err
	}
	out := make([]state, len(names))
	for i, n := range names {
		out[i].name = n
		if stats[i] == nil {
			b.cache.drop(n)
			continue
		}
		node, err := decodeRef(paths[i], data[i], stats[i])
		if err != nil {
			b.cache.drop(n)
			out[i].err = fmt.Errorf("zk: ref %q: %w", n, err)
			continue
		}
		out[i].node, out[i].version, out[i].mzxid = node, stats[i].Version, stats[i].Mzxid
		out[i].watched = stats[i].NumChildren > 0
		b.cache.put(n, cached{node: node, version: stats[i].Version, mzxid: stats[i].Mzxid, watched: out[i].watched})
	}
	return out, nil
}

// states returns refs from the cache where it has them, reading the rest.
func (b *Backend) states(ctx context.Context, names []string) ([]state, error) {
	out := make([]state, len(names))
	var miss []string
	var at []int
	for i, n := range names {
		if e, ok := b.cache.get(n); ok {
			out[i] = state{name: n, node: e.node, version: e.version, mzxid: e.mzxid, cached: true, watched: e.watched}
			continue
		}
		miss = append(miss, n)
		at = append(at, i)
	}
	if len(miss) > 0 {
		sts, err := b.readRefs(ctx, miss)
		if err != nil {
			return nil, err
		}
		for j, i := range at {
			out[i] = sts[j]
		}
	}
	return out, nil
}

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

// Create creates a ref, and its meta node, if absent.
func (b *Backend) Create(ctx context.Context, req backend.CreateRequest) (backend.CreateResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.CreateResult{}, err
	}
	if len(req.Value) > b.MaxValueSize() {
		return backend.CreateResult{}, fmt.Errorf("%w: initial value of %q is %d bytes, the limit is %d", ErrTooLarge, req.Name, len(req.Value), b.MaxValueSize())
	}
	n := &refNode{Kind: string(req.Kind), Min: req.MinHistory, Max: req.MaxHistory, Keep: req.MinHistory,
		Versions: []versionRec{{Point: 0, Ms: time.Now().UnixMilli(), Value: req.Value}}}
	for {
		_, err := b.multi(ctx, []any{
			&gozk.CreateRequest{Path: b.refPath(req.Name), Data: n.encode(), Acl: b.acl},
			&gozk.CreateRequest{Path: b.metaPath(req.Name), Acl: b.acl},
		})
		if err == nil {
			return backend.CreateResult{Created: true, Kind: req.Kind}, nil
		}
		if !errors.Is(err, gozk.ErrNodeExists) {
			return backend.CreateResult{}, fmt.Errorf("zk: create %q: %w", req.Name, err)
		}
		sts, err := b.readRefs(ctx, []string{req.Name})
		if err != nil {
			return backend.CreateResult{}, fmt.Errorf("zk: create %q: %w", req.Name, err)
		}
		if sts[0].node != nil {
			return backend.CreateResult{Kind: backend.Kind(sts[0].node.Kind)}, nil
		}
	}
}

// Read reads refs at a point, one znode each. A Current read takes the
// read point first, so that every read after it (served in order on this
// session) sees every commit at or below it; a foreign point (drawn from
// another backend's clock) needs a sync first.
func (b *Backend) Read(ctx context.Context, req backend.ReadRequest) (backend.ReadResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.ReadResult{}, err
	}
	var sts []state
	var rp clock.Point
	var err error
	switch {
	case req.Current && b.cfg.SyncReads:
		if rp, err = b.readPoint(ctx); err == nil {
			sts, err = b.readRefs(ctx, req.Names)
		}
	case req.Current:
		rp, sts, err = b.readCurrent(ctx, req.Names)
	default:
		rp = req.RP
		if req.Foreign {
			err = b.sync(ctx)
		}
		if err == nil {
			sts, err = b.readRefs(ctx, req.Names)
		}
	}
	if err != nil {
		return backend.ReadResult{}, err
	}
	res := backend.ReadResult{RP: rp, Items: make([]backend.ReadItem, len(req.Names))}
	for i, s := range sts {
		if s.node == nil {
			continue
		}
		it := backend.ReadItem{Found: true, Kind: backend.Kind(s.node.Kind), Newest: s.node.Versions[0].version(), Intent: s.node.intent()}
		it.Version, it.Result = s.node.pick(rp)
		if it.Result == history.Fault {
			b.grow(ctx, s)
		}
		res.Items[i] = it
	}
	return res, nil
}

// readCurrent reads refs and chooses a read point for them without
// asking for one: the largest zxid the session had seen before sending the
// reads (every commit at or below it is in the state each read was served
// from), raised to the newest Mzxid the reads returned when that is larger
// (a ref changed since); the refs read with an older Mzxid are then read
// again, after that zxid was seen, so that they too are read from a state
// that holds it. One round trip when nothing changed since the session
// last looked, two otherwise.
func (b *Backend) readCurrent(ctx context.Context, names []string) (clock.Point, []state, error) {
	rp := b.seen.Load()
	sts, err := b.readRefs(ctx, names)
	if err != nil {
		return 0, nil, err
	}
	top := rp
	for _, s := range sts {
		top = max(top, s.mzxid)
	}
	if top == rp {
		return point(rp), sts, nil
	}
	var again []string
	var at []int
	for i, s := range sts {
		if s.mzxid < top {
			again = append(again, s.name)
			at = append(at, i)
		}
	}
	if len(again) > 0 {
		fresh, err := b.readRefs(ctx, again)
		if err != nil {
			return 0, nil, err
		}
		for j, i := range at {
			sts[i] = fresh[j]
		}
	}
	return point(top), sts, nil
}

// grow keeps one more old version of a ref after a read fault, up to its
// MaxHistory (a heuristic: one try, a lost race is ignored).
func (b *Backend) grow(ctx context.Context, s state) {
	if s.node.Keep >= s.node.Max {
		return
	}
	n := s.node.clone()
	n.Keep++
	_, _ = b.multi(ctx, []any{&gozk.SetDataRequest{Path: b.refPath(s.name), Data: n.encode(), Version: s.version}})
	b.cache.drop(s.name)
}

// Versions returns a ref's kept history.
func (b *Backend) Versions(ctx context.Context, name string) (backend.VersionsResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.VersionsResult{}, err
	}
	sts, err := b.readRefs(ctx, []string{name})
	if err != nil {
		return backend.VersionsResult{}, fmt.Errorf("zk: versions of %q: %w", name, err)
	}
	n := sts[0].node
	if n == nil {
		return backend.VersionsResult{}, fmt.Errorf("zk: versions of %q: %w", name, backend.ErrNotFound)
	}
	return backend.VersionsResult{Kind: backend.Kind(n.Kind), Versions: n.versions(), Trimmed: clock.Point(n.Trimmed),
		Ensured: clock.Point(n.Ensured), Keep: n.Keep, Min: n.Min, Max: n.Max, Intent: n.intent()}, nil
}

// List returns the refs whose names start with prefix, sorted by name. A
// ref whose znode does not hold a ref node is listed with its Err set.
func (b *Backend) List(ctx context.Context, prefix string) ([]backend.RefInfo, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	var kids []string
	err := b.consistent(ctx, func() error {
		return b.wait(ctx, func() (err error) { kids, _, err = b.conn.Children(b.refsP); return err })
	})
	if err != nil {
		return nil, fmt.Errorf("zk: list %q: %w", prefix, err)
	}
	var names []string
	for _, k := range kids {
		if n, ok := unescape(k); ok && strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	out := make([]backend.RefInfo, 0, len(names))
	for i := 0; i < len(names); i += 64 {
		chunk := names[i:min(i+64, len(names))]
		sts, err := b.readRefsEach(ctx, chunk)
		if err != nil {
			return nil, fmt.Errorf("zk: list %q: %w", prefix, err)
		}
		for _, s := range sts {
			if s.err != nil {
				out = append(out, backend.RefInfo{Name: s.name, Err: s.err})
				continue
			}
			if s.node != nil {
				out = append(out, backend.RefInfo{Name: s.name, Kind: backend.Kind(s.node.Kind), Newest: clock.Point(s.node.Versions[0].Point),
					Versions: len(s.node.Versions), Size: len(s.node.Versions[0].Value)})
			}
		}
	}
	return out, nil
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

// Meta returns a ref's meta and its version (the meta znode's version).
func (b *Backend) Meta(ctx context.Context, name string) ([]byte, uint64, error) {
	if err := b.check(ctx); err != nil {
		return nil, 0, err
	}
	data, stats, err := b.get(ctx, []string{b.metaPath(name)})
	if err != nil {
		return nil, 0, fmt.Errorf("zk: meta of %q: %w", name, err)
	}
	if stats[0] == nil {
		return nil, 0, fmt.Errorf("zk: meta of %q: %w", name, backend.ErrNotFound)
	}
	if len(data[0]) == 0 {
		data[0] = nil
	}
	return data[0], uint64(stats[0].Version), nil
}

// SetMeta replaces meta if its version is still expect: one conditional
// SetData.
func (b *Backend) SetMeta(ctx context.Context, name string, expect uint64, meta []byte) (bool, error) {
	if err := b.check(ctx); err != nil {
		return false, err
	}
	if len(meta) > b.MaxValueSize() {
		return false, fmt.Errorf("%w: meta of %q is %d bytes", ErrTooLarge, name, len(meta))
	}
	_, err := b.multi(ctx, []any{&gozk.SetDataRequest{Path: b.metaPath(name), Data: meta, Version: int32(expect)}})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, gozk.ErrBadVersion):
		return false, nil
	case errors.Is(err, gozk.ErrNoNode):
		return false, fmt.Errorf("zk: set meta of %q: %w", name, backend.ErrNotFound)
	}
	return false, fmt.Errorf("zk: set meta of %q: %w", name, err)
}
