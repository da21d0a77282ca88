package engine

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
	"github.com/epochal/epochal/internal/goid"
)

// Env is what transactions need from their STM. The STM builds one and
// shares it between all its transactions.
type Env struct {
	Coord    backend.Driver
	OnePhase backend.OnePhase // nil: always take the general path
	Points   *clock.Batcher
	Wall     clock.Wall
	Lease    time.Duration
	Resolver *Resolver
	// Floor is the newest point this process has read at or committed at;
	// read points never go below it (I5 in docs/design.md).
	Floor *atomic.Uint64
	NewID func() string
	Stats *Stats
	// Turns, if not nil, makes this process's transactions that write
	// the same ref take turns (turns.go).
	Turns *Turns
	// CommuteRounds bounds how often the fast path computes commutes again
	// on a stale base before the commit takes the general path instead.
	CommuteRounds int
	// Faults holds test-only switches that break the protocol on purpose,
	// so that tests and jepsen-lite can show their checkers catch it.
	Faults Faults
	// Logger, if not nil, receives the background errors of commits
	// (Log returns slog.Default() otherwise).
	Logger *slog.Logger
	// Tel holds the OpenTelemetry instruments and tracer (nil: none).
	Tel *Telemetry

	floors sync.Map // backend ID -> *atomic.Uint64: other clocks' floors
}

// Log returns the logger background errors go to: Logger, or
// slog.Default().
func (e *Env) Log() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.Default()
}

// Faults are deliberate protocol bugs for proving checkers. Never set them
// outside tests.
type Faults struct {
	SkipReadPointCheck bool // commit without checking for newer versions
	NoCommuteRecompute bool // commit commutes computed at read time
	// ReleaseIntentsEarly drops the general path's intents (and the
	// values staged in them) before the commit point: the transaction
	// then reports success although its writes are gone.
	ReleaseIntentsEarly bool
	// SkipIntentRecovery makes a reader ignore an intent whose holder
	// committed at or before the read point (and never help it): it
	// reads the version underneath, older than its snapshot.
	SkipIntentRecovery bool
	// ObserveForeignPoints raises the coordinator's point floor with the
	// commit points of atoms, promises and delays that live on another
	// backend, whose clock is not the coordinator's: later transactions
	// then read at a point of the wrong clock (lost updates, torn reads).
	ObserveForeignPoints bool
	// TrustMissingRecord makes readers and writers that meet an intent
	// whose record a lookup reports missing roll the intent back at once,
	// without the linearizable AbortRecord that confirms it: a lookup
	// served by a lagging server then drops a live transaction's intent,
	// and its commit is lost.
	TrustMissingRecord bool
	// WatchGapFirstOnly makes a watcher look for a gap only before the
	// first version it delivers in a round, so a hole between versions
	// that an incomplete feed and a trimmed history leave in the middle
	// goes unannounced.
	WatchGapFirstOnly bool
	// WatchStartRace makes AddWatch install its watch only after the
	// watcher's first read of the history, and only the AddWatch that
	// started the watcher wait for that read: a RemoveWatch of another
	// key meanwhile takes the watcher away from under the new watch, and
	// a second AddWatch returns before the start point is fixed.
	WatchStartRace bool
	// TrustAbortedRecord makes a reader that meets an intent whose record
	// is aborted read the version underneath it, as if an aborted record
	// proved the holder never committed. It may be the tombstone a
	// confirmation of a missing record wrote for a holder that committed,
	// finished and was deleted: the reader then misses that commit.
	TrustAbortedRecord bool
	// GiveBackEveryRound makes the general path's give-back (the intents
	// it drops to wait in order, then takes again under the same id) drop
	// the transaction's intents of every Lock round: a delayed copy of it
	// then removes the intents taken again later, and the commit loses
	// those writes.
	GiveBackEveryRound bool
	// ExtendUnchecked makes an attempt that waited for a local turn move
	// its read point forward without checking that the refs it has seen
	// still have, at the new point, the versions it read: it then commits
	// writes computed from values another process has since overwritten
	// (lost updates, torn reads).
	ExtendUnchecked bool
}

// Observe raises the process's point floor to p, a point of the
// coordinator's clock.
func (e *Env) Observe(p clock.Point) { raise(e.Floor, p) }

