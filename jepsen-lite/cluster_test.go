package jepsenlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/internal/servers"
	"github.com/epochal/epochal/internal/testkit/testserver"
)

// clusterTestStart starts a cluster, checks that it supports the faults
// wanted, and registers a check, run at the end of the test, that Close
// leaves none of the PIDs recorded behind. It returns the cluster and a
// function recording the PIDs of its nodes now.
func clusterTestStart(t *testing.T, cfg clusterConfig, faults ...string) (*cluster, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	c, err := startCluster(ctx, cfg)
	if err != nil {
		t.Fatalf("StartCluster(%+v): %v", cfg, err)
	}
	t.Logf("%s cluster (%d nodes, proxied %v) serving after %v at %q", cfg.Backend, max(cfg.Nodes, 1), cfg.Proxied,
		time.Since(start).Round(time.Millisecond), c.Addrs())
	if got := c.Faults(); !slices.Equal(got, faults) {
		t.Errorf("Faults() = %q, want %q", got, faults)
	}
	seen := map[int]bool{}
	record := func() {
		for _, pid := range c.PIDs() {
			if pid != 0 {
				seen[pid] = true
			}
		}
	}
	record()
	t.Cleanup(func() {
		record()
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		for pid := range seen {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("pid %d still exists after Close (kill -0: %v)", pid, err)
			}
			if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("process group %d still exists after Close (kill -0: %v)", pid, err)
			}
		}
		if cfg.Backend != "mem" && len(seen) == 0 {
			t.Errorf("no server PID was recorded")
		}
	})
	return c, record
}

// clusterTestRefuses checks that c refuses to inject kind, with an error
// that mentions what.
func clusterTestRefuses(t *testing.T, c *cluster, kind, mention string) {
	t.Helper()
	if f, err := c.Inject(context.Background(), kind); err == nil || !strings.Contains(err.Error(), mention) {
		if f != nil {
			clusterTestHeal(t, f)
		}
		t.Errorf("Inject(%q): %v, want an error mentioning %s", kind, err, mention)
	}
}

// clusterTestHeal heals f, failing the test if the cluster does not serve
// again within 40 s.
func clusterTestHeal(t *testing.T, f fault) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	start := time.Now()
	if err := f.Heal(ctx); err != nil {
		t.Fatalf("Heal %s: %v", f, err)
	}
	t.Logf("%s: healed in %v", f, time.Since(start).Round(time.Millisecond))
}

func clusterTestInject(t *testing.T, c *cluster, kind string) fault {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	f, err := c.Inject(ctx, kind)
	if err != nil {
		t.Fatalf("Inject(%q): %v", kind, err)
	}
	if _, err := c.Inject(ctx, kind); err == nil || !strings.Contains(err.Error(), "still in effect") {
		t.Errorf("a second fault while %s: %v, want it refused", f, err)
	}
	return f
}

// clusterTestRedisPing sends PING through addr within timeout.
func clusterTestRedisPing(addr string, timeout time.Duration) error {
	c := servers.RedisClient(addr, nil, "", "", timeout)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	v, err := c.Ping(ctx).Result()
	if err == nil && v != "PONG" {
		err = fmt.Errorf("PING: %q", v)
	}
	return err
}

func TestClusterMem(t *testing.T) {
	t.Parallel()
	c, _ := clusterTestStart(t, clusterConfig{Backend: "mem", Proxied: true})
	if a := c.Addrs(); a != nil {
		t.Errorf("Addrs() = %q, want nil", a)
	}
	clusterTestRefuses(t, c, "kill", "supports no faults")
	for _, cfg := range []clusterConfig{{Backend: "etcd"}, {Backend: "redis", Nodes: 3}, {Backend: "zk", Nodes: 2}} {
		if c, err := startCluster(context.Background(), cfg); err == nil {
			c.Close()
			t.Errorf("StartCluster(%+v) succeeded", cfg)
		}
	}
}

