package mem

import (
	"context"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
)

const (
	// onePhaseKeep is how long a one-phase commit's record is kept. In
	// this backend nothing is sent over a network, so only an injected
	// fault can lose a reply; the record must outlive the engine's
	// look-up right after it, not a client library's retries.
	onePhaseKeep = 5 * time.Second
	// tombstoneKeep is the least time an aborted tombstone, or a record
	// deleted with a keep, stays.
	tombstoneKeep = time.Minute
)

// recStripe is one stripe of the record store. Records that live until
// deleted are in live; records that expire (tombstones, records deleted
// with a keep, one-phase commit records) are in generations, which drop a
// whole map at a time instead of scanning for expired entries.
type recStripe struct {
	mu       sync.Mutex
	live     map[string]*backend.Record
	expiring generations[string, *backend.Record]
	// One-phase commit records, one per commit: hundreds of thousands at
	// a time under load. Keys and values hold no pointers, so the garbage
	// collector does not scan these maps; ids too long for a fixed key
	// (not the engine's) go in onePhaseLong.
	onePhase     generations[shortID, onePhaseRec]
	onePhaseLong generations[string, onePhaseRec]
	// The one-phase commit records of ids of the engine's form (seqID):
	// in chunks of consecutive ids of one process, so that a commit's
	// look-up (a miss, as a rule) and its record land on memory the
	// commits just before it touched, instead of on a random slot of a
	// map of hundreds of thousands (a cache miss each, and the cache
	// they evict was the refs' and versions').
	onePhaseSeq seqGens
}

// seqChunkLen is how many consecutive ids a chunk holds.
const seqChunkLen = 16

// seqKey names a chunk: the ids prefix + "-" + base 36 of seq for seq in
// [chunk*seqChunkLen, (chunk+1)*seqChunkLen), the prefix held like a
// shortID (up to 15 bytes, its length in the last byte).
type seqKey struct {
	prefix [16]byte
	chunk  uint64
}

func toSeqKey(prefix string, seq uint64) (seqKey, bool) {
	k := seqKey{chunk: seq / seqChunkLen}
	if len(prefix) >= len(k.prefix) {
		return k, false
	}
	copy(k.prefix[:], prefix)
	k.prefix[len(k.prefix)-1] = byte(len(prefix))
	return k, true
}

// seqChunk holds the records of a chunk's ids, by seq%seqChunkLen; a slot
// holds a record when its cp is not 0 (a commit point never is).
type seqChunk [seqChunkLen]onePhaseRec

// seqGens keeps chunks as generations keeps entries: for at least period,
// young becoming old at a rotation and old dropped at the next.
type seqGens = rotating[seqGen]

// seqGen is one generation of chunks: in blocks of seqBlock, found
// through an index of their keys. Neither the index nor a block holds a
// pointer, so the garbage collector does not scan them.
type seqGen struct {
	index  map[seqKey]int32
	blocks [][]seqChunk
}

const seqBlock = 256

func newSeqGen() seqGen { return seqGen{index: make(map[seqKey]int32)} }

func (g *seqGen) chunk(k seqKey) *seqChunk {
	i, ok := g.index[k]
	if !ok {
		return nil
	}
	return &g.blocks[i/seqBlock][i%seqBlock]
}

func (g *seqGen) add(k seqKey) *seqChunk {
	n := len(g.blocks)
	if n == 0 || len(g.blocks[n-1]) == seqBlock {
		g.blocks = append(g.blocks, make([]seqChunk, 0, seqBlock))
		n++
	}
	b := &g.blocks[n-1]
	*b = append(*b, seqChunk{})
	g.index[k] = int32((n-1)*seqBlock + len(*b) - 1)
	return &(*b)[len(*b)-1]
}

// seqID splits an id of the form the engine gives its transactions
// (stm.Open: a per-process prefix, "-", a sequence number in base 36) into
// prefix and number. Only the canonical form (lower-case digits, no
// leading zero, at most 12 of them) is split, so that distinct ids never
// give the same pair.
func seqID(id string) (prefix string, seq uint64, ok bool) {
	i := strings.LastIndexByte(id, '-')
	digits := id[i+1:]
	if i < 0 || len(digits) == 0 || len(digits) > 12 || digits[0] == '0' {
		return "", 0, false
	}
	for j := 0; j < len(digits); j++ {
		c := digits[j]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'z':
			d = c - 'a' + 10
		default:
			return "", 0, false
		}
		seq = seq*36 + uint64(d)
	}
	return id[:i], seq, true
}

