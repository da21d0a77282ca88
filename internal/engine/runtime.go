package engine

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
)

// Errors of Dosync and Open (stm re-exports them).
var (
	// ErrRetryLimit: the transaction conflicted more times than
	// WithMaxRetries allows. It also wraps txn.ErrConflict, with the
	// reason of the last retry in its message.
	ErrRetryLimit = errors.New("stm: retry limit exceeded")
	// ErrClosed: the Runtime was closed.
	ErrClosed = errors.New("stm: closed")
	// ErrNilFunc: Dosync was given a nil function.
	ErrNilFunc = errors.New("stm: nil transaction function")
	// ErrDataLost: a backend of the Runtime lost its data under it (see
	// backend.ErrDataLost). The Runtime refuses every later call with it;
	// reopen the backend and the Runtime once the data is restored or
	// deliberately recreated.
	ErrDataLost = backend.ErrDataLost
)

// Runtime runs transactions against one coordinator backend. It is safe for
// concurrent use; open one per process and coordinator and share it.
type Runtime struct {
	coord backend.Driver
	opts  Settings
	env   *Env
	stats Stats
	floor atomic.Uint64

	mu       sync.RWMutex
	backends map[string]backend.Driver

	closed atomic.Bool
	lost   atomic.Pointer[error] // why the Runtime stopped (a backend lost its data)
	stop   chan struct{}
	wg     sync.WaitGroup
	closes map[uint64]func() // OnClose's functions, by registration
	trips  map[string]func() // releases of the backends' round-trip reports, by backend ID (under mu)
	nclose uint64
	closeM sync.Mutex
}

// Open returns a Runtime whose coordinator is coord, configured by
// settings applied in order to Defaults (stm.Open). It checks that coord
// answers and recovers what dead processes left behind.
func Open(ctx context.Context, coord backend.Driver, settings ...func(*Settings) error) (*Runtime, error) {
	if coord == nil {
		return nil, errors.New("stm: Open: nil backend")
	}
	o := Defaults()
	for _, set := range settings {
		if err := set(&o); err != nil {
			return nil, err
		}
	}
	if err := history.Check(o.MinHistory, o.MaxHistory); err != nil {
		return nil, fmt.Errorf("stm: Open: %w", err)
	}
	s := &Runtime{coord: coord, opts: o, backends: map[string]backend.Driver{coord.ID(): coord}, stop: make(chan struct{})}
	var idPrefix [6]byte
	_, _ = crand.Read(idPrefix[:]) // crypto/rand.Read never fails (it panics instead)
	prefix := []byte(hex.EncodeToString(idPrefix[:]) + "-")
	var seq atomic.Uint64
	points := clock.NewBatcher(coord.ReadPoint)
	if _, local := coord.(backend.LocalClock); local {
		points = clock.Direct(coord.ReadPoint)
	}
	s.env = &Env{
		Coord:  coord,
		Points: points,
		Wall:   o.Wall,
		Lease:  o.Lease,
		Resolver: &Resolver{
			Coord:        coord,
			Wall:         o.Wall,
			Lookup:       s.Backend,
			TrustMissing: o.Faults.TrustMissingRecord,
			Log:          func() *slog.Logger { return s.env.Log() },
		},
		Floor: &s.floor,
		NewID: func() string {
			var buf [32]byte
			return string(strconv.AppendUint(append(buf[:0], prefix...), seq.Add(1), 36))
		},
		Stats:         &s.stats,
		CommuteRounds: DefaultCommuteRounds,
		Faults:        o.Faults,
		Logger:        o.Logger,
		Tel:           NewTelemetry(o.MeterProvider, o.TracerProvider),
	}
	// Local turns spare collisions on a server; an in-process coordinator
	// has none to spare (WithLocalTurns).
	if _, local := coord.(backend.LocalClock); o.Turns > 0 || o.Turns == 0 && !local {
		s.env.Turns = NewTurns()
	}
	if op, ok := coord.(backend.OnePhase); ok && !o.General {
		s.env.OnePhase = op
	}
	rp, err := coord.ReadPoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("stm: Open: %w", err)
	}
	s.env.Observe(rp)
	for _, b := range o.Backends {
		s.Register(b)
	}
	// A record that cannot be finished now (a ref backend down) is left for
	// the background sweep; only a coordinator that cannot even list its
	// records fails Open.
	if _, err := s.Recover(ctx); errors.Is(err, ErrListRecords) {
		return nil, fmt.Errorf("stm: Open: %w", err)
	} else if err != nil {
		s.env.Log().Warn("epochal: Open could not recover every record; the background sweep tries again", "coordinator", coord.ID(), "err", err)
	}
	s.mu.Lock()
	s.trips = map[string]func(){}
	s.mu.Unlock()
	for _, b := range s.drivers() { // the coordinator first
		s.reportTrips(b)
	}
	if o.SweepInterval > 0 {
		s.wg.Add(1)
		go s.sweeper()
	}
	return s, nil
}

