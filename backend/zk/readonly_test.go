package zk_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/internal/testkit/testserver"
)

// TestReadOnlyOpen: with Config.ReadOnly, Open of a root holding no
// Epochal data creates no znode and fails with a *NoNamespaceError
// (wrapping backend.ErrNotFound) naming the roots under /; of one that
// holds data, it opens it, with the identity the writers share.
func TestReadOnlyOpen(t *testing.T) {
	srv := testserver.StartZK(t)
	ctx := t.Context()
	a := open(t, srv, zk.Config{Root: "/ro-a"})
	_ = open(t, srv, zk.Config{Root: "/ro-b"})
	conn, _, err := gozk.Connect(srv.Servers, 10*time.Second, gozk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Create("/notours", nil, 0, gozk.WorldACL(gozk.PermAll)); err != nil {
		t.Fatal(err)
	}
	before, _, err := conn.Children("/")
	if err != nil {
		t.Fatal(err)
	}

	b, err := zk.Open(ctx, zk.Config{Servers: srv.Servers, Root: "/ro-typo/x", ReadOnly: true})
	var nn *zk.NoNamespaceError
	if b != nil || !errors.As(err, &nn) || !errors.Is(err, backend.ErrNotFound) || nn.Root != "/ro-typo/x" ||
		!slices.Equal(nn.Found, []string{"/ro-a", "/ro-b"}) {
		t.Fatalf("read-only Open of a root with no data: %v, %#v; want a NoNamespaceError finding /ro-a and /ro-b", b, err)
	}
	after, _, err := conn.Children("/")
	slices.Sort(before)
	slices.Sort(after)
	if err != nil || !slices.Equal(before, after) {
		t.Errorf("read-only Open of a missing root: / held %v, then %v (%v): it created znodes", before, after, err)
	}

	ro, err := zk.Open(ctx, zk.Config{Servers: srv.Servers, Root: "/ro-a", ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only Open of an existing root: %v", err)
	}
	defer ro.Close()
	if ro.ID() != a.ID() {
		t.Errorf("read-only Open: id %q, want the writers' %q", ro.ID(), a.ID())
	}
}
