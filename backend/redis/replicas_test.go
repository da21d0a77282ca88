package redis_test

import (
	"context"
	"errors"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/servers"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// startPair starts a master and a replica of it, closed when t ends.
func startPair(t *testing.T) (master, replica *servers.Redis) {
	t.Helper()
	testserver.RequireRedis(t)
	m, err := servers.StartRedis(servers.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	r, err := servers.StartReplica(m, servers.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return m, r
}

// TestWaitReplicas: with WaitReplicas 1 a one-phase commit returns once the
// replica has it; with the replica paused, the commit applies on the
// master but reports ErrNotReplicated (not ErrNotApplied), AbortRecord
// finding it committed reports it too, and a Dosync ends in
// stm.ErrOutcomeUnknown wrapping it; once the replica resumes, the
// lookup finds the commit and acknowledges it.
func TestWaitReplicas(t *testing.T) {
	m, r := startPair(t)
	ctx := context.Background()
	prefix := newPrefix("wait")
	b, err := redis.Open(ctx, redis.Config{Addr: m.Addr, Prefix: prefix, WaitReplicas: 1, WaitTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rc := goredis.NewClient(&goredis.Options{Addr: r.Addr})
	defer rc.Close()
	mc := goredis.NewClient(&goredis.Options{Addr: m.Addr})
	defer mc.Close()
	if _, err := b.Create(ctx, backend.CreateRequest{Name: "x", Kind: backend.KindRef, Value: []byte("0"), MaxHistory: 10}); err != nil {
		t.Fatal(err)
	}
	var rp clock.Point
	commit := func(id string) (backend.OnePhaseResult, error) {
		return b.CommitOnePhase(ctx, backend.OnePhaseRequest{Txn: id, RP: rp, Time: time.Now(),
			Items: []backend.OnePhaseItem{{Name: "x", Mode: backend.ModeWrite, Value: []byte(id)}}})
	}
	res, err := commit("one-1")
	if err != nil || res.Status != backend.Committed {
		t.Fatal(res, err)
	}
	rp = res.CP
	// Acknowledged: the replica has the record now, no waiting.
	if n := rc.Exists(ctx, "{"+prefix+"}:o:one-1").Val(); n != 1 {
		t.Fatal("the replica lacks a commit acknowledged with WaitReplicas 1")
	}

	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = r.Resume()
		}
	}()
	_, err = commit("one-2")
	if !errors.Is(err, redis.ErrNotReplicated) || errors.Is(err, backend.ErrNotApplied) {
		t.Fatalf("commit with the replica paused: %v; want ErrNotReplicated, not ErrNotApplied", err)
	}
	if n := mc.Exists(ctx, "{"+prefix+"}:o:one-2").Val(); n != 1 {
		t.Fatalf("the master lacks the commit that fell short of its replicas (%v): %v", err, mc.Keys(ctx, "*").Val())
	}
	// The lookup writes nothing here (the record is committed), and
	// must still wait for the replica to have it, also from another
	// client, whose connection wrote nothing before.
	b2, err := redis.Open(ctx, redis.Config{Addr: m.Addr, Prefix: prefix, WaitReplicas: 1, WaitTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	for i, bk := range []*redis.Backend{b, b2} {
		if rec, err := bk.AbortRecord(ctx, "one-2"); !errors.Is(err, redis.ErrNotReplicated) {
			t.Fatalf("client %d: AbortRecord of a commit the replica lacks: %+v, %v; want ErrNotReplicated", i, rec, err)
		}
	}

	s := openSTM(t, b)
	// Creating a ref is not a commit: it does not wait.
	ref, err := refs.New(ctx, s, "acct", 0)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Dosync(ctx, func(tx *txn.Tx) error { ref.Set(tx, 1); return nil })
	if !errors.Is(err, stm.ErrOutcomeUnknown) || !errors.Is(err, redis.ErrNotReplicated) {
		t.Fatalf("Dosync with the replica paused: %v; want ErrOutcomeUnknown wrapping ErrNotReplicated", err)
	}

	if err := r.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	if rec, err := b.AbortRecord(ctx, "one-2"); err != nil || rec.Status != backend.Committed {
		t.Fatalf("AbortRecord once the replica resumed: %+v, %v; want committed", rec, err)
	}
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { ref.Set(tx, 2); return nil }); err != nil {
		t.Fatalf("Dosync with the replica back: %v", err)
	}
}

// TestWaitReplicasConfig: bad values are refused, and WaitReplicas with a
// Cluster client too.
func TestWaitReplicasConfig(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []redis.Config{{Addr: "127.0.0.1:1", WaitReplicas: -1}, {Addr: "127.0.0.1:1", WaitReplicas: 1, WaitTimeout: -time.Second}} {
		if _, err := redis.Open(ctx, cfg); !errors.Is(err, redis.ErrConfig) {
			t.Errorf("Open(%+v): %v; want ErrConfig", cfg, err)
		}
	}
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer cc.Close()
	if _, err := redis.New(cc, redis.Config{WaitReplicas: 1}); !errors.Is(err, redis.ErrConfig) {
		t.Errorf("New(ClusterClient, WaitReplicas 1): %v; want ErrConfig", err)
	}
}