// Close stops the Runtime's background work (sweeps, watches). Later calls
// fail with ErrClosed. It does not close the backends.
func (s *Runtime) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.stop)
	s.mu.Lock()
	for _, release := range s.trips {
		release()
	}
	s.trips = nil
	s.mu.Unlock()
	s.closeM.Lock()
	fs := make([]func(), 0, len(s.closes))
	for _, f := range s.closes {
		fs = append(fs, f)
	}
	s.closes = nil
	s.closeM.Unlock()
	for _, f := range fs {
		f()
	}
	s.wg.Wait()
	return nil
}

// Closed reports whether Close was called.
func (s *Runtime) Closed() bool { return s.closed.Load() }

// Err says why the Runtime can no longer be used: ErrClosed after Close, or an
// error wrapping ErrDataLost once a backend lost its data; nil while it
// can be.
func (s *Runtime) Err() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := s.lost.Load(); err != nil {
		return *err
	}
	return nil
}

// Note looks at an error of a backend call made on the Runtime's behalf (by
// Dosync, or by a reference type of package refs): if it says the backend
// lost its data (ErrDataLost), the Runtime stops, logs why, and refuses every
// later call with it. It returns err.
func (s *Runtime) Note(err error) error {
	if err != nil && errors.Is(err, backend.ErrDataLost) {
		s.noteLost(err)
	}
	return err
}

// noteLost stops the Runtime with err, the first time. Apart from Note, so
// that Note's err does not move to the heap on every call.
func (s *Runtime) noteLost(err error) {
	// Later calls are refused with the driver's error (they apply
	// nothing), not with a commit's unknown outcome.
	var le *lostError
	if errors.As(err, &le) {
		err = le.lost
	}
	if s.lost.CompareAndSwap(nil, &err) {
		s.env.Log().Error("epochal: a backend lost its data: the STM refuses every later call until it is reopened", "coordinator", s.coord.ID(), "err", err)
	}
}

// Done is closed when the Runtime closes, for background work built on it.
func (s *Runtime) Done() <-chan struct{} { return s.stop }

// Coordinator returns the backend that holds the clock and records.
func (s *Runtime) Coordinator() backend.Driver { return s.coord }

// Register makes another backend known to this Runtime, so that its refs can
// join transactions and their intents be recovered. refs.On calls it.
func (s *Runtime) Register(b backend.Driver) {
	s.mu.Lock()
	s.backends[b.ID()] = b
	s.mu.Unlock()
	s.reportTrips(b)
}

// reportTrips reports b's round trips (epochal.backend.round_trips) until
// Close, once per backend ID; not while Open may still fail (s.trips nil
// until it succeeds, so that nothing is left registered) nor after Close.
func (s *Runtime) reportTrips(b backend.Driver) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.trips == nil || s.closed.Load() {
		return
	}
	if _, ok := s.trips[b.ID()]; !ok {
		s.trips[b.ID()] = observeRoundTrips(s.opts.MeterProvider, b)
	}
}

// drivers returns the registered backends, the coordinator first.
func (s *Runtime) drivers() []backend.Driver {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]backend.Driver, 0, len(s.backends))
	out = append(out, s.coord)
	for id, b := range s.backends {
		if id != s.coord.ID() {
			out = append(out, b)
		}
	}
	return out
}

// Backend returns the registered backend with the given ID, or nil.
func (s *Runtime) Backend(id string) backend.Driver {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.backends[id]
}

// MaxValueSize is the largest encoded value a ref may hold.
func (s *Runtime) MaxValueSize() int { return s.opts.MaxValueSize }

// HistoryBounds returns the default MinHistory and MaxHistory of new refs.
func (s *Runtime) HistoryBounds() (min, max int) { return s.opts.MinHistory, s.opts.MaxHistory }

// Env returns the environment transactions of this Runtime run in, for
// reference types built on the engine (package refs).
func (s *Runtime) Env() *Env { return s.env }

