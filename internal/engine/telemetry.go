package engine

import (
	"context"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/epochal/epochal/backend"
)

// ScopeName is the instrumentation scope of Epochal's meters and tracers.
const ScopeName = "github.com/epochal/epochal"

// Names of the metrics and spans (docs/design.md, "Observability").
const (
	MetricCommits        = "epochal.stm.commits"
	MetricRetries        = "epochal.stm.retries"
	MetricConflicts      = "epochal.stm.conflicts"
	MetricCommitDuration = "epochal.stm.commit.duration"
	MetricWatchGaps      = "epochal.watch.gaps"
	MetricRoundTrips     = "epochal.backend.round_trips"
	AttrBackend          = "epochal.backend" // a backend's ID
	// Of locks and groups (their sessions).
	MetricLockWait    = "epochal.lock.wait.duration"
	MetricLockHeld    = "epochal.lock.held.duration"
	MetricSessionLost = "epochal.session.lost"
	AttrLockMode      = "epochal.lock.mode"    // read, write
	AttrLockOutcome   = "epochal.lock.outcome" // acquired, gave_up, error

	AttrPath     = "epochal.commit.path"     // one_phase, general, read_only
	AttrReason   = "epochal.conflict.reason" // newer, locked, read_fault, yield
	AttrAttempts = "epochal.attempts"
	AttrOutcome  = "epochal.outcome" // committed, retry_limit, canceled, unknown, error, panic
	AttrTxn      = "epochal.txn"

	SpanDosync       = "epochal.dosync"
	SpanReadPoint    = "epochal.read_point"
	SpanOnePhase     = "epochal.commit.one_phase"
	SpanRecord       = "epochal.commit.record"
	SpanLock         = "epochal.commit.lock"
	SpanStage        = "epochal.commit.stage"
	SpanCommitRecord = "epochal.commit.commit_record"
	SpanResolve      = "epochal.commit.resolve"
)

// Conflict reasons (AttrReason).
const (
	ReasonNewer     = "newer"      // first committer wins: a version newer than the read point
	ReasonLocked    = "locked"     // the commit met another transaction's intent (it waits or yields)
	ReasonReadFault = "read_fault" // history did not reach back to the read point
	ReasonYield     = "yield"      // aborted by an older transaction, or by another before it committed
)

// DurationBuckets are the advised bucket bounds (seconds) of Epochal's
// duration histograms: 50µs to 10s.
var DurationBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Telemetry is a Runtime's OpenTelemetry instruments and tracer. Built
// from the API only: without an installed SDK every call is a no-op, and
// the hot path allocates nothing for it (the options slices are built
// once; no span is started while no tracer provider is installed).
type Telemetry struct {
	commits   metric.Int64Counter
	retries   metric.Int64Counter
	conflicts metric.Int64Counter
	duration  metric.Float64Histogram
	gaps      metric.Int64Counter

	onePhase, general, readOnly []metric.AddOption
	durOnePhase, durGeneral     []metric.RecordOption
	reasons                     map[string][]metric.AddOption

	// explicit is the tracer of a provider given to NewTelemetry (nil
	// for a no-op one); without one, the global provider is looked up at
	// each Dosync (global caches its tracer).
	explicit   trace.Tracer
	isExplicit bool
	global     atomic.Pointer[globalTracer]
}

type globalTracer struct {
	tp trace.TracerProvider
	t  trace.Tracer
}

