package stm

import (
	"fmt"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
	"github.com/epochal/epochal/internal/engine"
)

// Defaults.
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

// Option configures Open.
type Option func(*options) error

type options struct {
	maxRetries    int
	maxValueSize  int
	minHistory    int
	maxHistory    int
	lease         time.Duration
	sweepInterval time.Duration
	backoffBase   time.Duration
	backoffMax    time.Duration
	wall          clock.Wall
	backends      []backend.Driver
	general       bool
	turns         int // local turns: 0 by the coordinator, 1 on, -1 off
	faults        engine.Faults
}

func defaults() options {
	return options{
		maxRetries:    DefaultMaxRetries,
		maxValueSize:  DefaultMaxValueSize,
		minHistory:    history.DefaultMinHistory,
		maxHistory:    history.DefaultMaxHistory,
		lease:         DefaultLease,
		sweepInterval: DefaultSweepInterval,
		backoffBase:   DefaultBackoffBase,
		backoffMax:    DefaultBackoffMax,
		wall:          clock.System,
	}
}

// WithMaxRetries sets how many times a Dosync retries after its first
// attempt before it returns ErrRetryLimit; 0 means no retry. Default 10,000.
func WithMaxRetries(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("stm: WithMaxRetries(%d): must be >= 0", n)
		}
		o.maxRetries = n
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
		o.maxValueSize = n
		return nil
	}
}

// WithMinHistory sets the default MinHistory of refs this STM creates: how
// many older versions a ref always keeps. Default 0.
func WithMinHistory(n int) Option {
	return func(o *options) error { o.minHistory = n; return nil }
}

// WithMaxHistory sets the default MaxHistory of refs this STM creates: how
// far read faults may grow a ref's kept history. Default 10.
func WithMaxHistory(n int) Option {
	return func(o *options) error { o.maxHistory = n; return nil }
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
		o.lease = d
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
		o.sweepInterval = d
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
		o.backoffBase, o.backoffMax = first, max
		return nil
	}
}

// WithWallClock sets the clock leases are judged by (tests use clock.Fake).
func WithWallClock(w clock.Wall) Option {
	return func(o *options) error {
		if w == nil {
			return fmt.Errorf("stm: WithWallClock(nil)")
		}
		o.wall = w
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
		o.backends = append(o.backends, bs...)
		return nil
	}
}

// WithGeneralPath makes every commit take the general path (record,
// intents, roll-forward) even when the coordinator offers a one-phase fast
// path: for tests and for measuring the difference.
func WithGeneralPath() Option {
	return func(o *options) error { o.general = true; return nil }
}

// WithoutLocalTurns turns off local turns: by default transactions of
// this STM that write the same ref take turns in the process (the second
// waits for the first and then reads what it committed, instead of both
// meeting on the server and one retrying; see docs/design.md, "Local
// turns"). Without them every transaction goes to the server on its own,
// as another process's would. For tests that schedule every call
// themselves, and for measuring the difference.
func WithoutLocalTurns() Option {
	return func(o *options) error { o.turns = -1; return nil }
}

// WithLocalTurns turns local turns on whatever the coordinator. By
// default they are on when the coordinator is a server (Redis,
// ZooKeeper), where a collision costs round trips, and off when it lives
// in the process (backend/mem), where a collision costs a retry of a few
// microseconds and waiting for a turn costs more (measured in
// docs/benchmarks.md).
func WithLocalTurns() Option {
	return func(o *options) error { o.turns = 1; return nil }
}

// WithFaults turns on deliberate protocol bugs. It exists only so tests and
// jepsen-lite can show that their checkers catch a broken engine; never use
// it otherwise.
func WithFaults(f engine.Faults) Option {
	return func(o *options) error { o.faults = f; return nil }
}
