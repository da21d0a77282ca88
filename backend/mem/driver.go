package mem

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
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
	_ backend.OnePhase     = (*Backend)(nil)
	_ backend.LocalClock   = (*Backend)(nil)
	_ backend.ReadInto     = (*Backend)(nil)
	_ backend.Sessions     = (*Backend)(nil)
	_ backend.SessionStore = (*Backend)(nil)
)

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