// NewTelemetry builds the instruments from mp and the tracer from tp; nil
// means the global providers (otel.GetMeterProvider, GetTracerProvider).
func NewTelemetry(mp metric.MeterProvider, tp trace.TracerProvider) *Telemetry {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(ScopeName)
	t := &Telemetry{reasons: map[string][]metric.AddOption{}}
	// Instrument errors leave a no-op instrument (the API's contract):
	// an SDK reports them through otel.Handle.
	t.commits, _ = m.Int64Counter(MetricCommits, metric.WithUnit("{commit}"), metric.WithDescription("Transaction attempts that committed, by commit path"))
	t.retries, _ = m.Int64Counter(MetricRetries, metric.WithUnit("{retry}"), metric.WithDescription("Transaction attempts that ended in a retry"))
	t.conflicts, _ = m.Int64Counter(MetricConflicts, metric.WithUnit("{conflict}"), metric.WithDescription("Conflicts met by commits and reads, by reason"))
	t.duration, _ = m.Float64Histogram(MetricCommitDuration, metric.WithUnit("s"), metric.WithDescription("Duration of commits that wrote, by commit path"), metric.WithExplicitBucketBoundaries(DurationBuckets...))
	t.gaps, _ = m.Int64Counter(MetricWatchGaps, metric.WithUnit("{gap}"), metric.WithDescription("Watch deliveries that announced missed versions"))
	path := func(p string) attribute.Set { return attribute.NewSet(attribute.String(AttrPath, p)) }
	t.onePhase = []metric.AddOption{metric.WithAttributeSet(path("one_phase"))}
	t.general = []metric.AddOption{metric.WithAttributeSet(path("general"))}
	t.readOnly = []metric.AddOption{metric.WithAttributeSet(path("read_only"))}
	t.durOnePhase = []metric.RecordOption{metric.WithAttributeSet(path("one_phase"))}
	t.durGeneral = []metric.RecordOption{metric.WithAttributeSet(path("general"))}
	for _, r := range []string{ReasonNewer, ReasonLocked, ReasonReadFault, ReasonYield} {
		t.reasons[r] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String(AttrReason, r)))}
	}
	if tp != nil {
		t.isExplicit = true
		if !placeholder(tp) {
			t.explicit = tp.Tracer(ScopeName)
		}
	}
	return t
}

// roundTrips holds the registrations of epochal.backend.round_trips: one
// per driver and meter provider, however many Runtimes report that driver
// (an STM's coordinator may be another's registered backend), so that a
// driver's count is observed once, and does not fall when one of them
// closes.
var roundTrips struct {
	sync.Mutex
	m map[tripKey]*tripReg
}

// tripKey is a driver and the meter provider it is reported to (nil: the
// global one).
type tripKey struct {
	mp metric.MeterProvider
	d  backend.RoundTripCounter
}

type tripReg struct {
	users int
	reg   metric.Registration
}

// observeRoundTrips makes the counter epochal.backend.round_trips of mp
// (nil: the global provider) report d's round trips, by backend ID, if d
// counts them (backend.RoundTripCounter), observed when a reader
// collects; counting costs the drivers an atomic add per request. The
// returned release ends the report once every Runtime that asked for it
// released it.
func observeRoundTrips(mp metric.MeterProvider, d backend.Driver) (release func()) {
	c, ok := d.(backend.RoundTripCounter)
	if !ok || !comparable(c) || mp != nil && !comparable(mp) {
		return func() {}
	}
	k := tripKey{mp, c}
	roundTrips.Lock()
	defer roundTrips.Unlock()
	if roundTrips.m == nil {
		roundTrips.m = map[tripKey]*tripReg{}
	}
	r := roundTrips.m[k]
	if r == nil {
		r = &tripReg{reg: registerRoundTrips(mp, d.ID(), c)}
		roundTrips.m[k] = r
	}
	r.users++
	var once sync.Once
	return func() {
		once.Do(func() {
			roundTrips.Lock()
			defer roundTrips.Unlock()
			if r.users--; r.users > 0 {
				return
			}
			delete(roundTrips.m, k)
			if r.reg != nil {
				_ = r.reg.Unregister() // the SDK's only error: already unregistered
			}
		})
	}
}

// registerRoundTrips registers the callback that observes c's count as
// backend id's; nil if the provider refused it (a no-op instrument: the
// SDK reported the error through otel.Handle).
func registerRoundTrips(mp metric.MeterProvider, id string, c backend.RoundTripCounter) metric.Registration {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(ScopeName)
	trips, err := m.Int64ObservableCounter(MetricRoundTrips, metric.WithUnit("{round_trip}"),
		metric.WithDescription("Requests a backend sent to its server and waited on (a command, pipeline or script on Redis; a request or a batch of reads on ZooKeeper), by backend"))
	if err != nil {
		return nil
	}
	attrs := metric.WithAttributeSet(attribute.NewSet(attribute.String(AttrBackend, id)))
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(trips, int64(c.RoundTrips()), attrs)
		return nil
	}, trips)
	if err != nil {
		return nil
	}
	return reg
}

