package redis_test

import (
	"errors"
	"slices"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/internal/testkit/testserver"
)

// TestReadOnlyOpen: with Config.ReadOnly, Open of a prefix holding no
// Epochal data writes nothing and fails with a *NoNamespaceError (wrapping
// backend.ErrNotFound) naming the prefixes there are; of one that holds
// data, it opens it, with the identity the writers share.
func TestReadOnlyOpen(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := t.Context()
	a := open(t, srv, "ro-a")
	_ = open(t, srv, "ro-b")
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Set(ctx, "{notours}:id", "something else", 0).Err(); err != nil {
		t.Fatal(err)
	}
	before, err := c.DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}

	b, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: "ro-typo", ReadOnly: true})
	var nn *redis.NoNamespaceError
	if b != nil || !errors.As(err, &nn) || !errors.Is(err, backend.ErrNotFound) || nn.Prefix != "ro-typo" ||
		!slices.Equal(nn.Found, []string{"ro-a", "ro-b"}) {
		t.Fatalf("read-only Open of a prefix with no data: %v, %#v; want a NoNamespaceError finding ro-a and ro-b", b, err)
	}
	if after, err := c.DBSize(ctx).Result(); err != nil || after != before {
		t.Errorf("read-only Open of a missing prefix: %d keys, then %d (%v): it wrote", before, after, err)
	}

	ro, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: "ro-a", ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only Open of an existing prefix: %v", err)
	}
	defer ro.Close()
	if ro.ID() != a.ID() {
		t.Errorf("read-only Open: id %q, want the writers' %q", ro.ID(), a.ID())
	}
}