// ObserveOn records p, a commit point drawn by drv's own clock (an atom's,
// a promise's or a delay's compare-and-set on drv). Points of different
// clocks are never compared: only a point of the coordinator's clock
// raises the floor transactions read at; another backend's points raise
// that backend's floor (FloorOf), which only its own references use.
func (e *Env) ObserveOn(drv backend.Driver, p clock.Point) {
	if drv.ID() == e.Coord.ID() || e.Faults.ObserveForeignPoints {
		e.Observe(p)
		return
	}
	f, _ := e.floors.LoadOrStore(drv.ID(), new(atomic.Uint64))
	raise(f.(*atomic.Uint64), p)
}

// FloorOf is the newest point of drv's clock this process has seen: the
// coordinator's floor for the coordinator, else what ObserveOn recorded.
func (e *Env) FloorOf(drv backend.Driver) clock.Point {
	if drv.ID() == e.Coord.ID() {
		return clock.Point(e.Floor.Load())
	}
	if f, ok := e.floors.Load(drv.ID()); ok {
		return clock.Point(f.(*atomic.Uint64).Load())
	}
	return 0
}

func raise(f *atomic.Uint64, p clock.Point) {
	for {
		cur := f.Load()
		if uint64(p) <= cur || f.CompareAndSwap(cur, uint64(p)) {
			return
		}
	}
}

// Key names a ref in a backend.
type Key struct {
	Drv  backend.Driver
	Name string
	// Claim (in a retry's prefetch) asks Begin to take the ref's local
	// turn before it reads (see Turns).
	Claim bool
}

type key struct{ backend, name string }

// CommuteFn computes a commuted ref's new value from its value.
type CommuteFn func(old []byte) ([]byte, error)

// entry is what an attempt knows of one ref.
type entry struct {
	drv  backend.Driver
	name string
	// names is name as a one-name list, the Names of a read of this ref
	// alone: no list is allocated per read.
	names [1]string

	loaded bool
	val    []byte // the in-transaction value
	newest backend.Version

	read     bool        // read by the function: prefetched on a retry
	seen     bool        // the function saw the value read from the backend
	turn     bool        // the attempt holds the ref's local turn
	slot     uint32      // its slot (Turns), set with turn
	at       clock.Point // the point of the version read
	fault    bool        // a read ahead at the read point faulted (history is short)
	written  bool
	commuted bool
	ensured  bool
	commutes []CommuteFn
	validate func([]byte) error
}

// Tx is one attempt of a transaction.
type Tx struct {
	env     *Env
	ctx     context.Context
	id      string
	rp      clock.Point
	floor   clock.Point // the process's floor when the attempt began
	rpSet   bool        // rp is drawn (lazily: with the first read, or at commit)
	prio    Priority    // set with rp
	prioRef *Priority   // the Dosync's priority, set by its first read point
	gid     uint64      // the goroutine that runs the attempt

	mu         sync.Mutex
	done       bool
	committing bool  // set by Commit: from then on the sets are Commit's alone
	doomed     error // set when the function was unwound; the attempt cannot commit
	// order is every ref the attempt touched, in first-touch order; the
	// first few entries live in slab. Past mapFrom refs, entries indexes
	// them (small transactions search order, which allocates nothing).
	order   []*entry
	entries map[key]*entry
	slab    [4]entry
	// Backing arrays of small transactions' lists, so that they cost no
	// allocations of their own: order, and Commit's plan and one-phase
	// request. A Tx is never reused, so nothing that keeps them (a
	// cleanup going on in the background) sees them change.
	orderBuf [4]*entry
	itemBuf  [4]item
	planBuf  [4]*item
	reqBuf   [4]backend.OnePhaseItem
	readBuf  [1]backend.ReadItem // load's, through backend.ReadInto
	// cctx is ctx: the caller's ctx carrying this Tx, without a
	// context.WithValue allocated for it.
	cctx txCtx

	// local turns (turns.go)
	age        atomic.Uint64 // the Dosync's local age: lower is older
	waitOn     atomic.Pointer[turnSlot]
	wounded    atomic.Bool // the youngest of a cycle of waits: give way
	wake       chan struct{}
	held       []uint32 // slots held
	heldBuf    [4]uint32
	registered bool // in Turns.gor
	cp         clock.Point
	rpShown    bool // ReadPoint was called: the read point stays
}

// txCtx is a context.Context that carries its Tx (FromContext) and
// otherwise is the Dosync's ctx.
type txCtx struct {
	context.Context
	tx *Tx
}

func (c *txCtx) Value(k any) any {
	if k == (ctxKey{}) {
		return c.tx
	}
	return c.Context.Value(k)
}

