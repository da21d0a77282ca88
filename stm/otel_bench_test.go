package stm_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// BenchmarkDosyncTelemetry is one Dosync (Alter of one ref, embedded
// backend, one goroutine) without a provider installed (noop: the
// default), with an SDK meter provider (metrics), and with an SDK tracer
// provider that samples every span too (metrics+traces): the cost of the
// instrumentation.
func BenchmarkDosyncTelemetry(b *testing.B) {
	ctx := context.Background()
	for _, c := range []struct {
		name           string
		metrics, trace bool
	}{{"noop", false, false}, {"metrics", true, false}, {"metrics+traces", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			opts := []stm.Option{stm.WithSweepInterval(0)}
			if c.metrics {
				mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
				defer mp.Shutdown(ctx)
				opts = append(opts, stm.WithMeterProvider(mp))
			}
			if c.trace {
				tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
				defer tp.Shutdown(ctx)
				opts = append(opts, stm.WithTracerProvider(tp))
			}
			be := mem.New()
			defer be.Close()
			s, err := stm.Open(ctx, be, opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			r, err := refs.New(ctx, s, "bench/r", 0)
			if err != nil {
				b.Fatal(err)
			}
			fn := func(tx *txn.Tx) error { r.Alter(tx, func(v int) int { return v + 1 }); return nil }
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := s.Dosync(ctx, fn); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
