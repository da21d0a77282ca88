package redis_test

import (
	"context"
	"errors"
	"os"
	"strings"
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

// documentedACL returns the arguments of the ACL SETUSER command that
// docs/operations.md gives for prefix app1 (user epochal, password secret),
// as an operator would paste it.
func documentedACL(t *testing.T) []any {
	t.Helper()
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "\nACL SETUSER epochal ")
	if !ok {
		t.Fatal("docs/operations.md has no ACL SETUSER epochal line")
	}
	rest, _, ok = strings.Cut(rest, "```")
	if !ok {
		t.Fatal("docs/operations.md: the ACL SETUSER line's code block does not end")
	}
	args := []any{"ACL", "SETUSER", "epochal"}
	for _, f := range strings.Fields(rest) {
		args = append(args, f)
	}
	return args
}

// TestWaitReplicasACL: with the ACL docs/operations.md gives (its ACL
// SETUSER line as it is), a client with WaitReplicas commits and the ACL
// log stays empty; a user that may not run WAIT is refused at Open and New
// with an error naming WAIT. (Before, Open succeeded, and every commit
// applied on the master and then ended in ErrOutcomeUnknown: WAIT, after
// the script, was refused, and so was the lookup's.)
func TestWaitReplicasACL(t *testing.T) {
	m, _ := startPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := goredis.NewClient(&goredis.Options{Addr: m.Addr})
	defer admin.Close()
	if err := admin.Do(ctx, documentedACL(t)...).Err(); err != nil {
		t.Fatalf("the documented ACL SETUSER line: %v", err)
	}
	cfg := redis.Config{Addr: m.Addr, Prefix: "app1", Username: "epochal", Password: "secret", WaitReplicas: 1, WaitTimeout: 2 * time.Second}
	b, err := redis.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open with WaitReplicas as the documented user: %v", err)
	}
	defer b.Close()
	s := openSTM(t, b)
	r, err := refs.New(ctx, s, "acct", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, 1); return nil }); err != nil {
		t.Fatalf("Dosync with WaitReplicas as the documented user: %v", err)
	}
	if v, err := r.Deref(ctx); err != nil || v != 1 {
		t.Fatalf("acct = %d, %v; want 1", v, err)
	}
	if log := admin.Do(ctx, "ACL", "LOG").Val(); log != nil && len(log.([]any)) > 0 {
		t.Fatalf("the documented user was refused commands: ACL LOG %v", log)
	}

	if err := admin.Do(ctx, "ACL", "SETUSER", "epochal", "-wait").Err(); err != nil {
		t.Fatal(err)
	}
	b2, err := redis.Open(ctx, cfg)
	if err == nil {
		b2.Close()
		t.Fatal("Open with WaitReplicas as a user without WAIT succeeded")
	}
	if !strings.Contains(err.Error(), "WAIT") || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("Open with WaitReplicas as a user without WAIT: %v; want an error naming WAIT and NOPERM", err)
	}
	t.Log(err)
	c := goredis.NewClient(&goredis.Options{Addr: m.Addr, Username: "epochal", Password: "secret"})
	defer c.Close()
	ncfg := cfg
	ncfg.Addr = ""
	if b2, err := redis.New(c, ncfg); err == nil || !strings.Contains(err.Error(), "WAIT") {
		if err == nil {
			b2.Close()
		}
		t.Fatalf("New with WaitReplicas as a user without WAIT: %v; want an error naming WAIT", err)
	}
	// Without WaitReplicas the same user opens as before.
	ncfg.WaitReplicas = 0
	b3, err := redis.New(c, ncfg)
	if err != nil {
		t.Fatalf("New without WaitReplicas as a user without WAIT: %v", err)
	}
	b3.Close()
}
