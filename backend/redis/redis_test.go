package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/backendtest"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

var prefixes atomic.Int64

// newPrefix returns a prefix no other backend of this run uses.
func newPrefix(base string) string { return fmt.Sprintf("%s%d", base, prefixes.Add(1)) }

func open(t testing.TB, srv *testserver.Redis, prefix string) *redis.Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: prefix, Username: srv.User, Password: srv.Password, TLS: srv.ClientTLS()})
	if err != nil {
		t.Fatalf("redis.Open(%s): %v", srv.Addr, err)
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

// TestConformance runs the whole driver suite against a real redis-server.
func TestConformance(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	backendtest.Run(t, func(t *testing.T) backend.Driver { return open(t, srv, newPrefix("conf")) })
}

// TestNew: a backend over the caller's own client; Close leaves it open.
func TestNew(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer c.Close()
	ctx := context.Background()
	b, err := redis.New(c, redis.Config{Prefix: newPrefix("new")})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Close closed the caller's client: %v", err)
	}
	if _, err := b.ReadPoint(ctx); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("ReadPoint after Close: %v", err)
	}
	// A client closed under a live backend (by its caller; or by Close,
	// while a call was on its way, as a WaitEntries's first look at
	// Close once showed under load): go-redis's "client is closed" is
	// backend.ErrClosed.
	b2, err := redis.New(c, redis.Config{Prefix: newPrefix("new")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b2.ReadPoint(ctx); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if _, err := b2.Versions(ctx, "x"); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("Versions over a closed client: %v, want ErrClosed", err)
	}
	if err := b2.WaitEntries(ctx, "d", "e", 0); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("WaitEntries over a closed client: %v, want ErrClosed", err)
	}
}

// TestNewRefusesReplicaReads: a Cluster client that may serve reads from
// replicas is refused before any round trip: a lagging replica could show a
// pending transaction record as missing, or miss a version at a read point.
func TestNewRefusesReplicaReads(t *testing.T) {
	for _, opt := range []goredis.ClusterOptions{
		{ReadOnly: true},
		{RouteByLatency: true},
		{RouteRandomly: true},
	} {
		opt.Addrs = []string{"127.0.0.1:1"} // never dialled
		c := goredis.NewClusterClient(&opt)
		_, err := redis.New(c, redis.Config{Prefix: "p"})
		_ = c.Close()
		if !errors.Is(err, redis.ErrConfig) || !strings.Contains(err.Error(), "replicas") {
			t.Errorf("New over a Cluster client with %+v: %v, want ErrConfig naming replicas", opt, err)
		}
	}
	c := goredis.NewFailoverClusterClient(&goredis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{"127.0.0.1:1"}, ReplicaOnly: true})
	defer c.Close()
	if _, err := redis.New(c, redis.Config{Prefix: "p"}); !errors.Is(err, redis.ErrConfig) {
		t.Errorf("New over a Sentinel client reading from replicas: %v, want ErrConfig", err)
	}
}

// TestSameIDForEveryClient: two clients of one prefix agree on the ID (so
// intents name the same coordinator), two prefixes do not.
func TestSameIDForEveryClient(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	p := newPrefix("id")
	a, b, c := open(t, srv, p), open(t, srv, p), open(t, srv, newPrefix("id"))
	if a.ID() != b.ID() || a.ID() == c.ID() {
		t.Fatalf("IDs %q, %q (same prefix), %q (another)", a.ID(), b.ID(), c.ID())
	}
}

// TestTenantsDoNotSeeEachOther: refs of one prefix are invisible to another.
func TestTenantsDoNotSeeEachOther(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := context.Background()
	s1 := openSTM(t, open(t, srv, newPrefix("tenant")))
	s2 := openSTM(t, open(t, srv, newPrefix("tenant")))
	r1, err := refs.New(ctx, s1, "shared/name", 1)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := refs.New(ctx, s2, "shared/name", 2)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := r1.Deref(ctx); v != 1 {
		t.Fatalf("tenant 1 sees %d", v)
	}
	if v, _ := r2.Deref(ctx); v != 2 {
		t.Fatalf("tenant 2 sees %d", v)
	}
	l, err := s1.Coordinator().List(ctx, "")
	if err != nil || len(l) != 1 {
		t.Fatalf("tenant 1 lists %v, %v", l, err)
	}
}