const mapFrom = 16

type ctxKey struct{}

// FromContext returns the transaction ctx carries, or nil.
func FromContext(ctx context.Context) *Tx {
	tx, _ := ctx.Value(ctxKey{}).(*Tx)
	return tx
}

// Begin starts an attempt. prio is the priority of the attempt's Dosync;
// if its Point is zero it is set to the first read point drawn. The read
// point is drawn lazily, together with the first read of a coordinator ref
// (one round trip for both), or at commit for blind writes. Refs in
// prefetch that live in the coordinator are read at once, together with the
// read point, in one round trip.
func Begin(ctx context.Context, env *Env, prio *Priority, prefetch []Key) (*Tx, error) {
	tx := &Tx{env: env, id: env.NewID(), gid: goid.Get(), prioRef: prio, floor: clock.Point(env.Floor.Load())}
	tx.cctx = txCtx{Context: ctx, tx: tx}
	tx.ctx = &tx.cctx
	tx.order = tx.orderBuf[:0]
	if env.Turns != nil {
		if prio.Seq == 0 {
			prio.Seq = env.Turns.seq.Add(1)
		}
		tx.age.Store(prio.Seq)
		if err := tx.claimAll(prefetch); err != nil {
			return nil, fmt.Errorf("txn: begin: %w", err)
		}
	}
	var names []string
	for _, k := range prefetch {
		if k.Drv.ID() == env.Coord.ID() {
			names = append(names, k.Name)
		}
	}
	if len(names) > 0 {
		res, err := env.Coord.Read(ctx, backend.ReadRequest{Current: true, Names: names})
		if err != nil {
			tx.turnsDone()
			return nil, fmt.Errorf("txn: begin: %w", err)
		}
		if tx.setRP(res.RP) {
			for i, it := range res.Items {
				tx.prefetched(tx.entry(Key{Drv: env.Coord, Name: names[i]}), it)
			}
		}
	}
	return tx, nil
}

// prefetched takes what a read ahead of the function (Begin, Preload) found
// for e. A plain version is e's value. A read fault is kept, so that Read
// retries on it instead of reading again and making the driver grow the
// history a second time. Anything else (an intent to look into, a missing
// ref) is left to Read, which handles it.
func (tx *Tx) prefetched(e *entry, it backend.ReadItem) {
	if !it.Found || it.Intent != nil {
		return
	}
	e.newest = it.Newest
	switch it.Result {
	case history.Found:
		e.loaded, e.val, e.at = true, it.Version.Value, it.Version.Point
	case history.Fault:
		e.fault = true
	}
}

// setRP fixes the read point at p, raised to the process's floor as it
// was when the attempt began: a Dosync sees every Dosync of this process
// that finished before it began (I5 in docs/design.md). (Not the floor now:
// concurrent Dosyncs keep raising it, and chasing it would cost rereads
// without making anything more visible that I5 asks for.) It reports
// whether p itself was kept.
func (tx *Tx) setRP(p clock.Point) bool {
	kept := p >= tx.floor
	if !kept {
		p = tx.floor
	}
	tx.rp, tx.rpSet = p, true
	tx.env.Observe(p)
	if tx.prioRef.ID == "" { // the Dosync's first read point (which may be 0)
		*tx.prioRef = Priority{Point: p, ID: tx.id, Seq: tx.prioRef.Seq}
	}
	tx.prio = *tx.prioRef
	return kept
}

// drawRP draws the read point from the clock if it is not drawn yet.
func (tx *Tx) drawRP() error {
	if tx.rpSet {
		return nil
	}
	end := tx.step(SpanReadPoint)
	p, err := tx.env.Points.ReadPoint(tx.ctx)
	end(err)
	if err != nil {
		return fmt.Errorf("txn: read point: %w", err)
	}
	tx.setRP(p)
	return nil
}

// ID is the attempt's transaction id, stamped on the versions it writes.
func (tx *Tx) ID() string { return tx.id }

// ReadPoint is the point the attempt reads at (drawn now if it was not
// yet).
func (tx *Tx) ReadPoint() clock.Point {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if !tx.rpSet && !tx.done && !tx.committing {
		if err := tx.drawRP(); err != nil {
			tx.unwind(err)
		}
	}
	tx.rpShown = true
	return tx.rp
}