func (s *recStripe) getSeq(k seqKey, i uint64, now time.Time) (onePhaseRec, bool) {
	g := &s.onePhaseSeq
	g.rotate(now)
	if c := g.young.chunk(k); c != nil && c[i].cp != 0 {
		return c[i], true
	}
	if c := g.old.chunk(k); c != nil && c[i].cp != 0 {
		return c[i], true
	}
	return onePhaseRec{}, false
}

func (s *recStripe) putSeq(k seqKey, i uint64, r onePhaseRec, now time.Time) {
	g := &s.onePhaseSeq
	g.rotate(now)
	c := g.young.chunk(k)
	if c == nil {
		c = g.young.add(k)
	}
	c[i] = r
}

// shortID holds an id of up to 31 bytes, its length in the last byte.
type shortID [32]byte

func toShort(id string) (shortID, bool) {
	var k shortID
	if len(id) >= len(k) {
		return k, false
	}
	copy(k[:], id)
	k[len(k)-1] = byte(len(id))
	return k, true
}

// onePhaseRec is the compact record of a one-phase commit.
type onePhaseRec struct {
	rp, cp clock.Point
	at     int64 // unix nanoseconds
}

func (r onePhaseRec) record(id string) backend.Record {
	at := time.Unix(0, r.at)
	return backend.Record{ID: id, Status: backend.Committed, RP: r.rp, CP: r.cp, Created: at, Lease: at.Add(onePhaseKeep)}
}

func (s *recStripe) init() {
	s.live = make(map[string]*backend.Record)
	s.expiring.init(tombstoneKeep)
	s.onePhase.init(onePhaseKeep)
	s.onePhaseLong.init(onePhaseKeep)
	s.onePhaseSeq.init(onePhaseKeep, newSeqGen)
}

// rotating keeps two generations of G: young, which becomes old at the
// next rotation, and old, dropped at the one after. Rotations happen
// lazily, at least period apart, so what goes into young is kept for at
// least period.
type rotating[G any] struct {
	period     time.Duration
	young, old G
	rotateAt   time.Time
	fresh      func() G
}

func (g *rotating[G]) init(period time.Duration, fresh func() G) {
	g.period, g.fresh = period, fresh
	g.young = fresh()
}

func (g *rotating[G]) rotate(now time.Time) {
	if g.rotateAt.IsZero() {
		g.rotateAt = now.Add(g.period)
		return
	}
	if now.Before(g.rotateAt) {
		return
	}
	if now.Before(g.rotateAt.Add(g.period)) {
		g.old = g.young
	} else {
		var none G
		g.old = none // idle for two periods: everything has expired
	}
	g.young = g.fresh()
	g.rotateAt = now.Add(g.period)
}

// generations keeps entries for at least period (see rotating).
type generations[K comparable, V any] struct {
	rotating[map[K]V]
}

func (g *generations[K, V]) init(period time.Duration) {
	g.rotating.init(period, func() map[K]V { return make(map[K]V) })
}

func (g *generations[K, V]) get(id K, now time.Time) (V, bool) {
	g.rotate(now)
	if v, ok := g.young[id]; ok {
		return v, true
	}
	v, ok := g.old[id]
	return v, ok
}

func (g *generations[K, V]) put(id K, v V, now time.Time) {
	g.rotate(now)
	g.young[id] = v
}

func (g *generations[K, V]) each(f func(id K, v V)) {
	for id, v := range g.old {
		if _, newer := g.young[id]; !newer {
			f(id, v)
		}
	}
	for id, v := range g.young {
		f(id, v)
	}
}

// engineID returns the chunk key and number of an id of the engine's form
// whose prefix fits a seqKey.
func engineID(id string) (seqKey, uint64, bool) {
	prefix, seq, ok := seqID(id)
	if !ok {
		return seqKey{}, 0, false
	}
	k, ok := toSeqKey(prefix, seq)
	return k, seq, ok
}

// get returns record id, wherever it is kept. The caller holds s.mu.
func (s *recStripe) get(id string, now time.Time) (backend.Record, bool) {
	if r := s.live[id]; r != nil {
		return *r, true
	}
	if r, ok := s.expiring.get(id, now); ok {
		return *r, true
	}
	var r onePhaseRec
	var ok bool
	if k, seq, engine := engineID(id); engine {
		r, ok = s.getSeq(k, seq%seqChunkLen, now)
	} else if k, short := toShort(id); short {
		r, ok = s.onePhase.get(k, now)
	} else {
		r, ok = s.onePhaseLong.get(id, now)
	}
	if ok {
		return r.record(id), true
	}
	return backend.Record{}, false
}