// TestAuthAndTLS: an ACL user and a TLS server work; a wrong password is a
// clear error at Open.
func TestAuthAndTLS(t *testing.T) {
	ctx := context.Background()
	t.Run("ACL", func(t *testing.T) {
		srv := testserver.StartRedis(t, testserver.RedisOptions{User: "app", Password: "s3cret"})
		s := openSTM(t, open(t, srv, newPrefix("acl")))
		r, err := refs.New(ctx, s, "x", 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Alter(tx, func(v int) int { return v + 1 }); return nil }); err != nil {
			t.Fatal(err)
		}
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err = redis.Open(octx, redis.Config{Addr: srv.Addr, Username: "app", Password: "wrong", Prefix: "x"})
		if err == nil || !containsAny(err.Error(), "WRONGPASS", "invalid username-password") {
			t.Fatalf("Open with a wrong password: %v", err)
		}
	})
	t.Run("TLS", func(t *testing.T) {
		srv := testserver.StartRedis(t, testserver.RedisOptions{TLS: true})
		s := openSTM(t, open(t, srv, newPrefix("tls")))
		r, err := refs.New(ctx, s, "x", 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, 5); return nil }); err != nil {
			t.Fatal(err)
		}
		octx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if _, err := redis.Open(octx, redis.Config{Addr: srv.Addr, Prefix: "x"}); err == nil {
			t.Fatal("a plaintext Open of a TLS server succeeded")
		}
	})
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// TestBadInput: an unreachable server, a bad prefix and bytes corrupted by
// hand each get a clear error, and nothing else breaks.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	t.Run("Unreachable", func(t *testing.T) {
		octx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		start := time.Now()
		_, err := redis.Open(octx, redis.Config{Addr: "127.0.0.1:1", Prefix: "x"})
		if err == nil {
			t.Fatal("Open of an unreachable server succeeded")
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("Open ignored its ctx: returned after %v", time.Since(start))
		}
	})
	t.Run("Prefix", func(t *testing.T) {
		for _, p := range []string{"a b", "{x}", "a/b", string(make([]byte, 65))} {
			if _, err := redis.Open(ctx, redis.Config{Addr: "127.0.0.1:1", Prefix: p}); !errors.Is(err, redis.ErrConfig) {
				t.Errorf("prefix %q: %v, want ErrConfig", p, err)
			}
		}
		if _, err := redis.Open(ctx, redis.Config{Prefix: "ok"}); !errors.Is(err, redis.ErrConfig) {
			t.Errorf("no address: %v", err)
		}
	})
	t.Run("WatchKeep", func(t *testing.T) {
		if _, err := redis.Open(ctx, redis.Config{Addr: "127.0.0.1:1", Prefix: "x", WatchKeep: -1}); !errors.Is(err, redis.ErrConfig) || !strings.Contains(err.Error(), "WatchKeep") {
			t.Errorf("WatchKeep -1: %v, want ErrConfig naming WatchKeep", err)
		}
	})
	t.Run("CorruptedBytes", func(t *testing.T) {
		srv := testserver.StartRedis(t, testserver.RedisOptions{})
		p := newPrefix("corrupt")
		s := openSTM(t, open(t, srv, p))
		bad, _ := refs.New(ctx, s, "bad", 7)
		worse, _ := refs.New(ctx, s, "worse", 7)
		good, _ := refs.New(ctx, s, "good", 7)
		c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
		defer c.Close()
		// A well-formed entry whose value is not msgpack (0xc1 is never
		// used); and an entry that is not even well-formed. Both are
		// corruption, not a type mismatch.
		if err := c.LSet(ctx, "{"+p+"}:v:bad", 0, "0\x00100\x00\x00\xc1\xc1").Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.LSet(ctx, "{"+p+"}:v:worse", 0, "garbage").Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := bad.Deref(ctx); !errors.Is(err, refs.ErrCorrupt) || errors.Is(err, refs.ErrType) {
			t.Fatalf("corrupted value: %v, want refs.ErrCorrupt", err)
		}
		if _, err := worse.Deref(ctx); !errors.Is(err, refs.ErrCorrupt) {
			t.Fatalf("a malformed entry: %v, want refs.ErrCorrupt", err)
		}
		if err := s.Dosync(ctx, func(tx *txn.Tx) error { good.Set(tx, good.Get(tx)+1); return nil }); err != nil {
			t.Fatalf("an intact ref after others were corrupted: %v", err)
		}
		if v, _ := good.Deref(ctx); v != 8 {
			t.Fatalf("good = %d", v)
		}
	})
}