// Context returns the Dosync's ctx, marked with this transaction. A Dosync
// with it (or a ctx derived from it) on the goroutine running the
// transaction joins it; on any other goroutine it is a transaction of its
// own.
func (tx *Tx) Context() context.Context { return tx.ctx }

// joinable reports whether a Dosync of env on the calling goroutine joins tx.
func (tx *Tx) joinable(env *Env) bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.env == env && !tx.done && tx.gid == goid.Get()
}

// end marks the attempt over: any later use panics with ErrOutsideTx.
func (tx *Tx) end() {
	tx.mu.Lock()
	if !tx.done {
		tx.cool()
	}
	tx.done = true
	tx.mu.Unlock()
	tx.turnsDone()
}

// prefetch returns the refs the function read, to be read with the next
// attempt's read point.
func (tx *Tx) prefetch() []Key {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	var out []Key
	for _, e := range tx.order {
		if e.read || e.turn {
			out = append(out, Key{Drv: e.drv, Name: e.name, Claim: e.turn})
		}
	}
	return out
}

// live panics if the attempt is over. The caller holds tx.mu.
func (tx *Tx) live() {
	if tx.done {
		panic(fmt.Errorf("%w (transaction %s)", ErrOutsideTx, tx.id))
	}
	if tx.committing {
		panic(fmt.Errorf("%w: transaction %s is committing (a commute function or validator used its Tx)", ErrOutsideTx, tx.id))
	}
	if tx.doomed != nil {
		panic(abort{tx.doomed})
	}
}

// unwind ends the function with err (retried if it is a *RetryError). The
// caller holds tx.mu, released by its deferred unlock as the panic unwinds.
func (tx *Tx) unwind(err error) {
	tx.doomed = err
	panic(abort{err})
}

// doom marks the attempt so that it cannot commit: its Commit returns err
// (the first error it was doomed with), and any later use of the Tx
// unwinds the function with it. Unlike Abort it returns normally, for a
// nested Dosync that returns its function's error to the outer function.
func (tx *Tx) doom(err error) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.doomed == nil && !tx.done && !tx.committing {
		tx.doomed = err
	}
}

// abortWith ends the transaction with err, without retry: nothing is written.
func (tx *Tx) abortWith(err error) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.live()
	tx.unwind(err)
}

func (tx *Tx) entry(k Key) *entry {
	id := k.Drv.ID()
	if tx.entries != nil {
		if e := tx.entries[key{id, k.Name}]; e != nil {
			return e
		}
	} else {
		for _, e := range tx.order {
			if e.name == k.Name && e.drv.ID() == id {
				return e
			}
		}
	}
	if id != tx.env.Coord.ID() && tx.env.Resolver.Lookup(id) == nil {
		tx.unwind(fmt.Errorf("%w: %q lives in backend %s, which this STM does not know (create the ref with this STM, using refs.On)", ErrForeignRef, k.Name, id))
	}
	var e *entry
	if n := len(tx.order); n < len(tx.slab) {
		e = &tx.slab[n]
	} else {
		e = &entry{}
	}
	*e = entry{drv: k.Drv, name: k.Name, names: [1]string{k.Name}}
	tx.order = append(tx.order, e)
	switch {
	case tx.entries != nil:
		tx.entries[key{id, k.Name}] = e
	case len(tx.order) > mapFrom:
		tx.entries = make(map[key]*entry, 2*mapFrom)
		for _, e := range tx.order {
			tx.entries[key{e.drv.ID(), e.name}] = e
		}
	}
	return e
}

