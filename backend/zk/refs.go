package zk

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
)

func (b *Backend) refPath(name string) string { return b.refsP + "/" + escape(name) }

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
		if it.Result == history.Fault && !b.cfg.ReadOnly {
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
// MaxHistory (a heuristic: one try, a lost race is ignored). A read-only
// backend does not.
func (b *Backend) grow(ctx context.Context, s state) {
	if s.node.Keep >= s.node.Max {
		return
	}
	n := s.node.clone()
	n.Keep++
	if _, err := b.multi(ctx, []any{&gozk.SetDataRequest{Path: b.refPath(s.name), Data: n.encode(), Version: s.version}}); err != nil && !errors.Is(err, gozk.ErrBadVersion) {
		b.logger().Debug("epochal: could not keep one more version of a ref after a read fault; a later one tries again", "root", b.root, "ref", s.name, "err", err)
	}
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

// cached is a ref node as last read or written by this backend.
type cached struct {
	node    *refNode // never modified
	version int32    // the znode's data version
	mzxid   int64
	watched bool // the znode had children: subscriptions' marks
}

// cache keeps ref nodes so that a commit can go straight to its Multi: a
// stale entry only makes the Multi's version check fail, and the ref is
// then read again.
type cache struct {
	mu sync.Mutex
	m  map[string]cached
}

const cacheLimit = 8192

func (c *cache) get(name string) (cached, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[name]
	return e, ok
}

func (c *cache) put(name string, e cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= cacheLimit {
		c.m = make(map[string]cached)
	}
	if old, ok := c.m[name]; ok && old.mzxid > e.mzxid {
		return // keep the newer
	}
	c.m[name] = e
}

func (c *cache) drop(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, name)
}