func TestClusterRedis(t *testing.T) {
	testserver.RequireRedis(t)
	t.Parallel()
	dir := t.TempDir()
	c, record := clusterTestStart(t, clusterConfig{Backend: "redis", Dir: dir, Proxied: true}, "kill", "pause", "partition", "reset", "delay", "jitter", "slow")
	clusterTestRefuses(t, c, "leader", "kill, pause, partition, reset, delay, jitter, slow")
	clusterTestRefuses(t, c, "bogus", `"bogus"`)
	conf, err := os.ReadFile(filepath.Join(dir, "redis", "redis.conf"))
	if err != nil || !strings.Contains(string(conf), "appendonly yes\n") || !strings.Contains(string(conf), "appendfsync always\n") {
		t.Errorf("redis.conf: %v\n%s", err, conf)
	}
	addrs := c.Addrs()
	if len(addrs) != 1 || c.proxies[0].Upstream() == addrs[0] {
		t.Fatalf("Addrs() = %q, want one proxy", addrs)
	}
	addr := addrs[0]
	rc := servers.RedisClient(addr, nil, "", "", 5*time.Second)
	if v, err := rc.Set(t.Context(), "k", "acknowledged", 0).Result(); err != nil || v != "OK" {
		t.Fatalf("SET through the proxy: %q, %v", v, err)
	}
	rc.Close()

	for _, kind := range c.Faults() {
		before := c.PIDs()[0]
		f := clusterTestInject(t, c, kind)
		t.Logf("injected %s", f)
		switch kind {
		case "kill":
			if pid := c.PIDs()[0]; pid != 0 {
				t.Errorf("%s: PID %d", f, pid)
			}
			if err := syscall.Kill(before, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("%s: pid %d still there: %v", f, before, err)
			}
			if err := clusterTestRedisPing(addr, time.Second); err == nil {
				t.Errorf("%s: PING answered", f)
			}
		case "pause", "partition":
			if err := clusterTestRedisPing(addr, 300*time.Millisecond); !proxyTimedOut(err) {
				t.Errorf("%s: PING: %v, want a timeout", f, err)
			}
		case "reset":
			if err := clusterTestRedisPing(addr, time.Second); err == nil || proxyTimedOut(err) {
				t.Errorf("%s: PING: %v, want the connection reset", f, err)
			}
		case "delay":
			start := time.Now()
			if err := clusterTestRedisPing(addr, 2*time.Second); err != nil {
				t.Errorf("%s: PING: %v", f, err)
			}
			if rt := time.Since(start); rt < 2*clusterDelay {
				t.Errorf("%s: PING took %v", f, rt)
			}
		case "jitter":
			if err := clusterTestRedisPing(addr, 2*time.Second); err != nil {
				t.Errorf("%s: PING: %v", f, err)
			}
		}
		clusterTestHeal(t, f)
		record()
		if err := clusterTestRedisPing(addr, 2*time.Second); err != nil {
			t.Fatalf("PING through the proxy after healing %s: %v", f, err)
		}
		clusterTestHeal(t, f) // again: only waits
	}

	rc = servers.RedisClient(addr, nil, "", "", 5*time.Second)
	defer rc.Close()
	if v, err := rc.Get(t.Context(), "k").Result(); err != nil || v != "acknowledged" {
		t.Errorf("GET after the faults: %q, %v; want the acknowledged write", v, err)
	}
}

func TestClusterRedisUnproxied(t *testing.T) {
	testserver.RequireRedis(t)
	t.Parallel()
	c, record := clusterTestStart(t, clusterConfig{Backend: "redis"}, "kill", "pause")
	clusterTestRefuses(t, c, "partition", "Proxied")
	if addrs := c.Addrs(); len(addrs) != 1 || addrs[0] != c.redis.Addr {
		t.Errorf("Addrs() = %q, want the server's %s", addrs, c.redis.Addr)
	}
	f := clusterTestInject(t, c, "kill")
	clusterTestHeal(t, f)
	record()
	if err := clusterTestRedisPing(c.Addrs()[0], 2*time.Second); err != nil {
		t.Fatal(err)
	}
}

