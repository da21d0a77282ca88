package backendtest

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"pgregory.net/rapid"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// This file holds the plan of a model run (drawn by rapid before anything
// runs), the executor that runs it against an STM and records what every
// attempt saw and did, and the history the checker in model_check.go reads.

// opKind is what one operation of a planned transaction does.
type opKind int

const (
	opRead    opKind = iota // Get(x)
	opWrite                 // Set(x, a value unique to the attempt)
	opCommute               // Commute(counter, +Delta)
	opEnsure                // Ensure(x)
	// opNested runs, on the first attempt only, an independent Dosync (a
	// ctx that does not carry the transaction) that sets x, or commutes
	// the counter by Delta if Delta > 0: it commits between the outer
	// attempt's read point and its commit, a conflict made by construction
	// rather than by timing.
	opNested
)

type planOp struct {
	Kind  opKind
	Ref   int // the string ref (not for opCommute)
	Delta int // opCommute, and opNested on the counter: 1..5
	// Inner, if set, are the ops of an opNested transaction instead.
	Inner []planOp
}

type planTxn struct {
	Ops   []planOp
	Abort bool // the function returns errModelAbort after its ops
	// Before the transaction, outside it, the client may swap an atom (on
	// the coordinator or on the second backend, whose clock is kept ahead
	// of the coordinator's) and add or remove its watch on x0.
	Swap  swapKind
	Watch watchOp
}

// swapKind is an atom swap a client does between its transactions.
type swapKind int

const (
	noSwap swapKind = iota
	swapB1          // the atom in the coordinator
	swapB2          // the atom on the second backend (another clock)
)

// watchOp is a change of a client's watch on x0 between its transactions.
type watchOp int

const (
	noWatch     watchOp = iota
	addWatch            // AddWatch(client's key): installs it, or replaces it
	removeWatch         // RemoveWatch(client's key): whether or not it is there
)

// modelPlan is one drawn scenario.
type modelPlan struct {
	Refs    int  // string refs x0..x{Refs-1}; the counter is separate
	General bool // engine.WithGeneralPath
	// OnB2[i] puts x_i (i < Refs) or the counter (i == Refs) on a second
	// backend: mixed-backend transactions take the general path.
	OnB2    []bool
	Clients [][]planTxn
}

func (op planOp) String() string {
	switch op.Kind {
	case opRead:
		return fmt.Sprintf("r%d", op.Ref)
	case opWrite:
		return fmt.Sprintf("w%d", op.Ref)
	case opCommute:
		return fmt.Sprintf("+%d", op.Delta)
	case opEnsure:
		return fmt.Sprintf("e%d", op.Ref)
	case opNested:
		if op.Inner != nil {
			var in []string
			for _, o := range op.Inner {
				in = append(in, o.String())
			}
			return "n{" + strings.Join(in, " ") + "}"
		}
		if op.Delta > 0 {
			return fmt.Sprintf("n+%d", op.Delta)
		}
		return fmt.Sprintf("n%d", op.Ref)
	}
	return "?"
}

// GoString makes rapid print a drawn plan readably: r=read, w=write,
// e=ensure, +d=commute, n=nested independent write (n+d: commute); "!"
// marks an abort.
func (p modelPlan) GoString() string {
	var b strings.Builder
	fmt.Fprintf(&b, "plan{refs: %d, general: %v", p.Refs, p.General)
	var on []string
	for i, o := range p.OnB2 {
		if o {
			on = append(on, modelRefLabel(i, p.Refs))
		}
	}
	if len(on) > 0 {
		fmt.Fprintf(&b, ", on b2: %s", strings.Join(on, " "))
	}
	for c, txs := range p.Clients {
		fmt.Fprintf(&b, "; c%d:", c)
		for _, tx := range txs {
			var ops []string
			for _, op := range tx.Ops {
				ops = append(ops, op.String())
			}
			abort := ""
			if tx.Abort {
				abort = "!"
			}
			pre := ""
			switch tx.Swap {
			case swapB1:
				pre += "swap1 "
			case swapB2:
				pre += "swap2 "
			}
			switch tx.Watch {
			case addWatch:
				pre += "watch+ "
			case removeWatch:
				pre += "watch- "
			}
			fmt.Fprintf(&b, " %s[%s]%s", pre, strings.Join(ops, " "), abort)
		}
	}
	b.WriteString("}")
	return b.String()
}