// Logger returns the logger of the Runtime's background errors
// (WithLogger, or slog.Default() at the time of the call), for background
// work built on it (refs' watchers, locks and groups over an STM). Call
// it at each record: slog.Default() may change.
func (s *Runtime) Logger() *slog.Logger { return s.env.Log() }

// LogSource returns what background work over store (locks, groups) calls
// at each record for its logger: l if not nil; else, when store is a Host
// (an *stm.STM), the Runtime's Logger (WithLogger, or slog.Default()
// then); else slog.Default() then. So a default installed after the lock
// or group was made is used.
func LogSource(l *slog.Logger, store any) func() *slog.Logger {
	if l != nil {
		return func() *slog.Logger { return l }
	}
	if h, ok := store.(Host); ok {
		return Of(h).Logger
	}
	return slog.Default
}

// MeterProvider returns where the Runtime's metrics go (WithMeterProvider,
// or the global provider), for locks and groups over it.
func (s *Runtime) MeterProvider() metric.MeterProvider {
	if s.opts.MeterProvider != nil {
		return s.opts.MeterProvider
	}
	return otel.GetMeterProvider()
}

// Counters returns the Runtime's counters (stm.STM.Stats snapshots them).
func (s *Runtime) Counters() *Stats { return &s.stats }

// OnClose registers f to run when the Runtime closes (at once, on a goroutine
// of its own, if it is closed already). The function it returns
// unregisters f, so that background work that ends before the Runtime (a
// watcher whose last watch was removed) leaves nothing behind.
func (s *Runtime) OnClose(f func()) (unregister func()) {
	s.closeM.Lock()
	defer s.closeM.Unlock()
	if s.closed.Load() {
		go f()
		return func() {}
	}
	if s.closes == nil {
		s.closes = make(map[uint64]func())
	}
	s.nclose++
	id := s.nclose
	s.closes[id] = f
	return func() {
		s.closeM.Lock()
		delete(s.closes, id)
		s.closeM.Unlock()
	}
}

// Closers is how many OnClose functions are registered (for tests that
// check background work leaves nothing behind).
func (s *Runtime) Closers() int {
	s.closeM.Lock()
	defer s.closeM.Unlock()
	return len(s.closes)
}

// ReadPoint returns a point at least as new as any this process has seen.
func (s *Runtime) ReadPoint(ctx context.Context) (clock.Point, error) {
	if err := s.Err(); err != nil {
		return 0, err
	}
	p, err := s.env.Points.ReadPoint(ctx)
	if err != nil {
		return 0, s.Note(err)
	}
	s.env.Observe(p)
	return max(p, clock.Point(s.floor.Load())), nil
}

// Recover aborts and rolls back the transactions of dead processes whose
// leases have run out, rolls forward committed ones left half-finished,
// and deletes their records. It runs at Open and every sweep interval; it
// returns how many transactions it recovered.
func (s *Runtime) Recover(ctx context.Context) (int, error) {
	if err := s.Err(); err != nil {
		return 0, err
	}
	n, err := s.env.Resolver.Sweep(ctx)
	s.stats.Helped.Add(int64(n))
	return n, s.Note(err)
}

func (s *Runtime) sweeper() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), s.opts.SweepInterval)
			if n, err := s.Recover(ctx); err != nil {
				s.env.Log().Warn("epochal: the background sweep failed; the next one tries again", "coordinator", s.coord.ID(), "recovered", n, "err", err)
			}
			cancel()
		}
	}
}

// Dosync runs fn in a transaction and commits it, retrying on conflict. fn
// returning an error aborts the transaction: nothing is written, the error
// is returned, and fn is not run again.
//
// If ctx carries a transaction of this Runtime started on the same goroutine
// (tx.Context()), fn joins it, as in Clojure: its reads and writes are the
// outer transaction's, committed with it. An error returned by a joined fn
// dooms the outer transaction, because the writes fn made before it failed
// cannot be taken back on their own: the outer Dosync then returns that
// error (unless its own function returns another first) and writes
// nothing, and a later use of the Tx in the outer function ends it.
func (s *Runtime) Dosync(ctx context.Context, fn func(tx *Tx) error) error {
	if outer := FromContext(ctx); outer != nil && fn != nil && outer.joinable(s.env) {
		err := fn(outer)
		if err != nil {
			outer.doom(err)
		}
		return err
	}
	return s.run(ctx, fn)
}