type clusterTestZKLog struct{}

func (clusterTestZKLog) Printf(string, ...any) {}

// clusterTestZKCreateGet connects to addrs with go-zookeeper, creates path
// and reads it back.
func clusterTestZKCreateGet(t *testing.T, addrs []string, path string) {
	t.Helper()
	conn, events, err := gozk.Connect(addrs, 4*time.Second, gozk.WithLogger(clusterTestZKLog{}), gozk.WithLogInfo(false))
	if err != nil {
		t.Fatalf("gozk.Connect(%q): %v", addrs, err)
	}
	defer conn.Close()
	go func() {
		for range events {
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := conn.Create(path, []byte(path), 0, gozk.WorldACL(gozk.PermAll))
		if err == nil || errors.Is(err, gozk.ErrNodeExists) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Create %s through %q: %v", path, addrs, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	data, _, err := conn.Get(path)
	if err != nil || string(data) != path {
		t.Fatalf("Get %s: %q, %v", path, data, err)
	}
}

// clusterTestZKAnswering counts the addresses that answer ruok within
// timeout, and returns the slowest answer's time.
func clusterTestZKAnswering(addrs []string, timeout time.Duration) (int, time.Duration) {
	var mu sync.Mutex
	n, slowest := 0, time.Duration(0)
	var wg sync.WaitGroup
	for _, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			s, err := servers.FourLetterAt(a, "ruok", timeout)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && s == "imok" {
				n++
				slowest = max(slowest, time.Since(start))
			}
		}()
	}
	wg.Wait()
	return n, slowest
}

func TestClusterZKEnsemble(t *testing.T) {
	testserver.RequireZK(t)
	t.Parallel()
	c, record := clusterTestStart(t, clusterConfig{Backend: "zk", Nodes: 3, Proxied: true}, "kill", "pause", "leader", "partition", "reset", "delay", "jitter", "slow")
	addrs := c.Addrs()
	if len(addrs) != 3 || slices.Equal(addrs, c.zk.Servers) {
		t.Fatalf("Addrs() = %q, want 3 proxies", addrs)
	}
	clusterTestZKCreateGet(t, addrs, "/start")
	for _, kind := range c.Faults() {
		f := clusterTestInject(t, c, kind)
		t.Logf("injected %s", f)
		switch kind {
		case "kill", "leader":
			if running := slices.DeleteFunc(c.PIDs(), func(pid int) bool { return pid == 0 }); len(running) != 2 {
				t.Errorf("%s: PIDs %v, want one killed", f, c.PIDs())
			}
			if kind == "leader" && !strings.Contains(f.String(), "leader") {
				t.Errorf("fault %q does not say it killed the leader", f)
			}
		case "pause", "partition":
			if n, _ := clusterTestZKAnswering(addrs, 300*time.Millisecond); n != 2 {
				t.Errorf("%s: %d nodes answer ruok through the proxies, want 2", f, n)
			}
		case "reset":
			if n, _ := clusterTestZKAnswering(addrs, time.Second); n != 0 {
				t.Errorf("%s: %d nodes answer ruok through the proxies, want 0", f, n)
			}
		case "delay":
			if n, slowest := clusterTestZKAnswering(addrs, 2*time.Second); n != 3 || slowest < 2*clusterDelay {
				t.Errorf("%s: %d nodes answer ruok, the slowest in %v", f, n, slowest)
			}
		}
		clusterTestHeal(t, f)
		record()
		clusterTestZKCreateGet(t, addrs, "/after-"+kind)
	}
}