// read returns the ref's value in this transaction: its own write if it made
// one, else the newest version committed at or before the read point.
func (tx *Tx) read(k Key) []byte {
	if t := tx.env.Turns; t != nil && t.hot(k.Name) {
		// Read-modify-writes of this ref are common here: take its
		// local turn before reading it (see turnSlot.hot).
		tx.claim(k)
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.live()
	e := tx.entry(k)
	e.read = true
	if !e.loaded {
		tx.load(e, false)
	}
	if !e.written && !e.commuted {
		e.seen = true
	}
	return e.val
}

// preload reads the refs of keys that the attempt has not read yet in one
// round trip per backend, the coordinator's first, and with the read point
// if it is not drawn yet. It is only an optimisation: a ref that needs more
// (an intent to resolve) is left for Read, which handles it; a read fault
// is kept for Read to retry on (see prefetched).
func (tx *Tx) preload(keys ...Key) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.live()
	coord := tx.env.Coord.ID()
	var order []string
	groups := map[string][]*entry{}
	for _, k := range keys {
		e := tx.entry(k)
		if e.loaded || e.fault {
			continue
		}
		id := e.drv.ID()
		if groups[id] == nil {
			if id == coord {
				order = append([]string{id}, order...)
			} else {
				order = append(order, id)
			}
		}
		groups[id] = append(groups[id], e)
	}
	for _, id := range order {
		es := groups[id]
		names := make([]string, len(es))
		for i, e := range es {
			names[i] = e.name
		}
		var res backend.ReadResult
		var err error
		if !tx.rpSet && id == coord {
			res, err = es[0].drv.Read(tx.ctx, backend.ReadRequest{Current: true, Names: names})
			if err == nil && !tx.setRP(res.RP) {
				continue // a stale point: leave these to Read
			}
		} else {
			if err := tx.drawRP(); err != nil {
				tx.unwind(err)
			}
			res, err = es[0].drv.Read(tx.ctx, backend.ReadRequest{RP: tx.rp, Foreign: id != coord, Names: names})
		}
		if err != nil {
			tx.unwind(fmt.Errorf("txn: read %v at %d: %w", names, tx.rp, err))
		}
		for i, it := range res.Items {
			tx.prefetched(es[i], it)
			es[i].read = es[i].read || es[i].loaded
		}
	}
}

// write sets the ref's value in this transaction (ref-set). validate, if not
// nil, is run on the final value before commit.
func (tx *Tx) write(k Key, v []byte, validate func([]byte) error) {
	tx.claim(k)
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.live()
	e := tx.entry(k)
	if e.commuted {
		tx.unwind(fmt.Errorf("%w: %q", ErrSetAfterCommute, k.Name))
	}
	e.val, e.loaded, e.written = v, true, true
	if validate != nil {
		e.validate = validate
	}
}

// commute applies f to the ref's in-transaction value and returns the
// result; at commit f runs again on the newest committed value, so
// commutes never conflict with each other.
func (tx *Tx) commute(k Key, f CommuteFn, validate func([]byte) error) []byte {
	// The turn first, so that the base read is fresh: the commit then
	// finds it newest unless another process committed since.
	tx.claim(k)
	e, old := tx.commuteBase(k)
	// User code runs without the lock, so it may use the Tx.
	nv, err := f(old)
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.live()
	if err != nil {
		tx.unwind(err)
	}
	e.val, e.commuted = nv, true
	e.commutes = append(e.commutes, f)
	if validate != nil {
		e.validate = validate
	}
	return nv
}

// commuteBase returns the entry of k and its in-transaction value, the
// base of a commute. Like every method that takes tx.mu, it releases it
// with a deferred unlock: live, entry and load panic to unwind.
func (tx *Tx) commuteBase(k Key) (*entry, []byte) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.live()
	e := tx.entry(k)
	if !e.loaded {
		tx.load(e, true)
	}
	return e, e.val
}

// ensure protects the ref from writes by others until this transaction
// commits (ruling out write skew) and returns its value.
func (tx *Tx) ensure(k Key) []byte {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.live()
	e := tx.entry(k)
	e.read, e.ensured = true, true
	if !e.loaded {
		tx.load(e, false)
	}
	if !e.written && !e.commuted {
		e.seen = true
	}
	return e.val
}