func (s *recStripe) putOnePhase(id string, r onePhaseRec, now time.Time) {
	if k, seq, engine := engineID(id); engine {
		s.putSeq(k, seq%seqChunkLen, r, now)
	} else if k, short := toShort(id); short {
		s.onePhase.put(k, r, now)
	} else {
		s.onePhaseLong.put(id, r, now)
	}
}

// PutRecord creates a pending record if none exists.
func (b *Backend) PutRecord(ctx context.Context, r backend.Record) (bool, error) {
	if err := b.check(ctx); err != nil {
		return false, err
	}
	rs := b.recStripe(r.ID)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if old, ok := rs.get(r.ID, time.Now()); ok {
		// A repeat of the same request is idempotent; anything else (a
		// tombstone, another attempt's record) refuses.
		return old.Status == backend.Pending && old.RP == r.RP && old.Priority == r.Priority, nil
	}
	r.Status = backend.Pending
	r.Refs = slices.Clone(r.Refs)
	rs.live[r.ID] = &r
	return true, nil
}

// CommitRecord draws a commit point and marks a pending record committed.
func (b *Backend) CommitRecord(ctx context.Context, id string) (backend.Record, error) {
	if err := b.check(ctx); err != nil {
		return backend.Record{}, err
	}
	rs := b.recStripe(id)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r := rs.live[id]; r != nil && r.Status == backend.Pending {
		r.CP = clock.Point(b.clock.Add(1))
		r.Status = backend.Committed
	}
	r, ok := rs.get(id, time.Now())
	if !ok {
		return backend.Record{ID: id, Status: backend.Missing}, nil
	}
	return cloneRecord(r), nil
}

// AbortRecord aborts a pending record or writes an aborted tombstone.
func (b *Backend) AbortRecord(ctx context.Context, id string) (backend.Record, error) {
	if err := b.check(ctx); err != nil {
		return backend.Record{}, err
	}
	rs := b.recStripe(id)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	now := time.Now()
	if r := rs.live[id]; r != nil && r.Status == backend.Pending {
		r.Status = backend.Aborted
	}
	r, ok := rs.get(id, now)
	if !ok {
		// A tombstone: kept a while, then it expires by itself.
		r = backend.Record{ID: id, Status: backend.Aborted, Created: now, Lease: now}
		rs.expiring.put(id, &r, now)
	}
	return cloneRecord(r), nil
}

// Records looks records up.
func (b *Backend) Records(ctx context.Context, ids []string) ([]backend.Record, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	out := make([]backend.Record, len(ids))
	now := time.Now()
	for i, id := range ids {
		rs := b.recStripe(id)
		rs.mu.Lock()
		if r, ok := rs.get(id, now); ok {
			out[i] = cloneRecord(r)
		} else {
			out[i] = backend.Record{ID: id, Status: backend.Missing}
		}
		rs.mu.Unlock()
	}
	return out, nil
}

// ListRecords returns the records of the general path and the tombstones,
// sorted by id. One-phase commit records, many and short-lived, are left
// out; Records finds them.
func (b *Backend) ListRecords(ctx context.Context) ([]backend.Record, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	var out []backend.Record
	now := time.Now()
	for i := range b.recs {
		rs := &b.recs[i]
		rs.mu.Lock()
		for _, r := range rs.live {
			out = append(out, cloneRecord(*r))
		}
		rs.expiring.rotate(now)
		rs.expiring.each(func(id string, r *backend.Record) {
			if rs.live[id] == nil {
				out = append(out, cloneRecord(*r))
			}
		})
		rs.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// DeleteRecord removes a record now, or keeps it for at least keep (up to
// two periods of its generation) and then drops it.
func (b *Backend) DeleteRecord(ctx context.Context, id string, keep time.Duration) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	rs := b.recStripe(id)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.live[id]
	if r == nil {
		return nil // absent, or already expiring: never kept longer
	}
	delete(rs.live, id)
	if keep > 0 {
		if keep > rs.expiring.period {
			rs.expiring.period = keep
		}
		rs.expiring.put(id, r, time.Now())
	}
	return nil
}

func cloneRecord(r backend.Record) backend.Record {
	r.Refs = slices.Clone(r.Refs)
	return r
}