func TestClusterZKStandalone(t *testing.T) {
	testserver.RequireZK(t)
	t.Parallel()
	c, record := clusterTestStart(t, clusterConfig{Backend: "zk"}, "kill", "pause")
	clusterTestRefuses(t, c, "leader", "ensemble")
	if addrs := c.Addrs(); !slices.Equal(addrs, c.zk.Servers) {
		t.Errorf("Addrs() = %q, want the server's %q", addrs, c.zk.Servers)
	}
	for _, kind := range c.Faults() {
		f := clusterTestInject(t, c, kind)
		clusterTestHeal(t, f)
		record()
		clusterTestZKCreateGet(t, c.Addrs(), "/after-"+kind)
	}
}

// clusterTestZKConn connects to one ZooKeeper address only.
func clusterTestZKConn(t *testing.T, addr string) *gozk.Conn {
	t.Helper()
	conn, events, err := gozk.Connect([]string{addr}, 4*time.Second, gozk.WithLogger(clusterTestZKLog{}), gozk.WithLogInfo(false))
	if err != nil {
		t.Fatalf("gozk.Connect(%q): %v", addr, err)
	}
	t.Cleanup(conn.Close)
	go func() {
		for range events {
		}
	}()
	return conn
}

// TestClusterZKLag: with the fault lag, a follower's clients do not see a
// write the leader acknowledged (a stale read), then do, clusterLag or so
// later; every other fault still works with the quorum proxies in place.
func TestClusterZKLag(t *testing.T) {
	testserver.RequireZK(t)
	t.Parallel()
	c, record := clusterTestStart(t, clusterConfig{Backend: "zk", Nodes: 3, Proxied: true, QuorumProxied: true},
		"kill", "pause", "leader", "partition", "reset", "delay", "jitter", "slow", "lag")
	if len(c.peers) != 6 {
		t.Fatalf("%d quorum proxies, want 6 (one per ordered pair of nodes)", len(c.peers))
	}
	addrs := c.Addrs()
	clusterTestZKCreateGet(t, addrs, "/start")
	l, err := c.zk.Leader()
	if err != nil {
		t.Fatal(err)
	}
	f1 := (l + 1) % 3
	writer := clusterTestZKConn(t, addrs[l])
	reader := clusterTestZKConn(t, addrs[f1])
	if _, _, err := reader.Get("/start"); err != nil { // a session on f1
		t.Fatalf("read on node %d: %v", f1, err)
	}
	if _, _, err := writer.Get("/start"); err != nil {
		t.Fatalf("read on node %d: %v", l, err)
	}
	f := clusterTestInject(t, c, "lag")
	t.Logf("injected %s", f)
	if want := c.zk.NodeName(f1); !strings.Contains(f.String(), "lag "+want) {
		t.Fatalf("lag picked another follower than %s, the one with clients while the leader has some too: %s", want, f)
	}
	stale := 0
	for i := range 5 {
		path := fmt.Sprintf("/lagged-%d", i)
		if _, err := writer.Create(path, nil, 0, gozk.WorldACL(gozk.PermAll)); err != nil {
			t.Fatalf("create %s on the leader: %v", path, err)
		}
		acked := time.Now()
		ok, _, err := reader.Exists(path)
		if err != nil {
			t.Fatalf("exists %s on the lagging follower: %v", path, err)
		}
		if !ok {
			stale++
		}
		for !ok && time.Since(acked) < 10*time.Second {
			ok, _, err = reader.Exists(path)
			if err != nil {
				t.Fatalf("exists %s on the lagging follower: %v", path, err)
			}
		}
		t.Logf("%s: the follower showed it %v after the leader acknowledged it", path, time.Since(acked).Round(time.Millisecond))
		if !ok {
			t.Fatalf("the lagging follower never showed %s", path)
		}
	}
	if stale == 0 {
		t.Errorf("the lagging follower showed every acknowledged write at once: no lag")
	}
	clusterTestHeal(t, f)
	for _, kind := range c.Faults() {
		if kind == "lag" {
			continue
		}
		f := clusterTestInject(t, c, kind)
		clusterTestHeal(t, f)
		record()
		clusterTestZKCreateGet(t, addrs, "/after-"+kind)
	}
}