// Isolated runs fn in a transaction of its own, never joining one ctx
// carries. Deref and other reads outside a transaction use it.
func (s *Runtime) Isolated(ctx context.Context, fn func(tx *Tx) error) error {
	return s.run(ctx, fn)
}

func (s *Runtime) run(ctx context.Context, fn func(tx *Tx) error) (err error) {
	if fn == nil {
		return ErrNilFunc
	}
	if err := s.Err(); err != nil {
		return err
	}
	attempts := 0
	tr := s.env.Tel.Tracer()
	if tr == nil {
		return s.attempts(ctx, fn, &attempts)
	}
	ctx, span := tr.Start(ctx, SpanDosync)
	returned := false
	defer func() {
		if returned {
			endDosync(span, attempts, err)
			return
		}
		// fn panicked (or ended its goroutine, runtime.Goexit): the span
		// says so, and the panic goes on.
		v := recover()
		endDosyncPanic(span, attempts, v)
		if v != nil {
			panic(v)
		}
	}()
	err = s.attempts(ctx, fn, &attempts)
	returned = true
	return err
}

// attempts runs fn's attempts until one commits or it gives up, counting
// them in *n.
func (s *Runtime) attempts(ctx context.Context, fn func(tx *Tx) error, n *int) error {
	var prio Priority
	var prefetch []Key
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		*n = attempt + 1
		tx, err := Begin(ctx, s.env, &prio, prefetch)
		if err != nil {
			return s.Note(err)
		}
		err = s.Note(s.attempt(tx, fn))
		if IsRetry(err) {
			prefetch = tx.prefetch()
		}
		tx.end()
		if err == nil {
			s.stats.NoteRetries(int64(attempt))
			return nil
		}
		if !IsRetry(err) {
			return err
		}
		s.stats.Retries.Add(1)
		s.env.Tel.retry(ctx)
		if attempt >= s.opts.MaxRetries {
			var last *RetryError
			errors.As(err, &last)
			return fmt.Errorf("%w after %d attempts: %w", ErrRetryLimit, attempt+1, last.Cause())
		}
		if err := s.Err(); err != nil {
			return err
		}
		if RetryAtOnce(err) {
			// It gave way to an older transaction of this process, and
			// its next attempt waits for that one's turn: no pause.
			continue
		}
		if err := s.Backoff(ctx, attempt); err != nil {
			return err
		}
	}
}

// endDosync ends a Dosync's span with how many attempts it made and how
// it ended.
func endDosync(span trace.Span, attempts int, err error) {
	outcome := "committed"
	switch {
	case err == nil:
	case errors.Is(err, ErrRetryLimit):
		outcome = "retry_limit"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		outcome = "canceled"
	case errors.Is(err, ErrOutcomeUnknown):
		outcome = "unknown"
	default:
		outcome = "error" // the function's own error, or a backend's
	}
	span.SetAttributes(attribute.Int(AttrAttempts, attempts), attribute.String(AttrOutcome, outcome))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// endDosyncPanic ends the span of a Dosync whose function panicked with v
// (nil: it ended its goroutine): outcome "panic", status Error.
func endDosyncPanic(span trace.Span, attempts int, v any) {
	span.SetAttributes(attribute.Int(AttrAttempts, attempts), attribute.String(AttrOutcome, "panic"))
	msg := "the transaction's function ended its goroutine"
	if v != nil {
		msg = fmt.Sprintf("panic: %v", v)
		span.RecordError(errors.New(msg))
	}
	span.SetStatus(codes.Error, msg)
	span.End()
}

// attempt runs fn once and commits. The engine's own unwinding panics are
// turned into errors; a user's panic propagates after the attempt is over.
func (s *Runtime) attempt(tx *Tx, fn func(tx *Tx) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if e, ok := Recover(v); ok {
				err = e
				return
			}
			tx.end()
			panic(v)
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	_, err = tx.commit()
	return err
}

// Backoff pauses before retry number attempt (0 for the first retry):
// jittered, doubling from WithBackoff's first pause up to its largest,
// ended early by ctx. Dosync uses it between attempts; atoms, promises and
// delays between compare-and-sets.
func (s *Runtime) Backoff(ctx context.Context, attempt int) error {
	d := s.opts.BackoffBase << min(attempt, 20)
	if d > s.opts.BackoffMax || d <= 0 {
		d = s.opts.BackoffMax
	}
	d = d/2 + rand.N(d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
