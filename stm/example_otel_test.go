package stm_test

import (
	"context"
	"fmt"
	"strings"

	promclient "github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// The STM's metrics exported for Prometheus: an OpenTelemetry meter
// provider with the Prometheus exporter as its reader, given to the STM
// (or installed globally with otel.SetMeterProvider). A server would
// serve the registry with promhttp.HandlerFor(reg, promhttp.HandlerOpts{});
// here it is read directly.
func Example_prometheus() {
	ctx := context.Background()
	reg := promclient.NewRegistry()
	exporter, err := prometheus.New(prometheus.WithRegisterer(reg))
	if err != nil {
		panic(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer mp.Shutdown(ctx)

	b := mem.New()
	defer b.Close()
	s, err := stm.Open(ctx, b, stm.WithMeterProvider(mp))
	if err != nil {
		panic(err)
	}
	defer s.Close()
	counter, err := refs.New(ctx, s, "example/counter", 0)
	if err != nil {
		panic(err)
	}
	if err := s.Dosync(ctx, func(tx *txn.Tx) error {
		counter.Commute(tx, func(v int) int { return v + 1 })
		return nil
	}); err != nil {
		panic(err)
	}

	families, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "epochal_stm_commits") {
			m := f.GetMetric()[0]
			fmt.Println(f.GetName(), m.GetCounter().GetValue())
		}
	}
	// Output: epochal_stm_commits_total 1
}
