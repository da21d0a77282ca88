package mem

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
)

const (
	refStripes = 64
	recStripes = 16
)

// Backend is the embedded backend. Create it with New.
type Backend struct {
	id     string
	clock  atomic.Uint64
	seed   maphash.Seed
	refs   [refStripes]refStripe
	recs   [recStripes]recStripe
	closed atomic.Bool

	sessOnce sync.Once
	sessions *sessions
}

type refStripe struct {
	mu   sync.RWMutex
	refs map[string]*refState
	subs map[string]map[*sub]struct{}
}

type refState struct {
	kind     backend.Kind
	versions []backend.Version // newest first
	trimmed  clock.Point
	ensured  clock.Point
	keep     int
	min, max int
	intent   *backend.Intent
	meta     []byte
	metaVer  uint64
}

var (
	// backend.Driver, and each of its roles.
	_ backend.Driver       = (*Backend)(nil)
	_ backend.Coordinator  = (*Backend)(nil)
	_ backend.RefStore     = (*Backend)(nil)
	_ backend.Participant  = (*Backend)(nil)
	_ backend.MetaStore    = (*Backend)(nil)
	_ backend.ChangeStream = (*Backend)(nil)
	// Optional capabilities.
	_ backend.OnePhase   = (*Backend)(nil)
	_ backend.LocalClock = (*Backend)(nil)
	_ backend.ReadInto   = (*Backend)(nil)
)

// LocalClock marks the clock as in-process: reading it costs no round trip.
func (b *Backend) LocalClock() {}

// New returns an empty backend.
func New() *Backend {
	var raw [8]byte
	_, _ = rand.Read(raw[:])
	b := &Backend{id: "mem:" + hex.EncodeToString(raw[:]), seed: maphash.MakeSeed()}
	for i := range b.refs {
		b.refs[i].refs = make(map[string]*refState)
		b.refs[i].subs = make(map[string]map[*sub]struct{})
	}
	for i := range b.recs {
		b.recs[i].init()
	}
	return b
}

// ID names this backend instance.
func (b *Backend) ID() string { return b.id }

// Close makes every later call fail with backend.ErrClosed.
func (b *Backend) Close() error {
	b.closed.Store(true)
	return nil
}

func (b *Backend) check(ctx context.Context) error {
	if b.closed.Load() {
		return backend.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: %w (%w)", err, backend.ErrNotApplied)
	}
	return nil
}

func (b *Backend) refStripe(name string) int {
	return int(maphash.String(b.seed, name) % refStripes)
}

// recStripe is the stripe of record id. Consecutive ids of the engine's
// form (seqID) share one for a chunk's worth (see recStripe.onePhaseSeq),
// and the chunks of one process take the stripes in turn.
func (b *Backend) recStripe(id string) *recStripe {
	if prefix, seq, ok := seqID(id); ok {
		return &b.recs[(maphash.String(b.seed, prefix)+seq/seqChunkLen)%recStripes]
	}
	return &b.recs[maphash.String(b.seed, id)%recStripes]
}

// stripes is a set of ref stripes, one bit per stripe.
type stripes uint64

// One bit per stripe must fit.
var _ [64 - refStripes]struct{}

func (b *Backend) stripeOf(name string) stripes { return 1 << b.refStripe(name) }

// lock write-locks the stripes in ascending order (so that two callers
// never wait on each other in a cycle).
func (b *Backend) lock(set stripes) {
	for x := set; x != 0; x &= x - 1 {
		b.refs[bits.TrailingZeros64(uint64(x))].mu.Lock()
	}
}

func (b *Backend) unlock(set stripes) {
	for x := set; x != 0; x &= x - 1 {
		b.refs[bits.TrailingZeros64(uint64(x))].mu.Unlock()
	}
}

func (b *Backend) ref(name string) *refState {
	return b.refs[b.refStripe(name)].refs[name]
}

// ReadPoint returns the current point.
func (b *Backend) ReadPoint(ctx context.Context) (clock.Point, error) {
	if err := b.check(ctx); err != nil {
		return 0, err
	}
	return clock.Point(b.clock.Load()), nil
}

// Create creates a ref if absent.
func (b *Backend) Create(ctx context.Context, req backend.CreateRequest) (backend.CreateResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.CreateResult{}, err
	}
	st := &b.refs[b.refStripe(req.Name)]
	st.mu.Lock()
	defer st.mu.Unlock()
	if r, ok := st.refs[req.Name]; ok {
		return backend.CreateResult{Kind: r.kind}, nil
	}
	st.refs[req.Name] = &refState{
		kind:     req.Kind,
		versions: []backend.Version{{Point: 0, Value: slices.Clone(req.Value), Time: time.Now()}},
		keep:     req.MinHistory,
		min:      req.MinHistory,
		max:      req.MaxHistory,
	}
	return backend.CreateResult{Created: true, Kind: req.Kind}, nil
}

// Read reads refs at a point.
func (b *Backend) Read(ctx context.Context, req backend.ReadRequest) (backend.ReadResult, error) {
	return b.ReadInto(ctx, req, nil)
}