func modelRefLabel(i, nrefs int) string {
	if i == nrefs {
		return "ctr"
	}
	return fmt.Sprintf("x%d", i)
}

// genOpts says what a drawn plan may use beyond one backend's refs.
type genOpts struct {
	mixed   bool // refs on the second backend
	atomB2  bool // atom swaps on the second backend
	watches bool // watches on x0 (their goroutine makes driver calls of its own)
}

// genPlan draws a plan: 2-4 clients, 1-6 transactions each, 1-4 ops each
// over 2-3 refs, and now and then an atom swap or a watch change between
// transactions. Every draw shrinks towards the simplest case (a read, no
// abort, the fast path, one backend, no swap, no watch).
func genPlan(o genOpts) *rapid.Generator[modelPlan] {
	mixed := o.mixed
	return rapid.Custom(func(t *rapid.T) modelPlan {
		p := modelPlan{Refs: rapid.IntRange(2, 3).Draw(t, "refs")}
		p.General = rapid.Bool().Draw(t, "general")
		if mixed && rapid.Bool().Draw(t, "mixed") {
			p.OnB2 = make([]bool, p.Refs+1)
			for i := range p.OnB2 {
				p.OnB2[i] = rapid.Bool().Draw(t, "onB2")
			}
		}
		clients := rapid.IntRange(2, 4).Draw(t, "clients")
		for range clients {
			var txs []planTxn
			for range rapid.IntRange(1, 6).Draw(t, "txns") {
				var tx planTxn
				for range rapid.IntRange(1, 4).Draw(t, "ops") {
					op := planOp{Ref: rapid.IntRange(0, p.Refs-1).Draw(t, "ref")}
					switch k := rapid.IntRange(0, 19).Draw(t, "kind"); {
					case k < 6:
						op.Kind = opRead
					case k < 11:
						op.Kind = opWrite
					case k < 14:
						op.Kind = opCommute
						op.Delta = rapid.IntRange(1, 5).Draw(t, "delta")
					case k < 18:
						op.Kind = opEnsure
					default:
						op.Kind = opNested
						if rapid.IntRange(0, 2).Draw(t, "nestedCommute") == 2 {
							op.Delta = rapid.IntRange(1, 5).Draw(t, "delta")
						}
					}
					tx.Ops = append(tx.Ops, op)
				}
				tx.Abort = rapid.IntRange(0, 5).Draw(t, "abort") == 5
				switch rapid.IntRange(0, 9).Draw(t, "swap") {
				case 8:
					tx.Swap = swapB1
				case 9:
					if o.atomB2 {
						tx.Swap = swapB2
					}
				}
				if o.watches {
					switch rapid.IntRange(0, 9).Draw(t, "watch") {
					case 8:
						tx.Watch = addWatch
					case 9:
						tx.Watch = removeWatch
					}
				}
				txs = append(txs, tx)
			}
			p.Clients = append(p.Clients, txs)
		}
		return p
	})
}

// errModelAbort is what an aborting transaction's function returns.
var errModelAbort = errors.New("backendtest: planned abort")

// modelRead is one value the function got from Get or Ensure.
type modelRead struct {
	Op     int // index in the transaction's ops
	Ref    int
	Value  string
	Ensure bool
	// Own is the value the attempt had itself set on the ref before this
	// read ("" if none): the read must return it.
	Own string
}

// modelAttempt is what one run of a transaction's function did.
type modelAttempt struct {
	N      int // 0 for the first attempt
	ID     string
	RP     clock.Point
	Reads  []modelRead
	Writes map[int]string // ref -> the last value set
	// Wrote lists every value set, for spotting values that must never be
	// seen (those of attempts that did not commit).
	Wrote   []string
	Ensured map[int]bool
	Delta   int  // sum of commuted increments
	Done    bool // the function ran to its end (was not unwound)
}