// comparable reports whether v can be a map key (a pointer, not a struct
// holding a slice).
func comparable(v any) bool { return reflect.TypeOf(v).Comparable() }

// Tracer returns the tracer spans start from, or nil while tracing is
// off: an explicit no-op provider (trace/noop), or no explicit provider
// and no global one installed yet (the API's placeholder). Then no span
// starts and nothing is allocated.
func (t *Telemetry) Tracer() trace.Tracer {
	if t == nil {
		return nil
	}
	if t.isExplicit {
		return t.explicit
	}
	tp := otel.GetTracerProvider()
	if g := t.global.Load(); g != nil && g.tp == tp {
		return g.t
	}
	g := &globalTracer{tp: tp}
	if !placeholder(tp) {
		g.t = tp.Tracer(ScopeName)
	}
	t.global.Store(g)
	return g.t
}

// placeholder reports whether tp records nothing for certain: the global
// placeholder the API hands out before a provider is installed, or a
// no-op provider.
func placeholder(tp trace.TracerProvider) bool {
	ty := reflect.TypeOf(tp)
	if ty.Kind() == reflect.Pointer {
		ty = ty.Elem()
	}
	switch ty.PkgPath() {
	case "go.opentelemetry.io/otel/internal/global", "go.opentelemetry.io/otel/trace/noop":
		return true
	}
	return false
}

// Commit counts a committed attempt: path one_phase, general or read_only.
func (t *Telemetry) commit(ctx context.Context, opts []metric.AddOption) {
	if t != nil {
		t.commits.Add(ctx, 1, opts...)
	}
}

// Retry counts an attempt that ended in a retry.
func (t *Telemetry) retry(ctx context.Context) {
	if t != nil {
		t.retries.Add(ctx, 1)
	}
}

// Conflict counts a conflict of reason (one of the Reason constants).
func (t *Telemetry) conflict(ctx context.Context, reason string) {
	if t != nil {
		t.conflicts.Add(ctx, 1, t.reasons[reason]...)
	}
}

// Gap counts a watch delivery that announced missed versions.
func (t *Telemetry) Gap(ctx context.Context) {
	if t != nil {
		t.gaps.Add(ctx, 1)
	}
}

// took records a commit's duration since start on path.
func (t *Telemetry) took(ctx context.Context, start time.Time, opts []metric.RecordOption) {
	if t != nil {
		t.duration.Record(ctx, time.Since(start).Seconds(), opts...)
	}
}

func (t *Telemetry) readOnlyOpts() []metric.AddOption {
	if t == nil {
		return nil
	}
	return t.readOnly
}

// onePhaseDone counts a one-phase commit begun at start.
func (t *Telemetry) onePhaseDone(ctx context.Context, start time.Time) {
	if t != nil {
		t.commits.Add(ctx, 1, t.onePhase...)
		t.took(ctx, start, t.durOnePhase)
	}
}

// generalDone counts a general-path commit begun at start.
func (t *Telemetry) generalDone(ctx context.Context, start time.Time) {
	if t != nil {
		t.commits.Add(ctx, 1, t.general...)
		t.took(ctx, start, t.durGeneral)
	}
}

// noEnd ends no span (steps while tracing is off).
func noEnd(error) {}

// step starts a span named name for a step of tx's commit, a child of
// the Dosync's span, and makes it tx's ctx until the function it returns
// ends it (with err, if not nil). Driver calls made meanwhile (go-redis's
// own spans, with redisotel) are its children. While no tracer is
// installed it does nothing.
func (tx *Tx) step(name string) func(err error) {
	tr := tx.env.Tel.Tracer()
	if tr == nil {
		return noEnd
	}
	parent := tx.ctx
	ctx, span := tr.Start(parent, name, trace.WithAttributes(attribute.String(AttrTxn, tx.id)))
	tx.ctx = ctx
	return func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		tx.ctx = parent
	}
}
