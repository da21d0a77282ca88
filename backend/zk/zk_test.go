package zk_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/backendtest"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/stm"
)

var roots atomic.Int64

// newRoot returns a root no other backend of this run uses.
func newRoot(base string) string { return fmt.Sprintf("/%s%d", base, roots.Add(1)) }

func open(t testing.TB, srv *testserver.ZK, cfg zk.Config) *zk.Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if cfg.Servers == nil {
		cfg.Servers = srv.Servers
	}
	if cfg.Root == "" {
		cfg.Root = newRoot("t")
	}
	b, err := zk.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("zk.Open(%v): %v", cfg.Servers, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func openSTM(t testing.TB, b backend.Driver, opts ...stm.Option) *stm.STM {
	t.Helper()
	s, err := stm.Open(context.Background(), b, opts...)
	if err != nil {
		t.Fatalf("stm.Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// serverTest is a test run against a server (or ensemble) shared by every
// test of its kind: servers start once per package, not once per test.
type serverTest struct {
	name string
	f    func(t *testing.T, srv *testserver.ZK)
}

// standaloneTests and ensembleTests are filled by init functions of the
// test files.
var standaloneTests, ensembleTests []serverTest

// TestStandalone runs everything that needs one ZooKeeper server against a
// single server started once.
func TestStandalone(t *testing.T) {
	srv := testserver.StartZK(t)
	t.Run("Conformance", func(t *testing.T) {
		backendtest.Run(t, func(t *testing.T) backend.Driver { return open(t, srv, zk.Config{}) })
	})
	for _, st := range standaloneTests {
		t.Run(st.name, func(t *testing.T) { st.f(t, srv) })
	}
}

// TestEnsemble runs the tests that need a three-node ensemble against one
// started once.
func TestEnsemble(t *testing.T) {
	if len(ensembleTests) == 0 {
		t.Fatal("no ensemble tests registered")
	}
	srv := testserver.StartZKEnsemble(t, 3)
	for _, st := range ensembleTests {
		t.Run(st.name, func(t *testing.T) { st.f(t, srv) })
	}
}