// writes reports whether a commit of the attempt writes a version.
func (a *modelAttempt) writes() bool { return len(a.Writes) > 0 || a.Delta > 0 }

// modelTxnStatus is how a Dosync ended.
type modelTxnStatus int

const (
	txnCommitted modelTxnStatus = iota
	txnAborted                  // the function returned errModelAbort
	txnFailed                   // any other error: the run is void
)

// modelTxnRec is one Dosync of the plan.
type modelTxnRec struct {
	Name     string // c<client>-t<txn>, plus -o<op>n for a nested one
	Client   int
	Status   modelTxnStatus
	Err      error
	Attempts []*modelAttempt
	// Start and End are logical times taken just before Dosync was called
	// and just after it returned (one counter for the whole run), to tell
	// which Dosyncs finished before others began.
	Start, End int64
}

// last is the attempt that ended the Dosync (the committing one when the
// transaction committed).
func (r *modelTxnRec) last() *modelAttempt {
	if len(r.Attempts) == 0 {
		return nil
	}
	return r.Attempts[len(r.Attempts)-1]
}

// modelVersion is one kept version of a ref, as History reports it.
type modelVersion struct {
	Point clock.Point
	Txn   string
	Value string // counter versions: the int, formatted
	N     int    // counter versions: the int
}

// modelRefHist is one ref's kept history, newest first.
type modelRefHist struct {
	Name     string
	Label    string // x0, x1, ..., ctr
	Initial  string
	Versions []modelVersion
}

// modelHistory is everything the checker looks at.
type modelHistory struct {
	Refs       []modelRefHist // string refs, in plan order
	Counter    modelRefHist
	CounterIni int
	Txns       []*modelTxnRec
	Stats      stm.Stats // the engine's counters for the run
	// Swaps are the atom swaps, by atom (1: the coordinator's, 2: the
	// second backend's); Atoms the atoms' final values.
	Swaps [3][]modelSwap
	Atoms [3]int
	// Watches are the clients' watches on x0, by key.
	Watches map[string]*modelWatch
}

// modelSwap is one atom swap: the value it set and the logical time it
// returned at.
type modelSwap struct {
	Client int
	Value  int
	Point  clock.Point // the version's point, from the atom's history
	At     int64
}

// modelWatch is one client's watch on x0: when AddWatch returned and
// RemoveWatch was called (logical times; Removed 0: still installed at the
// end) and what it was told.
type modelWatch struct {
	mu         sync.Mutex
	Added      int64
	Removed    int64
	Deliveries [][2]string // old, new
	Gaps       int
}

func (w *modelWatch) deliveries() [][2]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.Deliveries)
}

// modelRun is a plan being run: its STM, refs and logical clock.
type modelRun struct {
	s     *stm.STM
	xs    []*refs.Ref[string]
	ctr   *refs.Ref[int]
	atoms [3]*refs.Atom[int] // 1: in the coordinator, 2: on the second backend
	tick  atomic.Int64

	mu      sync.Mutex
	txns    []*modelTxnRec
	swaps   [3][]modelSwap
	watches map[string]*modelWatch // current watch of each key
	ended   []*modelWatch          // watches removed (or replaced)
}

func (m *modelRun) now() int64 { return m.tick.Add(1) }

const modelCounterInit = 1000

// modelOptions are the STM options of every model run: history is never
// trimmed, so every version stays visible to the checker, and backoff is
// short, so contended runs stay quick.
func modelOptions(general bool, extra ...stm.Option) []stm.Option {
	opts := []stm.Option{
		stm.WithMaxHistory(history.Limit),
		stm.WithMinHistory(1000),
		stm.WithBackoff(20*time.Microsecond, 2*time.Millisecond),
	}
	if general {
		opts = append(opts, engine.WithGeneralPath())
	}
	return append(opts, extra...)
}