// ReadInto is Read with the items in dst's array when it has room.
func (b *Backend) ReadInto(ctx context.Context, req backend.ReadRequest, dst []backend.ReadItem) (backend.ReadResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.ReadResult{}, err
	}
	rp := req.RP
	if req.Current {
		rp = clock.Point(b.clock.Load())
	}
	items := dst[:0]
	if cap(items) < len(req.Names) {
		items = make([]backend.ReadItem, len(req.Names))
	} else {
		items = items[:len(req.Names)]
		clear(items) // a ref not found is left as the zero item
	}
	res := backend.ReadResult{RP: rp, Items: items}
	for i, name := range req.Names {
		st := &b.refs[b.refStripe(name)]
		st.mu.RLock()
		r := st.refs[name]
		if r == nil {
			st.mu.RUnlock()
			continue
		}
		it := backend.ReadItem{Found: true, Kind: r.kind, Newest: r.versions[0]}
		it.Version, it.Result = history.Pick(r.versions, rp)
		if r.intent != nil {
			in := *r.intent
			it.Intent = &in
		}
		st.mu.RUnlock()
		if it.Result == history.Fault {
			st.mu.Lock()
			if r := st.refs[name]; r != nil {
				r.keep = history.Grow(r.keep, r.max)
			}
			st.mu.Unlock()
		}
		res.Items[i] = it
	}
	return res, nil
}

// Versions returns a ref's kept history.
func (b *Backend) Versions(ctx context.Context, name string) (backend.VersionsResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.VersionsResult{}, err
	}
	st := &b.refs[b.refStripe(name)]
	st.mu.RLock()
	defer st.mu.RUnlock()
	r := st.refs[name]
	if r == nil {
		return backend.VersionsResult{}, fmt.Errorf("mem: versions of %q: %w", name, backend.ErrNotFound)
	}
	res := backend.VersionsResult{
		Kind:     r.kind,
		Versions: slices.Clone(r.versions),
		Trimmed:  r.trimmed,
		Ensured:  r.ensured,
		Keep:     r.keep,
		Min:      r.min,
		Max:      r.max,
	}
	if r.intent != nil {
		in := *r.intent
		res.Intent = &in
	}
	return res, nil
}

// List returns the refs whose names start with prefix.
func (b *Backend) List(ctx context.Context, prefix string) ([]backend.RefInfo, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	var out []backend.RefInfo
	for i := range b.refs {
		st := &b.refs[i]
		st.mu.RLock()
		for name, r := range st.refs {
			if strings.HasPrefix(name, prefix) {
				out = append(out, backend.RefInfo{
					Name: name, Kind: r.kind, Newest: r.versions[0].Point,
					Versions: len(r.versions), Size: len(r.versions[0].Value),
				})
			}
		}
		st.mu.RUnlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

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

// Meta returns a ref's meta and its version.
func (b *Backend) Meta(ctx context.Context, name string) ([]byte, uint64, error) {
	if err := b.check(ctx); err != nil {
		return nil, 0, err
	}
	st := &b.refs[b.refStripe(name)]
	st.mu.RLock()
	defer st.mu.RUnlock()
	r := st.refs[name]
	if r == nil {
		return nil, 0, fmt.Errorf("mem: meta of %q: %w", name, backend.ErrNotFound)
	}
	return slices.Clone(r.meta), r.metaVer, nil
}

// SetMeta replaces meta if its version is still expect.
func (b *Backend) SetMeta(ctx context.Context, name string, expect uint64, meta []byte) (bool, error) {
	if err := b.check(ctx); err != nil {
		return false, err
	}
	st := &b.refs[b.refStripe(name)]
	st.mu.Lock()
	defer st.mu.Unlock()
	r := st.refs[name]
	if r == nil {
		return false, fmt.Errorf("mem: set meta of %q: %w", name, backend.ErrNotFound)
	}
	if r.metaVer != expect {
		return false, nil
	}
	r.meta, r.metaVer = slices.Clone(meta), r.metaVer+1
	return true, nil
}

// sub is one subscription: a hint channel and a feed of versions.
type sub struct {
	*backend.FeedBuffer
	b    *Backend
	name string
	once sync.Once
}

var _ backend.Feed = (*sub)(nil)

func (s *sub) Close() error {
	s.once.Do(func() {
		st := &s.b.refs[s.b.refStripe(s.name)]
		st.mu.Lock()
		delete(st.subs[s.name], s)
		if len(st.subs[s.name]) == 0 {
			delete(st.subs, s.name)
		}
		st.mu.Unlock()
	})
	return nil
}

// Subscribe returns hints of changes to a ref, with a feed of the versions
// (backend.Feed) that loses nothing unless a reader leaves more than backend.FeedLimit
// undrained.
func (b *Backend) Subscribe(ctx context.Context, name string) (backend.Subscription, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	s := &sub{FeedBuffer: backend.NewFeedBuffer(), b: b, name: name}
	st := &b.refs[b.refStripe(name)]
	st.mu.Lock()
	if st.subs[name] == nil {
		st.subs[name] = make(map[*sub]struct{})
	}
	st.subs[name][s] = struct{}{}
	st.mu.Unlock()
	return s, nil
}
