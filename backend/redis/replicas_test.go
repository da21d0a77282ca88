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
// replica has it, not before (it waits while the replica is paused, up to
// WaitTimeout); with the replica paused past WaitTimeout, the commit
// applies on the master but reports ErrNotReplicated (not ErrNotApplied), AbortRecord
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
	// A commit waits for the replica: with it paused for 1 s (WaitTimeout
	// 2.5 s, below go-redis's ReadTimeout) the commit does not return
	// until it is resumed, and then the replica has it.
	long, err := redis.Open(ctx, redis.Config{Addr: m.Addr, Prefix: prefix, WaitReplicas: 1, WaitTimeout: 2500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		res backend.OnePhaseResult
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := long.CommitOnePhase(ctx, backend.OnePhaseRequest{Txn: "one-1", RP: rp, Time: time.Now(),
			Items: []backend.OnePhaseItem{{Name: "x", Mode: backend.ModeWrite, Value: []byte("one-1")}}})
		done <- answer{res, err}
	}()
	select {
	case a := <-done:
		_ = r.Resume()
		t.Fatalf("a commit with WaitReplicas 1 returned while the replica was paused: %+v, %v", a.res, a.err)
	case <-time.After(time.Second):
	}
	if err := r.Resume(); err != nil {
		t.Fatal(err)
	}
	a := <-done
	if a.err != nil || a.res.Status != backend.Committed {
		t.Fatalf("the commit once the replica resumed: %+v, %v", a.res, a.err)
	}
	rp = a.res.CP
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

// TestWaitReplicasRefusals: with the replica paused, a step that certainly
// did not apply comes back as the refusal it is, without ErrNotReplicated:
// a one-phase commit's conflicts and its aborted (a tombstone refused
// it), CommitRecord finding the record aborted or missing. So a Dosync
// whose one-phase commit conflicts while a replica lags retries (here it
// then commits, the replica back) instead of ending in ErrOutcomeUnknown.
// AbortRecord still waits whatever it answers, so a read that confirms a
// missing record and a commit that aborts an expired holder fail (not
// ErrOutcomeUnknown: nothing of theirs committed) until the replica is
// back: acting on an abort a failover could lose would let the holder
// commit after its intents were rolled back.
func TestWaitReplicasRefusals(t *testing.T) {
	m, r := startPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	prefix := newPrefix("refusals")
	cfg := redis.Config{Addr: m.Addr, Prefix: prefix, WaitReplicas: 1, WaitTimeout: 200 * time.Millisecond}
	b, err := redis.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// nb writes without waiting: the others' steps the test sets up.
	ncfg := cfg
	ncfg.WaitReplicas = 0
	nb, err := redis.Open(ctx, ncfg)
	if err != nil {
		t.Fatal(err)
	}
	defer nb.Close()
	s, ns := openSTM(t, b), openSTM(t, nb)
	acct, err := refs.New(ctx, s, "acct", 0)
	if err != nil {
		t.Fatal(err)
	}
	nacct, err := refs.New(ctx, ns, "acct", 0)
	if err != nil {
		t.Fatal(err)
	}
	held, err := refs.New(ctx, s, "held", 0)
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := refs.New(ctx, s, "orphan", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { acct.Set(tx, 1); return nil }); err != nil {
		t.Fatal(err)
	}

	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := r.Resume(); err != nil {
				t.Error(err)
			}
		}
	}
	defer resume()

	// One-phase, conflicting: read point 0 is older than acct's version.
	res, err := b.CommitOnePhase(ctx, backend.OnePhaseRequest{Txn: "c-conflict", RP: 0, Time: time.Now(),
		Items: []backend.OnePhaseItem{{Name: "acct", Mode: backend.ModeWrite, Value: []byte("5")}}})
	if err != nil || res.Status == backend.Committed || len(res.Conflicts) != 1 || res.Conflicts[0].Reason != backend.Newer {
		t.Fatalf("a conflicting one-phase commit, the replica paused: %+v, %v; want its Newer conflict and no error", res, err)
	}
	// One-phase, refused by a tombstone another wrote.
	if rec, err := nb.AbortRecord(ctx, "c-tomb"); err != nil || rec.Status != backend.Aborted {
		t.Fatal(rec, err)
	}
	res, err = b.CommitOnePhase(ctx, backend.OnePhaseRequest{Txn: "c-tomb", RP: ^clock.Point(0) >> 1, Time: time.Now(),
		Items: []backend.OnePhaseItem{{Name: "acct", Mode: backend.ModeWrite, Value: []byte("5")}}})
	if err != nil || res.Status != backend.Aborted {
		t.Fatalf("a one-phase commit of an aborted id, the replica paused: %+v, %v; want aborted and no error", res, err)
	}
	// CommitRecord of a record another aborted, and of none.
	if ok, err := nb.PutRecord(ctx, backend.Record{ID: "g-aborted", Created: time.Now(), Lease: time.Now().Add(time.Minute)}); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if rec, err := nb.AbortRecord(ctx, "g-aborted"); err != nil || rec.Status != backend.Aborted {
		t.Fatal(rec, err)
	}
	for _, id := range []string{"g-aborted", "g-none"} {
		if rec, err := b.CommitRecord(ctx, id); err != nil || rec.Status == backend.Committed {
			t.Fatalf("CommitRecord(%s), the replica paused: %+v, %v; want not committed and no error", id, rec, err)
		}
	}
	// AbortRecord's answers are relied on: aborted too must wait.
	if rec, err := b.AbortRecord(ctx, "g-aborted"); !errors.Is(err, redis.ErrNotReplicated) {
		t.Fatalf("AbortRecord, the replica paused: %+v, %v; want ErrNotReplicated", rec, err)
	}

	// A read meeting an intent whose record is missing confirms it with
	// AbortRecord, and a commit meeting an expired holder's intent aborts
	// it: each fails while its abort cannot be acknowledged, and the
	// commit's Dosync says it did not commit (no ErrOutcomeUnknown).
	for _, h := range []struct {
		id, ref string
		lease   time.Duration // 0: no record
	}{{"g-missing", "orphan", 0}, {"g-expired", "held", -time.Minute}} {
		if h.lease != 0 {
			if ok, err := nb.PutRecord(ctx, backend.Record{ID: h.id, Created: time.Now(), Lease: time.Now().Add(h.lease),
				Refs: []backend.RefAddr{{Backend: nb.ID(), Name: h.ref}}}); err != nil || !ok {
				t.Fatal(ok, err)
			}
		}
		if lr, err := nb.Lock(ctx, backend.LockRequest{Txn: h.id, Coord: nb.ID(), RP: ^clock.Point(0) >> 1, Round: 1,
			Items: []backend.LockItem{{Name: h.ref, Mode: backend.ModeWrite, Value: []byte("9")}}}); err != nil || len(lr.Conflicts) > 0 {
			t.Fatal(lr, err)
		}
	}
	if v, err := orphan.Deref(ctx); !errors.Is(err, redis.ErrNotReplicated) || errors.Is(err, stm.ErrOutcomeUnknown) {
		t.Fatalf("Deref of a ref held by a missing record, the replica paused: %d, %v; want ErrNotReplicated, not ErrOutcomeUnknown", v, err)
	}
	err = s.Dosync(ctx, func(tx *txn.Tx) error { held.Set(tx, 5); return nil })
	if !errors.Is(err, redis.ErrNotReplicated) || errors.Is(err, stm.ErrOutcomeUnknown) {
		t.Fatalf("Dosync writing a ref an expired holder holds, the replica paused: %v; want ErrNotReplicated, not ErrOutcomeUnknown", err)
	}

	// A Dosync whose first attempt conflicts (another client commits to
	// acct after it read it) retries; its second attempt resumes the
	// replica, and commits.
	attempts := 0
	err = s.Dosync(ctx, func(tx *txn.Tx) error {
		attempts++
		v := acct.Get(tx)
		switch attempts {
		case 1:
			if err := ns.Dosync(ctx, func(tx *txn.Tx) error { nacct.Set(tx, 10); return nil }); err != nil {
				return err
			}
		case 2:
			resume()
		}
		acct.Set(tx, v+1)
		return nil
	})
	if err != nil || attempts != 2 {
		t.Fatalf("Dosync whose first attempt conflicts while the replica is paused: %v after %d attempts; want a retry, then success", err, attempts)
	}
	if v, err := acct.Deref(ctx); err != nil || v != 11 {
		t.Fatalf("acct = %d, %v; want 11", v, err)
	}
	// The replica back, the read and the commit go on.
	if v, err := orphan.Deref(ctx); err != nil || v != 0 {
		t.Fatalf("Deref of the orphaned intent's ref, the replica back: %d, %v; want 0", v, err)
	}
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { held.Set(tx, 5); return nil }); err != nil {
		t.Fatalf("Dosync writing held, the replica back: %v", err)
	}
	if v, err := held.Deref(ctx); err != nil || v != 5 {
		t.Fatalf("held = %d, %v; want 5", v, err)
	}
}