// modelRunID makes ref names unique to one test binary run, so a server
// backend that outlives a run can be reused.
var modelRunID = func() string {
	var b [4]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

var modelSeq atomic.Int64

// modelPrefix returns a ref-name prefix no other check of this run uses.
func modelPrefix(kind string) string {
	return fmt.Sprintf("bt-%s-%s/%d", kind, modelRunID, modelSeq.Add(1))
}

// openModelSTM opens an STM on coordinator b1 for model runs, with b2
// registered from the start. One STM serves many runs, as one long-lived
// process would. (A fresh STM per run would also test Open's recovery
// sweep, which fails, as of this writing, once the coordinator holds a
// record past its lease that names a backend the new STM has not been
// told of yet, which refs.On can only do after Open: a mixed-backend
// transaction's aborted tombstone is enough.)
func openModelSTM(ctx context.Context, b1, b2 backend.Driver, general bool, extra ...stm.Option) (*stm.STM, error) {
	s, err := stm.Open(ctx, b1, modelOptions(general, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("stm.Open: %w", err)
	}
	engine.Of(s).Register(b2)
	return s, nil
}

// runPlan runs p on s (whose coordinator holds every ref not put on b2)
// and returns the recorded history. Refs are named under prefix, which no
// other run may use. An error means the run could not be set up or read
// back; failed Dosyncs are in the history (txnFailed).
func runPlan(ctx context.Context, s *stm.STM, b2 backend.Driver, prefix string, p modelPlan) (*modelHistory, error) {
	before := s.Stats()
	on := func(i int) []refs.Option {
		if i < len(p.OnB2) && p.OnB2[i] {
			return []refs.Option{refs.On(b2)}
		}
		return nil
	}
	m := &modelRun{s: s}
	for i := range p.Refs {
		r, err := refs.New(ctx, s, fmt.Sprintf("%s/x%d", prefix, i), modelInitial(i), on(i)...)
		if err != nil {
			return nil, err
		}
		m.xs = append(m.xs, r)
	}
	var err error
	m.ctr, err = refs.New(ctx, s, prefix+"/ctr", modelCounterInit, on(p.Refs)...)
	if err != nil {
		return nil, err
	}
	if err := m.newAtoms(ctx, prefix, b2, p); err != nil {
		return nil, err
	}

	start := make(chan struct{})
	var wg sync.WaitGroup
	for c, txs := range p.Clients {
		wg.Go(func() {
			<-start
			for i, tx := range txs {
				m.between(ctx, c, tx)
				m.run(ctx, c, fmt.Sprintf("c%d-t%d", c, i), tx)
			}
		})
	}
	close(start)
	wg.Wait()

	return m.history(ctx, p, before)
}

// newAtoms creates the atoms the plan swaps. Before the second backend's
// atom is swapped, its clock is moved well past the coordinator's, so that
// its points, if they were ever taken for the coordinator's, would show
// (as read points beyond every commit).
func (m *modelRun) newAtoms(ctx context.Context, prefix string, b2 backend.Driver, p modelPlan) error {
	var err error
	for _, txs := range p.Clients {
		for _, tx := range txs {
			switch {
			case tx.Swap == swapB1 && m.atoms[1] == nil:
				if m.atoms[1], err = refs.NewAtom(ctx, m.s, prefix+"/atom1", 0); err != nil {
					return err
				}
			case tx.Swap == swapB2 && m.atoms[2] == nil:
				if m.atoms[2], err = refs.NewAtom(ctx, m.s, prefix+"/atom2", 0, refs.On(b2)); err != nil {
					return err
				}
				if _, err := advanceDriverPast(ctx, b2, m.s.Coordinator(), prefix); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// advanceDriverPast moves drv's clock past coord's, by one-phase commits
// of a scratch ref through the driver itself (no STM sees those points).
// It reports whether drv's clock got well past coord's within 1000 commits
// and is another clock (two ZooKeeper roots on one ensemble share one).
func advanceDriverPast(ctx context.Context, drv, coord backend.Driver, prefix string) (bool, error) {
	target, err := coord.ReadPoint(ctx)
	if err != nil {
		return false, err
	}
	target += 200
	commit, err := scratch(ctx, drv, prefix+"/advance-b2")
	if err != nil {
		return false, err
	}
	for i := 0; i < 1000; i++ {
		cp, err := commit()
		if err != nil {
			return false, err
		}
		if cp > target {
			c, err := scratch(ctx, coord, prefix+"/advance-b1")
			if err != nil {
				return false, err
			}
			other, err := c()
			return other < cp, err
		}
	}
	return false, nil
}

// scratch returns a function that commits a new version of the scratch ref
// name of drv through the driver itself and returns its point.
func scratch(ctx context.Context, drv backend.Driver, name string) (func() (clock.Point, error), error) {
	one, ok := drv.(backend.OnePhase)
	if !ok {
		return nil, fmt.Errorf("%s has no one-phase commit", drv.ID())
	}
	if _, err := drv.Create(ctx, backend.CreateRequest{Name: name, Kind: backend.KindRef, Value: []byte{0}}); err != nil {
		return nil, err
	}
	i := 0
	return func() (clock.Point, error) {
		i++
		res, err := one.CommitOnePhase(ctx, backend.OnePhaseRequest{Txn: fmt.Sprintf("%s-%d-%d", name, modelSeq.Add(1), i), RP: ^clock.Point(0), Time: time.Now(),
			Items: []backend.OnePhaseItem{{Name: name, Mode: backend.ModeWrite, Value: []byte{byte(i)}}}})
		if err == nil && res.Status != backend.Committed {
			err = fmt.Errorf("scratch commit on %s: %+v", drv.ID(), res)
		}
		return res.CP, err
	}, nil
}

// between runs what a client does before a transaction, outside it: an
// atom swap, a change of its watch.
func (m *modelRun) between(ctx context.Context, client int, p planTxn) {
	if a := m.atoms[p.Swap]; p.Swap != noSwap && a != nil {
		v, err := a.Swap(ctx, func(v int) int { return v + 1 })
		m.mu.Lock()
		if err == nil {
			m.swaps[p.Swap] = append(m.swaps[p.Swap], modelSwap{Client: client, Value: v, At: m.now()})
		}
		m.mu.Unlock()
	}
	key := fmt.Sprintf("c%d", client)
	switch p.Watch {
	case addWatch:
		w := &modelWatch{}
		m.xs[0].AddWatch(key, func(_ string, _ *refs.Ref[string], old, new string) {
			w.mu.Lock()
			w.Deliveries = append(w.Deliveries, [2]string{old, new})
			w.mu.Unlock()
		}, refs.OnGap(func(string, clock.Point, clock.Point) {
			w.mu.Lock()
			w.Gaps++
			w.mu.Unlock()
		}))
		w.Added = m.now()
		m.mu.Lock()
		if old := m.watches[key]; old != nil {
			old.Removed = w.Added // replaced
			m.ended = append(m.ended, old)
		}
		if m.watches == nil {
			m.watches = map[string]*modelWatch{}
		}
		m.watches[key] = w
		m.mu.Unlock()
	case removeWatch:
		at := m.now()
		m.xs[0].RemoveWatch(key)
		m.mu.Lock()
		if w := m.watches[key]; w != nil {
			w.Removed = at
			m.ended = append(m.ended, w)
			delete(m.watches, key)
		}
		m.mu.Unlock()
	}
}

// history reads the refs back into a modelHistory once every client is
// done.
func (m *modelRun) history(ctx context.Context, p modelPlan, before stm.Stats) (*modelHistory, error) {
	if _, err := m.watchesQuiet(ctx); err != nil {
		return nil, err
	}
	h := &modelHistory{Txns: m.txns, CounterIni: modelCounterInit, Stats: modelStatsSince(before, m.s.Stats())}
	for i, r := range m.xs {
		vs, err := r.History(ctx)
		if err != nil {
			return nil, err
		}
		rh := modelRefHist{Name: r.Name(), Label: modelRefLabel(i, p.Refs), Initial: modelInitial(i)}
		for _, v := range vs {
			rh.Versions = append(rh.Versions, modelVersion{Point: v.Point, Txn: v.Txn, Value: v.Value})
		}
		h.Refs = append(h.Refs, rh)
	}
	vs, err := m.ctr.History(ctx)
	if err != nil {
		return nil, err
	}
	h.Counter = modelRefHist{Name: m.ctr.Name(), Label: "ctr", Initial: fmt.Sprint(modelCounterInit)}
	for _, v := range vs {
		h.Counter.Versions = append(h.Counter.Versions, modelVersion{Point: v.Point, Txn: v.Txn, Value: fmt.Sprint(v.Value), N: v.Value})
	}
	for i, a := range m.atoms {
		if a == nil {
			continue
		}
		av, err := a.History(ctx)
		if err != nil {
			return nil, err
		}
		h.Atoms[i] = av[0].Value
		h.Swaps[i] = m.swaps[i]
		for j := range h.Swaps[i] {
			for _, v := range av {
				if v.Value == h.Swaps[i][j].Value {
					h.Swaps[i][j].Point = v.Point
				}
			}
		}
	}
	m.recordWatches(h)
	return h, nil
}

// watchesQuiet ends the watches of the run: when some are still
// installed, a last Dosync sets x0 (it began after every AddWatch
// returned, so every installed watch must be told of it), and each waits
// for it (up to the suite's bound: past it the checker reports what is
// missing); then they are removed, and every watch of the run is recorded
// in h. It returns the last Dosync's value ("" if none).
func (m *modelRun) watchesQuiet(ctx context.Context) (string, error) {
	m.mu.Lock()
	live := maps.Clone(m.watches)
	m.mu.Unlock()
	if len(live) == 0 {
		return "", nil
	}
	const last = "last"
	m.run(ctx, -1, last, planTxn{Ops: []planOp{{Kind: opWrite, Ref: 0}}})
	final := fmt.Sprintf("%s-o0-a0", last)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for key, w := range live {
	waiting:
		for !slices.ContainsFunc(w.deliveries(), func(d [2]string) bool { return strings.HasPrefix(d[1], last+"-") }) {
			select {
			case <-ctx.Done():
				break waiting
			case <-deadline.C:
				break waiting
			case <-tick.C:
			}
		}
		m.xs[0].RemoveWatch(key)
	}
	return final, nil
}

// recordWatches puts every watch of the run in h.
func (m *modelRun) recordWatches(h *modelHistory) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.watches)+len(m.ended) == 0 {
		return
	}
	h.Watches = map[string]*modelWatch{}
	for key, w := range m.watches {
		h.Watches[key] = w
	}
	for i, w := range m.ended {
		h.Watches[fmt.Sprintf("ended-%d", i)] = w
	}
}

// modelStatsSince returns the counters that grew from a to b.
func modelStatsSince(a, b stm.Stats) stm.Stats {
	return stm.Stats{
		Commits: b.Commits - a.Commits, ReadOnly: b.ReadOnly - a.ReadOnly, Retries: b.Retries - a.Retries,
		Conflicts: b.Conflicts - a.Conflicts, ReadFaults: b.ReadFaults - a.ReadFaults, Yields: b.Yields - a.Yields,
		OnePhase: b.OnePhase - a.OnePhase, General: b.General - a.General, Recomputes: b.Recomputes - a.Recomputes,
		Unknown: b.Unknown - a.Unknown, Helped: b.Helped - a.Helped, Waits: b.Waits - a.Waits,
	}
}

func modelInitial(i int) string { return fmt.Sprintf("init-x%d", i) }

// run runs one planned transaction through Dosync and records it.
func (m *modelRun) run(ctx context.Context, client int, name string, p planTxn) {
	rec := &modelTxnRec{Name: name, Client: client}
	rec.Start = m.now()
	err := m.s.Dosync(ctx, func(tx *txn.Tx) error {
		a := &modelAttempt{N: len(rec.Attempts), ID: tx.ID(), RP: tx.ReadPoint(), Writes: map[int]string{}, Ensured: map[int]bool{}}
		rec.Attempts = append(rec.Attempts, a)
		for i, op := range p.Ops {
			// Let the other clients run between ops (not a wait: a hint
			// to the scheduler), so transactions overlap and conflict.
			runtime.Gosched()
			switch op.Kind {
			case opRead:
				v := m.xs[op.Ref].Get(tx)
				a.Reads = append(a.Reads, modelRead{Op: i, Ref: op.Ref, Value: v, Own: a.Writes[op.Ref]})
			case opEnsure:
				v := m.xs[op.Ref].Ensure(tx)
				a.Ensured[op.Ref] = true
				a.Reads = append(a.Reads, modelRead{Op: i, Ref: op.Ref, Value: v, Ensure: true, Own: a.Writes[op.Ref]})
			case opWrite:
				v := fmt.Sprintf("%s-o%d-a%d", name, i, a.N)
				m.xs[op.Ref].Set(tx, v)
				a.Writes[op.Ref] = v
				a.Wrote = append(a.Wrote, v)
			case opCommute:
				d := op.Delta
				m.ctr.Commute(tx, func(v int) int { return v + d })
				a.Delta += d
			case opNested:
				if a.N == 0 {
					inner := []planOp{{Kind: opWrite, Ref: op.Ref}}
					switch {
					case op.Inner != nil:
						inner = op.Inner
					case op.Delta > 0:
						inner = []planOp{{Kind: opCommute, Delta: op.Delta}}
					}
					// ctx is the run's, not tx.Context(): this Dosync
					// does not join tx but commits on its own, now.
					m.run(ctx, client, fmt.Sprintf("%s-o%dn", name, i), planTxn{Ops: inner})
				}
			}
		}
		runtime.Gosched()
		a.Done = true
		if p.Abort {
			return errModelAbort
		}
		return nil
	})
	rec.End = m.now()
	switch {
	case err == nil:
		rec.Status = txnCommitted
	case errors.Is(err, errModelAbort):
		rec.Status = txnAborted
	default:
		rec.Status, rec.Err = txnFailed, err
	}
	m.mu.Lock()
	m.txns = append(m.txns, rec)
	m.mu.Unlock()
}

// dump renders the history for a failure message: every Dosync with its
// attempts, then every ref's versions, oldest first.
func (h *modelHistory) dump() string {
	var b strings.Builder
	txs := slices.Clone(h.Txns)
	slices.SortFunc(txs, func(x, y *modelTxnRec) int { return cmp.Compare(x.Start, y.Start) })
	for _, t := range txs {
		fmt.Fprintf(&b, "  %s [%d..%d] %s", t.Name, t.Start, t.End, t.status())
		if t.Err != nil {
			fmt.Fprintf(&b, " (%v)", t.Err)
		}
		b.WriteString("\n")
		for _, a := range t.Attempts {
			fmt.Fprintf(&b, "    #%d %s RP %d:", a.N, a.ID, a.RP)
			for _, rd := range a.Reads {
				op := "get"
				if rd.Ensure {
					op = "ensure"
				}
				fmt.Fprintf(&b, " %s(%s)=%q", op, h.Refs[rd.Ref].Label, rd.Value)
			}
			for ri := range h.Refs {
				if v, ok := a.Writes[ri]; ok {
					fmt.Fprintf(&b, " set(%s)=%q", h.Refs[ri].Label, v)
				}
			}
			if a.Delta > 0 {
				fmt.Fprintf(&b, " ctr+=%d", a.Delta)
			}
			if !a.Done {
				b.WriteString(" (unwound)")
			}
			b.WriteString("\n")
		}
	}
	for _, r := range append(slices.Clone(h.Refs), h.Counter) {
		fmt.Fprintf(&b, "  %s:", r.Label)
		for i := len(r.Versions) - 1; i >= 0; i-- {
			v := r.Versions[i]
			fmt.Fprintf(&b, " %d:%q(%s)", v.Point, v.Value, v.Txn)
		}
		b.WriteString("\n")
	}
	return b.String()
}
