package stm

import (
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/internal/engine"
)

// Defaults.
const (
	DefaultMaxRetries    = engine.DefaultMaxRetries // Clojure's
	DefaultMaxValueSize  = engine.DefaultMaxValueSize
	DefaultLease         = engine.DefaultLease
	DefaultSweepInterval = engine.DefaultSweepInterval
	DefaultBackoffBase   = engine.DefaultBackoffBase
	DefaultBackoffMax    = engine.DefaultBackoffMax
	// DefaultCommuteRounds is how often a fast-path commit computes its
	// commutes again on a newer version before it takes the refs with
	// intents (the general path) instead.
	DefaultCommuteRounds = engine.DefaultCommuteRounds
)

// Option configures Open.
type Option func(*options) error

type options = engine.Settings

// WithMaxRetries sets how many times a Dosync retries after its first
// attempt before it returns ErrRetryLimit; 0 means no retry. Default 10,000.
func WithMaxRetries(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("stm: WithMaxRetries(%d): must be >= 0", n)
		}
		o.MaxRetries = n
		return nil
	}
}

// WithMaxValueSize sets the largest encoded value a ref may hold; past it
// writes fail with refs.ErrTooLarge. Default 1 MiB.
func WithMaxValueSize(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("stm: WithMaxValueSize(%d): must be > 0", n)
		}
		o.MaxValueSize = n
		return nil
	}
}

// WithMinHistory sets the default MinHistory of refs this STM creates: how
// many older versions a ref always keeps. Default 0.
func WithMinHistory(n int) Option {
	return func(o *options) error { o.MinHistory = n; return nil }
}

// WithMaxHistory sets the default MaxHistory of refs this STM creates: how
// far read faults may grow a ref's kept history. Default 10.
func WithMaxHistory(n int) Option {
	return func(o *options) error { o.MaxHistory = n; return nil }
}

// WithLease sets how long a committing transaction's record and intents are
// protected: past it, another process may abort it and roll it back. It
// must exceed the longest commit (not the longest transaction function).
// Default 10s.
func WithLease(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("stm: WithLease(%v): must be > 0", d)
		}
		o.Lease = d
		return nil
	}
}

// WithSweepInterval sets how often the STM recovers records left by dead
// processes; 0 turns the background sweep off (Recover still works).
// Default 30s.
func WithSweepInterval(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("stm: WithSweepInterval(%v): must be >= 0", d)
		}
		o.SweepInterval = d
		return nil
	}
}

// WithBackoff sets the first and the largest pause between attempts. Pauses
// double per retry and are jittered. Defaults 50µs and 50ms.
func WithBackoff(first, max time.Duration) Option {
	return func(o *options) error {
		if first <= 0 || max < first {
			return fmt.Errorf("stm: WithBackoff(%v, %v): want 0 < first <= max", first, max)
		}
		o.BackoffBase, o.BackoffMax = first, max
		return nil
	}
}

// WithBackends registers backends other than the coordinator whose refs
// this STM uses, before Open recovers what dead processes left: a record of
// a transaction that spanned them can then be finished at once. refs.On
// registers its backend too, but only after Open.
func WithBackends(bs ...backend.Driver) Option {
	return func(o *options) error {
		for _, b := range bs {
			if b == nil {
				return fmt.Errorf("stm: WithBackends: nil backend")
			}
		}
		o.Backends = append(o.Backends, bs...)
		return nil
	}
}

// WithoutLocalTurns turns off local turns: by default transactions of
// this STM that write the same ref take turns in the process (the second
// waits for the first and then reads what it committed, instead of both
// meeting on the server and one retrying; see docs/design.md, "Local
// turns"). Without them every transaction goes to the server on its own,
// as another process's would. For tests that schedule every call
// themselves, and for measuring the difference.
func WithoutLocalTurns() Option {
	return func(o *options) error { o.Turns = -1; return nil }
}

// WithLocalTurns turns local turns on whatever the coordinator. By
// default they are on when the coordinator is a server (Redis,
// ZooKeeper), where a collision costs round trips, and off when it lives
// in the process (backend/mem), where a collision costs a retry of a few
// microseconds and waiting for a turn costs more (measured in
// docs/benchmarks.md).
func WithLocalTurns() Option {
	return func(o *options) error { o.Turns = 1; return nil }
}

// WithLogger sets the logger of what the STM's background work cannot
// return to a caller: a failed recovery sweep, a failed cleanup after a
// commit, a watch that missed changes or skipped a value, a backend that
// lost its data. Locks and groups over this STM log there too. Default
// (or nil): slog.Default(), looked up at each record.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.Logger = l; return nil }
}

// WithMeterProvider sets where the STM's metrics go (see docs/design.md,
// "Observability": commits, retries, conflicts by reason, commit
// latency, watch gaps). Default (or nil): otel.GetMeterProvider(), the
// global one, a no-op until a provider is installed.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) error { o.MeterProvider = mp; return nil }
}

// WithTracerProvider sets where the STM's spans go: one per Dosync
// (epochal.dosync, with its attempts and outcome) and one per commit step
// (read point, one-phase commit, record, lock, stage, commit record,
// resolve), parents of the driver's own calls' spans (go-redis's, with
// redisotel). Default (or nil): otel.GetTracerProvider(), looked up at
// each Dosync: no span is started, nor anything allocated for one, until
// a provider is installed.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) error { o.TracerProvider = tp; return nil }
}
