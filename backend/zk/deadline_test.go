package zk_test

import (
	"context"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/internal/testkit/deadlinetest"
	"github.com/epochal/epochal/internal/testkit/testserver"
)

// TestDeadlines: with the server stopped (SIGSTOP), and behind a proxy that
// swallows every byte, every call (Dosync on both paths, Deref, atoms,
// promises, delays, locks, groups, Open) returns by its deadline, and
// afterwards everything works and nothing was lost or applied twice.
func TestDeadlines(t *testing.T) {
	srv := testserver.StartZK(t)
	deadlinetest.Run(t, deadlinetest.Harness{
		Addr: srv.Servers[0],
		Open: func(ctx context.Context, addr, ns string) (backend.Driver, error) {
			return zk.Open(ctx, zk.Config{Servers: []string{addr}, Root: "/" + ns, SessionTimeout: 10 * time.Second})
		},
		Pause:     func(t testing.TB) { srv.Pause(t, 0) },
		Resume:    func(t testing.TB) { srv.Resume(t, 0) },
		LockLease: 10 * time.Second,
	})
}