// load reads e at the read point, resolving any intent on it. A commute
// (anyNewest) that finds history too short uses the newest value instead of
// faulting. The caller holds tx.mu.
func (tx *Tx) load(e *entry, anyNewest bool) {
	if e.fault {
		// Read ahead at this read point, the history was too short (and
		// the driver grew it then): reading again would fault again.
		tx.faulted(e, anyNewest)
		return
	}
	const maxRereads = 8
	extended := false
	if e.turn && !anyNewest && tx.rpSet && tx.env.Turns.committedSince(e.slot, tx.rp) {
		// A transaction of this process committed to it after our read
		// point (we waited for its turn): a read at our point would only
		// show that we must move it.
		extended = true
		if tx.extend(e) == extDone {
			return
		}
	}
	for tries := 0; ; tries++ {
		var res backend.ReadResult
		var err error
		if !tx.rpSet && e.drv.ID() == tx.env.Coord.ID() {
			// The read point and this read in one round trip.
			res, err = tx.readOne(e.drv, backend.ReadRequest{Current: true, Names: e.names[:]})
			if err == nil && !tx.setRP(res.RP) {
				continue // a stale point: read again at the floor
			}
		} else {
			if err := tx.drawRP(); err != nil {
				tx.unwind(err)
			}
			res, err = tx.readOne(e.drv, backend.ReadRequest{RP: tx.rp, Foreign: e.drv.ID() != tx.env.Coord.ID(), Names: e.names[:]})
		}
		if err != nil {
			tx.unwind(fmt.Errorf("txn: read %q at %d: %w", e.name, tx.rp, err))
		}
		it := res.Items[0]
		if !it.Found {
			tx.unwind(fmt.Errorf("txn: read %q: %w", e.name, backend.ErrNotFound))
		}
		e.newest = it.Newest
		if in := it.Intent; in != nil {
			// The holder's status, as the coordinator has it now: a
			// record a lookup reports missing is confirmed by a
			// linearizable step first (Resolver.Record), never believed
			// from a read that may be stale.
			rec, err := tx.env.Resolver.Record(tx.ctx, in)
			if err != nil {
				tx.unwind(fmt.Errorf("txn: read %q: %w", e.name, err))
			}
			switch Rule(in, rec) {
			case AtCommit:
				v := IntentVersion(in, rec)
				e.newest = v
				if rec.CP <= tx.rp && !tx.env.Faults.SkipIntentRecovery {
					// Committed at or before our point but not yet
					// rolled forward: its value is the one to see.
					e.loaded, e.val, e.at = true, v.Value, v.Point
					tx.help(e, rec)
					return
				}
				tx.help(e, rec)
			case Underneath:
				tx.help(e, rec) // a committed ensure: finish it
			case ReadAgain:
				if rec.Status == backend.Aborted && tx.env.Faults.TrustAbortedRecord {
					tx.help(e, rec)
					break
				}
				if tries < maxRereads {
					tx.help(e, rec)
					continue
				}
				tx.unwind(fmt.Errorf("txn: read %q: intent of %s, whose record says %s, is still there after %d reads", e.name, in.Txn, rec.Status, tries+1))
			}
			// Pending: it cannot commit at or before our point (drawing its
			// CP and marking it committed is one step, after our RP was
			// drawn), so readers never wait for writers. Committed after
			// our point: the version underneath is ours.
		}
		if it.Result == history.Fault {
			tx.faulted(e, anyNewest)
			return
		}
		if e.turn && !anyNewest && !extended && it.Intent == nil && it.Newest.Point > tx.rp {
			// Written by another after our read point, most likely by
			// the transaction of this process whose turn we waited for:
			// move the read point instead of failing at commit.
			extended = true
			switch tx.extend(e) {
			case extDone:
				return
			case extReload:
				continue
			}
		}
		e.loaded, e.val, e.at = true, it.Version.Value, it.Version.Point
		return
	}
}

// readOne reads one ref for load: into tx.readBuf where the driver
// offers backend.ReadInto (the result's item is load's to copy out before
// the next read).
func (tx *Tx) readOne(drv backend.Driver, req backend.ReadRequest) (backend.ReadResult, error) {
	if ri, ok := drv.(backend.ReadInto); ok {
		return ri.ReadInto(tx.ctx, req, tx.readBuf[:0])
	}
	return drv.Read(tx.ctx, req)
}

// faulted handles a read of e that found no version at or before the read
// point (history was trimmed): a commute (anyNewest) takes the newest
// value, its value being provisional anyway; a read retries the attempt.
func (tx *Tx) faulted(e *entry, anyNewest bool) {
	if anyNewest {
		e.loaded, e.val = true, e.newest.Value
		return
	}
	tx.env.Stats.ReadFaults.Add(1)
	tx.env.Tel.conflict(tx.ctx, ReasonReadFault)
	tx.unwind(retryf("read fault: history of %q no longer reaches point %d", e.name, tx.rp))
}

// help finishes another transaction's intent on e once its record is
// final: rolled forward at once when committed (readers already see its
// value through the record; rolling it forward spares the next reader the
// record lookup), back when aborted or missing. A pending holder is left
// alone: readers never wait for writers. Errors are ignored: helping is an
// optimisation, and the sweeper recovers whatever is left.
func (tx *Tx) help(e *entry, rec backend.Record) {
	if rec.Status == backend.Pending {
		return
	}
	if tx.env.Resolver.Finish(tx.ctx, e.drv, e.name, rec) == nil {
		tx.env.Stats.Helped.Add(1)
	}
}
