// Package stm runs Clojure-style transactions (dosync) over refs kept in
// pluggable backends, with snapshot isolation.
//
// # Usage
//
//	b := mem.New() // or redis.Open / zk.Open
//	s, err := stm.Open(ctx, b, stm.WithMaxRetries(1000))
//	defer s.Close()
//	alice, _ := refs.New(ctx, s, "accounts/alice", 100)
//	bob, _ := refs.New(ctx, s, "accounts/bob", 100)
//	err = s.Dosync(ctx, func(tx *txn.Tx) error {
//		if alice.Get(tx) < 10 {
//			return ErrInsufficient // aborts: nothing written, no retry
//		}
//		alice.Alter(tx, func(v int) int { return v - 10 })
//		bob.Commute(tx, func(v int) int { return v + 10 })
//		return nil
//	})
//
// The backend given to Open is the coordinator: it holds the clock and the
// transaction records. Refs may live in other backends too (refs.On); one
// transaction may span them and still commits atomically.
//
// The function may run many times (each conflict retries it, with backoff,
// older transactions winning) and must have no side effects of its own. A
// Dosync called with tx.Context() on the same goroutine joins the outer
// transaction, as nested dosync does in Clojure.
//
// # Logs, metrics, traces
//
// Background failures (the recovery sweep, a commit's cleanup, watchers)
// are logged to WithLogger's logger, by default slog.Default(). Metrics
// and spans go through OpenTelemetry's API to WithMeterProvider's and
// WithTracerProvider's providers, by default the global ones: a no-op,
// allocating nothing, until a provider is installed. docs/design.md,
// "Observability", lists them.
package stm
