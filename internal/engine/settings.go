package engine

import (
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
)

// Defaults of Settings (stm re-exports them).
const (
	DefaultMaxRetries    = 10000 // Clojure's
	DefaultMaxValueSize  = 1 << 20
	DefaultLease         = 10 * time.Second
	DefaultSweepInterval = 30 * time.Second
	DefaultBackoffBase   = 50 * time.Microsecond
	DefaultBackoffMax    = 50 * time.Millisecond
	// DefaultCommuteRounds is how often a fast-path commit computes its
	// commutes again on a newer version before it takes the refs with
	// intents (the general path) instead.
	DefaultCommuteRounds = 8
)

// Settings configure a Runtime. stm's options set them; the test switches
// below (WithFaults, WithGeneralPath, WithWallClock) are for this module's
// tests and jepsen-lite only, and are not part of the public surface.
type Settings struct {
	MaxRetries    int
	MaxValueSize  int
	MinHistory    int
	MaxHistory    int
	Lease         time.Duration
	SweepInterval time.Duration
	BackoffBase   time.Duration
	BackoffMax    time.Duration
	Wall          clock.Wall
	Backends      []backend.Driver
	General       bool
	Turns         int // local turns: 0 by the coordinator, 1 on, -1 off
	Faults        Faults
	// Logger receives what the Runtime's background work cannot return to
	// a caller (a failed sweep, a failed cleanup, a backend that lost its
	// data). Nil: slog.Default() at the time of each record.
	Logger *slog.Logger
	// MeterProvider and TracerProvider are where the Runtime's metrics
	// and spans go; nil: OpenTelemetry's global providers.
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
}

// Defaults returns the settings of an STM opened without options.
func Defaults() Settings {
	return Settings{
		MaxRetries:    DefaultMaxRetries,
		MaxValueSize:  DefaultMaxValueSize,
		MinHistory:    history.DefaultMinHistory,
		MaxHistory:    history.DefaultMaxHistory,
		Lease:         DefaultLease,
		SweepInterval: DefaultSweepInterval,
		BackoffBase:   DefaultBackoffBase,
		BackoffMax:    DefaultBackoffMax,
		Wall:          clock.System,
	}
}

// WithFaults turns on deliberate protocol bugs, so that tests and
// jepsen-lite can show that their checkers catch a broken engine. Its
// value is an stm.Option: stm.Open(ctx, b, engine.WithFaults(f)).
func WithFaults(f Faults) func(*Settings) error {
	return func(o *Settings) error { o.Faults = f; return nil }
}

// WithGeneralPath makes every commit take the general path (record,
// intents, roll-forward) even when the coordinator offers a one-phase fast
// path: for tests and for measuring the difference. An stm.Option.
func WithGeneralPath() func(*Settings) error {
	return func(o *Settings) error { o.General = true; return nil }
}

// WithWallClock sets the clock leases are judged by (tests use
// clock.Fake). An stm.Option.
func WithWallClock(w clock.Wall) func(*Settings) error {
	return func(o *Settings) error {
		if w == nil {
			return fmt.Errorf("stm: WithWallClock(nil)")
		}
		o.Wall = w
		return nil
	}
}

// Host is satisfied by the types that carry a Runtime, *stm.STM, and by
// nothing outside this module: its method is unexported, promoted from an
// embedded Handle. Packages built on the engine (refs, the CLI, tests)
// reach a *stm.STM's Runtime with Of, which its users cannot.
type Host interface{ runtime() *Runtime }

// Handle carries a Runtime for a type that embeds it (stm.STM).
type Handle struct{ rt *Runtime }

func (h Handle) runtime() *Runtime { return h.rt }

// NewHandle returns a Handle of rt.
func NewHandle(rt *Runtime) Handle { return Handle{rt: rt} }

// Of returns h's Runtime.
func Of(h Host) *Runtime { return h.runtime() }
