package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"
	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/internal/testkit/testserver"
)

// readOnlyCommands are the commands that must create nothing.
var readOnlyCommands = [][]string{
	{"refs", "ls"}, {"refs", "get", "a"}, {"refs", "history", "a"}, {"refs", "watch", "a"}, {"refs", "diff", "a", "0", "1"},
	{"refs", "set", "a", "1", "--dry-run"}, {"refs", "set", "a", "1", "--yes"},
	{"txn", "show", "x"}, {"txn", "ls"}, {"locks", "ls"}, {"group", "ls"}, {"group", "ls", "g"}, {"clock"},
}

// TestNoSuchNamespace: a read-only command with a mistyped --prefix or
// --root is exit 1, "no such namespace: <x>", naming the namespaces
// there are, and leaves the server as it was (Redis DBSIZE, ZooKeeper's
// children of /); completion too.
func TestNoSuchNamespace(t *testing.T) {
	check := func(t *testing.T, count func() any, real, typo string, flags ...string) {
		before := count()
		for _, c := range readOnlyCommands {
			_, _, err := runCLI(t, append(flags, c...)...)
			if exitCode(err) != exitNotFound || err == nil || !strings.Contains(err.Error(), "no such namespace: "+typo) || !strings.Contains(err.Error(), real) {
				t.Errorf("epochal %v: exit %d, %v; want exit 1, no such namespace: %s, naming %s", c, exitCode(err), err, typo, real)
			}
		}
		if out, _, err := runCLI(t, append(flags, "__complete", "refs", "get", "")...); err != nil || !strings.HasPrefix(out, ":4\n") {
			t.Errorf("completion: %q, %v", out, err)
		}
		if after := count(); !equalAny(before, after) {
			t.Errorf("after read-only commands on %s: the server held %v, now %v", typo, before, after)
		}
	}
	t.Run("redis", func(t *testing.T) {
		srv := testserver.StartRedis(t, testserver.RedisOptions{})
		drv, err := redis.Open(t.Context(), redis.Config{Addr: srv.Addr, Prefix: "real"})
		mustNoErr(t, err, "open")
		t.Cleanup(func() { drv.Close() })
		c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
		t.Cleanup(func() { c.Close() })
		count := func() any {
			n, err := c.DBSize(t.Context()).Result()
			mustNoErr(t, err, "DBSIZE")
			return n
		}
		check(t, count, "real", "typo", "--backend", "redis", "--addr", srv.Addr, "--prefix", "typo")
	})
	t.Run("zk", func(t *testing.T) {
		srv := testserver.StartZK(t)
		drv, err := zk.Open(t.Context(), zk.Config{Servers: srv.Servers, Root: "/real"})
		mustNoErr(t, err, "open")
		t.Cleanup(func() { drv.Close() })
		conn, _, err := gozk.Connect(srv.Servers, 10*time.Second, gozk.WithLogInfo(false))
		mustNoErr(t, err, "connect")
		t.Cleanup(conn.Close)
		count := func() any {
			kids, _, err := conn.Children("/")
			mustNoErr(t, err, "children of /")
			slices.Sort(kids)
			return strings.Join(kids, ",")
		}
		check(t, count, "/real", "/typo", "--backend", "zk", "--addr", srv.ConnectString(), "--root", "/typo")
	})
}

func equalAny(a, b any) bool { return a == b }

// TestWatchMissingRefNoMark: refs watch of a ref that does not exist, in a
// prefix that does, is exit 1 and leaves no watch mark behind (DBSIZE
// unchanged).
func TestWatchMissingRefNoMark(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	drv, err := redis.Open(t.Context(), redis.Config{Addr: srv.Addr, Prefix: "real"})
	mustNoErr(t, err, "open")
	t.Cleanup(func() { drv.Close() })
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { c.Close() })
	before, err := c.DBSize(t.Context()).Result()
	mustNoErr(t, err, "DBSIZE")
	_, _, err = runCLI(t, "--backend", "redis", "--addr", srv.Addr, "--prefix", "real", "refs", "watch", "nosuch")
	if exitCode(err) != exitNotFound || !strings.Contains(err.Error(), `no ref "nosuch"`) {
		t.Errorf("refs watch nosuch: exit %d, %v; want exit 1, no ref", exitCode(err), err)
	}
	if after, err := c.DBSize(t.Context()).Result(); err != nil || after != before {
		t.Errorf("refs watch nosuch: %d keys before, %d after (%v)", before, after, err)
	}
}

// TestNoSuchNamespaceNestedZK: on ZooKeeper the roots a mistyped --root
// is told about include nested ones (a demo's /apps/shop), and a root
// deeper than the search goes is not denied: the message says how far it
// looked instead of "holds no Epochal data".
func TestNoSuchNamespaceNestedZK(t *testing.T) {
	srv := testserver.StartZK(t)
	flags := []string{"--backend", "zk", "--addr", srv.ConnectString()}
	zkRoot := func(root string) {
		drv, err := zk.Open(t.Context(), zk.Config{Servers: srv.Servers, Root: root})
		mustNoErr(t, err, "open "+root)
		_ = drv.Close()
	}
	zkRoot("/deep/a/b/c/d/e")
	_, _, err := runCLI(t, append(flags, "--root", "/apps/shpo", "clock")...)
	if exitCode(err) != exitNotFound || err == nil || strings.Contains(err.Error(), "holds no Epochal data") || !strings.Contains(err.Error(), "the search for roots stops") {
		t.Errorf("--root /apps/shpo, only a root deeper than the search: exit %d, %v; want exit 1 saying how far it looked, not that there is no data", exitCode(err), err)
	}
	if _, _, err := runCLI(t, append(flags, "--root", "/apps/shop", "demo", "--duration", "100ms", "--accounts", "2")...); err != nil {
		t.Fatalf("demo on /apps/shop: %v", err)
	}
	_, _, err = runCLI(t, append(flags, "--root", "/apps/shpo", "clock")...)
	if exitCode(err) != exitNotFound || err == nil || !strings.Contains(err.Error(), "no such namespace: /apps/shpo") || !strings.Contains(err.Error(), ": /apps/shop") {
		t.Errorf("--root /apps/shpo after a demo on /apps/shop: exit %d, %v; want exit 1 naming /apps/shop", exitCode(err), err)
	}
}
