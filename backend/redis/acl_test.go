package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/txn"
)

// TestCommitAppliedOnceWhenHintRefused: a commit's change hint (PUBLISH)
// comes after its writes in the script, and Redis keeps a script's writes
// when a later call fails. A hint refused (an ACL user without PUBLISH)
// must not fail the commit: the engine would learn "not applied" from the
// missing record, retry, and apply the same Dosync again and again. Hints
// may be lost (watchers poll), so the scripts send them with pcall.
func TestCommitAppliedOnceWhenHintRefused(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{User: "admin", Password: "a",
		Args: []string{"user limited on >l ~* &* +@all -publish"}})
	prefix := newPrefix("aclhint")
	admin := open(t, srv, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	limited, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: prefix, Username: "limited", Password: "l"})
	if err != nil {
		t.Fatal(err)
	}
	defer limited.Close()
	sa := openSTM(t, admin)
	if _, err := refs.New(ctx, sa, "r", 0); err != nil {
		t.Fatal(err)
	}
	// The admin watches the ref: commits to it now publish hints.
	sub, err := admin.Subscribe(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	sl := openSTM(t, limited)
	r, err := refs.New(ctx, sl, "r", 0)
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	defer dcancel()
	err = sl.Dosync(dctx, func(tx *txn.Tx) error {
		r.Alter(tx, func(v int) int { return v + 1 })
		return nil
	})
	if err != nil {
		t.Fatalf("Dosync by a user without PUBLISH: %v", err)
	}
	if v, err := r.Deref(ctx); err != nil || v != 1 {
		t.Fatalf("after one Dosync adding 1: %d, %v; want 1 (applied once)", v, err)
	}
}

// TestWatchMarkWhenHintRefused: Subscribe's watch-mark script sets the
// mark, then publishes a marker when it created it. The marker is a hint
// like the others: refused (a user without PUBLISH), it must not fail the
// script after its SET, which Redis keeps (Subscribe failed, leaving the
// mark behind).
func TestWatchMarkWhenHintRefused(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{User: "admin", Password: "a",
		Args: []string{"user limited on >l ~* &* +@all -publish"}})
	prefix := newPrefix("aclmark")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	limited, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: prefix, Username: "limited", Password: "l"})
	if err != nil {
		t.Fatal(err)
	}
	defer limited.Close()
	if _, err := refs.New(ctx, openSTM(t, limited), "r", 0); err != nil {
		t.Fatal(err)
	}
	sub, err := limited.Subscribe(ctx, "r")
	if err != nil {
		t.Fatalf("Subscribe by a user without PUBLISH (the mark is new): %v", err)
	}
	defer sub.Close()
}