// TestWatchKeep: while a process subscribes to a ref, commits keep the
// number of older versions its Config.WatchKeep says (the default is the
// conformance suite's Watches/KeepsUpWithSequentialCommits).
func TestWatchKeep(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := context.Background()
	b, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: newPrefix("wk"), WatchKeep: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s := openSTM(t, b)
	x, err := refs.New(ctx, s, "x", 0)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := b.Subscribe(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := 1; i <= 30; i++ {
		if err := s.Dosync(ctx, func(tx *txn.Tx) error { x.Set(tx, i); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	vr, err := b.Versions(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	// The newest and the 8 older ones: values 30 down to 22.
	if n := len(vr.Versions); n != 9 {
		t.Fatalf("a ref watched with WatchKeep 8 kept %d versions after 30 commits, want 9 (the newest and 8 older)", n)
	}
}

// TestOnePhaseRecord: a one-phase commit leaves one string key,
// {P}:o:<id> (cp and time), that expires after OnePhaseKeep; a pending
// record cannot be put under its id (records only move forward), and
// AbortRecord and Records find it committed (I7).
func TestOnePhaseRecord(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	prefix := newPrefix("onerec")
	ctx := context.Background()
	b, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: prefix, OnePhaseKeep: 42 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Create(ctx, backend.CreateRequest{Name: "x", Kind: backend.KindRef, Value: []byte("0"), MaxHistory: 10}); err != nil {
		t.Fatal(err)
	}
	res, err := b.CommitOnePhase(ctx, backend.OnePhaseRequest{Txn: "one-1", RP: 0, Time: time.UnixMilli(1234), Items: []backend.OnePhaseItem{{Name: "x", Mode: backend.ModeWrite, Value: []byte("1")}}})
	if err != nil || res.Status != backend.Committed {
		t.Fatal(res, err)
	}
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer c.Close()
	k := "{" + prefix + "}:o:one-1"
	if v, err := c.Get(ctx, k).Result(); err != nil || v != fmt.Sprintf("%d\x001234", res.CP) {
		t.Fatalf("%s = %q, %v; want cp \\0 ms", k, v, err)
	}
	if ttl := c.PTTL(ctx, k).Val(); ttl <= 40*time.Second || ttl > 42*time.Second {
		t.Fatalf("%s expires in %v, want OnePhaseKeep (42s)", k, ttl)
	}
	if n := c.Exists(ctx, "{"+prefix+"}:t:one-1").Val(); n != 0 {
		t.Fatal("a one-phase commit wrote a record hash too")
	}
	if ok, err := b.PutRecord(ctx, backend.Record{ID: "one-1", Created: time.Now(), Lease: time.Now().Add(time.Minute)}); err != nil || ok {
		t.Fatalf("PutRecord under a one-phase commit's id = %v, %v; want false", ok, err)
	}
	for _, get := range []func() (backend.Record, error){
		func() (backend.Record, error) { return b.AbortRecord(ctx, "one-1") },
		func() (backend.Record, error) {
			rs, err := b.Records(ctx, []string{"one-1"})
			if err != nil {
				return backend.Record{}, err
			}
			return rs[0], nil
		},
	} {
		if r, err := get(); err != nil || r.Status != backend.Committed || r.CP != res.CP || r.Created.UnixMilli() != 1234 {
			t.Fatalf("record = %+v, %v; want committed at %d, created at 1234 ms", r, err, res.CP)
		}
	}
}

// feedUntil drains f until it has given a version at point p, and returns
// what it gave and whether every drain was complete.
func feedUntil(t *testing.T, sub backend.Subscription, p clock.Point) ([]backend.Version, bool) {
	t.Helper()
	f := sub.(backend.Feed)
	var got []backend.Version
	complete := true
	deadline := time.After(10 * time.Second)
	for {
		vs, ok := f.Drain()
		complete = complete && ok
		got = append(got, vs...)
		for _, v := range got {
			if v.Point == p {
				return got, complete
			}
		}
		select {
		case <-sub.C():
		case <-deadline:
			t.Fatalf("the feed gave %d versions, not the one at point %d, within 10s", len(got), p)
		}
	}
}

func commitOne(t *testing.T, b *redis.Backend, id, name, value string) clock.Point {
	t.Helper()
	res, err := b.CommitOnePhase(context.Background(), backend.OnePhaseRequest{Txn: id, RP: ^clock.Point(0), Time: time.Now(),
		Items: []backend.OnePhaseItem{{Name: name, Mode: backend.ModeWrite, Value: []byte(value)}}})
	if err != nil || res.Status != backend.Committed {
		t.Fatalf("CommitOnePhase(%s) = %+v, %v", id, res, err)
	}
	return res.CP
}

// TestFeedFromSubscribe: commits publish their versions only while the
// ref is marked as watched, so the mark must be in place when Subscribe
// returns: a commit right after it (one-phase, or rolled forward by
// Resolve) reaches the feed, which stays complete (its own mark's marker
// is no loss). Checked for a ref never watched before and one whose mark
// another subscription holds.
func TestFeedFromSubscribe(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	b := open(t, srv, newPrefix("feedstart"))
	ctx := context.Background()
	for i, name := range []string{"fresh", "marked"} {
		if _, err := b.Create(ctx, backend.CreateRequest{Name: name, Kind: backend.KindRef, Value: []byte("0"), MaxHistory: 10}); err != nil {
			t.Fatal(err)
		}
		if name == "marked" {
			other, err := b.Subscribe(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
		}
		sub, err := b.Subscribe(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		p1 := commitOne(t, b, fmt.Sprintf("fs-%d-1", i), name, "1")
		id := fmt.Sprintf("fs-%d-2", i)
		if ok, err := b.PutRecord(ctx, backend.Record{ID: id, Created: time.Now(), Lease: time.Now().Add(time.Minute)}); err != nil || !ok {
			t.Fatal(ok, err)
		}
		if lr, err := b.Lock(ctx, backend.LockRequest{Txn: id, Coord: b.ID(), RP: p1, Items: []backend.LockItem{{Name: name, Mode: backend.ModeWrite, Value: []byte("2")}}}); err != nil || len(lr.Conflicts) > 0 {
			t.Fatal(lr, err)
		}
		rec, err := b.CommitRecord(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Resolve(ctx, backend.ResolveRequest{Txn: id, Commit: true, CP: rec.CP, Time: time.Now(), Names: []string{name}}); err != nil {
			t.Fatal(err)
		}
		got, complete := feedUntil(t, sub, rec.CP)
		if len(got) != 2 || got[0].Point != p1 || string(got[1].Value) != "2" || !complete {
			t.Fatalf("%s: the feed gave %+v (complete %v); want the versions at %d and %d, complete", name, got, complete, p1, rec.CP)
		}
		_ = sub.Close()
	}
}

// TestFeedMarksLapsedWatchMark: while a ref's watch mark is gone (it
// expired: a process stopped past watchRetain, renewals failing), commits
// are not published; the renewal that creates the mark again publishes a
// marker, and the feed says it is incomplete before the versions after
// it, so a watcher never takes the versions on either side for
// neighbours.
func TestFeedMarksLapsedWatchMark(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	prefix := newPrefix("lapse")
	b := open(t, srv, prefix)
	ctx := context.Background()
	if _, err := b.Create(ctx, backend.CreateRequest{Name: "x", Kind: backend.KindRef, Value: []byte("0"), MaxHistory: 10}); err != nil {
		t.Fatal(err)
	}
	sub, err := b.Subscribe(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	p1 := commitOne(t, b, "lapse-1", "x", "1")
	if got, complete := feedUntil(t, sub, p1); len(got) != 1 || !complete {
		t.Fatalf("before the lapse: %+v, complete %v", got, complete)
	}
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer c.Close()
	if err := c.Del(ctx, "{"+prefix+"}:w:x").Err(); err != nil { // as if it expired
		t.Fatal(err)
	}
	commitOne(t, b, "lapse-2", "x", "2") // unwatched: not published
	if err := redis.RenewWatchMark(ctx, sub); err != nil {
		t.Fatal(err)
	}
	p3 := commitOne(t, b, "lapse-3", "x", "3")
	got, complete := feedUntil(t, sub, p3)
	if len(got) != 1 || got[0].Point != p3 || complete {
		t.Fatalf("after the lapse the feed gave %+v, complete %v; want the version at %d alone, incomplete", got, complete, p3)
	}
	// Renewing a mark that is there announces nothing.
	if err := redis.RenewWatchMark(ctx, sub); err != nil {
		t.Fatal(err)
	}
	p4 := commitOne(t, b, "lapse-4", "x", "4")
	if got, complete := feedUntil(t, sub, p4); len(got) != 1 || !complete {
		t.Fatalf("after a renewal: %+v, complete %v", got, complete)
	}
}
