package zk_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/internal/testkit/testserver"
)

// TestNoNamespaceNestedRoots: a read-only Open of a root with no Epochal
// data names the roots there are nested ones included (/apps/shop, not
// only children of /), and says when its search stopped at its bounds
// (Partial) with znodes left to look at.
func TestNoNamespaceNestedRoots(t *testing.T) {
	srv := testserver.StartZK(t)
	for _, r := range []string{"/top", "/apps/shop", "/apps/eu/cart"} {
		_ = open(t, srv, zk.Config{Root: r})
	}
	check := func(wantPartial bool) {
		t.Helper()
		b, err := zk.Open(t.Context(), zk.Config{Servers: srv.Servers, Root: "/apps/shpo", ReadOnly: true})
		var nn *zk.NoNamespaceError
		if b != nil || !errors.As(err, &nn) {
			t.Fatalf("read-only Open of /apps/shpo: %v, %v; want a NoNamespaceError", b, err)
		}
		if want := []string{"/apps/eu/cart", "/apps/shop", "/top"}; !slices.Equal(nn.Found, want) || nn.Partial != wantPartial {
			t.Errorf("NoNamespaceError: Found %q, Partial %v; want %q, %v", nn.Found, nn.Partial, want, wantPartial)
		}
	}
	check(false)
	// A root deeper than the search goes: not found, and the search says
	// it stopped short.
	_ = open(t, srv, zk.Config{Root: "/deep/a/b/c/d/e"})
	check(true)
}
