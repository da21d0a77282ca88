package engine

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
	tnoop "go.opentelemetry.io/otel/trace/noop"
)

// Without installed providers (the global placeholders) or with no-op
// ones, no span starts and the instruments allocate nothing per call.
func TestTelemetryNoopAllocatesNothing(t *testing.T) {
	for name, tel := range map[string]*Telemetry{
		"global":   NewTelemetry(nil, nil),
		"noop":     NewTelemetry(noop.NewMeterProvider(), tnoop.NewTracerProvider()),
		"disabled": nil,
	} {
		t.Run(name, func(t *testing.T) {
			if tel.Tracer() != nil {
				t.Fatal("a tracer while tracing is off")
			}
			ctx := context.Background()
			start := time.Now()
			allocs := testing.AllocsPerRun(100, func() {
				_ = tel.Tracer()
				tel.commit(ctx, tel.readOnlyOpts())
				tel.retry(ctx)
				tel.conflict(ctx, ReasonNewer)
				tel.onePhaseDone(ctx, start)
				tel.generalDone(ctx, start)
				tel.Gap(ctx)
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per round, want 0", allocs)
			}
		})
	}
}
