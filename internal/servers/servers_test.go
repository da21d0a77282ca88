package servers

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// skipWithout skips the test when a server is missing (internal/testkit/testserver
// fails instead under CI=true; it cannot be used here, as it imports this
// package).
func skipWithout(t *testing.T, missing string) {
	t.Helper()
	if missing != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s", missing)
		}
		t.Skipf("%s", missing)
	}
}

// gone fails t if pid or its process group still exists.
func gone(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("pid %d still exists (kill -0: %v)", pid, err)
	}
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process group %d still exists (kill -0: %v)", pid, err)
	}
}

func TestRedisCloseRemovesItsProcessAndDir(t *testing.T) {
	t.Parallel()
	skipWithout(t, RedisMissing())
	r, err := StartRedis(RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pid := r.PID()
	if pid == 0 {
		t.Fatal("PID() = 0 for a running server")
	}
	if !strings.HasPrefix(r.String(), "redis-server 127.0.0.1:") {
		t.Errorf("String() = %q", r.String())
	}
	c := r.Client(2 * time.Second)
	if v, err := c.Do(t.Context(), "SET", "k", "v").Text(); err != nil || v != "OK" {
		t.Fatalf("SET: %q, %v", v, err)
	}
	if v, err := c.Get(t.Context(), "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET: %q, %v", v, err)
	}
	var re goredis.Error
	if err := c.Do(t.Context(), "NOSUCHCOMMAND").Err(); !errors.As(err, &re) || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown command: %v, want the server's error reply", err)
	}
	c.Close()
	if err := r.PingVia("127.0.0.1:1", 500*time.Millisecond); err == nil {
		t.Errorf("PingVia a closed port succeeded")
	}

	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil { // paused: Close must still stop it
		t.Fatal(err)
	}
	gone(t, pid)
	if _, err := os.Stat(r.Dir); !os.IsNotExist(err) {
		t.Errorf("own directory %s still there after Close: %v", r.Dir, err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := r.Restart(); err == nil {
		t.Errorf("Restart after Close succeeded")
	}
	if err := r.Kill(); err != nil {
		t.Errorf("Kill after Close: %v", err)
	}
	if err := r.Resume(); err == nil {
		t.Errorf("Resume after Close succeeded")
	}
}

func TestRedisNotServingKeepsGivenDir(t *testing.T) {
	t.Parallel()
	skipWithout(t, RedisMissing())
	dir := filepath.Join(t.TempDir(), "redis")
	r, err := StartRedis(RedisOptions{Dir: dir, Args: []string{"no-such-directive yes"}})
	if err == nil {
		r.Close()
		t.Fatal("a server with a bad redis.conf started")
	}
	var ns *NotServingError
	if !errors.As(err, &ns) || !strings.Contains(ns.Logs, "no-such-directive") || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("error %v; want a *NotServingError that the server exited, with its log", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "server.log")); err != nil {
		t.Errorf("given directory not kept: %v", err)
	}
}

func TestZKStandaloneErrorsAndClose(t *testing.T) {
	t.Parallel()
	skipWithout(t, ZKMissing())
	if _, err := StartZK(0, ZKOptions{}); err == nil {
		t.Errorf("StartZK(0) succeeded")
	}
	z, err := StartZK(1, ZKOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	if z.Nodes() != 1 || z.ConnectString() != z.Servers[0] {
		t.Errorf("Nodes() = %d, ConnectString() = %q, Servers = %q", z.Nodes(), z.ConnectString(), z.Servers)
	}
	if l, err := z.Leader(); err != nil || l != 0 {
		t.Errorf("Leader() = %d, %v; want 0", l, err)
	}
	if m := ModeAt(z.Servers[0]); m != "standalone" {
		t.Errorf("ModeAt = %q, want standalone", m)
	}
	for name, err := range map[string]error{
		"Kill(1)": z.Kill(1), "Stop(-1)": z.Stop(-1), "Pause(1)": z.Pause(1), "Resume(1)": z.Resume(1), "Restart(1)": z.Restart(1),
	} {
		if err == nil || !strings.Contains(err.Error(), "no ZooKeeper node") {
			t.Errorf("%s: %v, want no such node", name, err)
		}
	}
	if _, err := z.FourLetter(1, "ruok", time.Second); err == nil {
		t.Errorf("FourLetter(1) succeeded")
	}

	if err := z.Pause(0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := z.Leader(); err == nil || !strings.Contains(err.Error(), "quorum") {
		t.Errorf("Leader() of a paused server: %v, want no quorum", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Leader() without quorum took %v, want an error at once", d)
	}
	if err := z.Resume(0); err != nil {
		t.Fatal(err)
	}
	if err := z.Kill(0); err != nil {
		t.Fatal(err)
	}
	if err := z.Restart(0); err != nil {
		t.Fatal(err)
	}
	pid := z.PID(0)
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	gone(t, pid)
	if _, err := os.Stat(z.Dir); !os.IsNotExist(err) {
		t.Errorf("own directory %s still there after Close: %v", z.Dir, err)
	}
	if z.PID(0) != 0 {
		t.Errorf("PID(0) after Close = %d", z.PID(0))
	}
}

// Not parallel: it changes a package variable.
func TestZKMissing(t *testing.T) {
	old := ZKJar
	ZKJar = "/nonexistent/zookeeper.jar"
	t.Cleanup(func() { ZKJar = old })
	if m := ZKMissing(); !strings.Contains(m, ZKJar) {
		t.Errorf("ZKMissing() = %q, want it to name %s", m, ZKJar)
	}
	if z, err := StartZK(1, ZKOptions{Dir: filepath.Join(t.TempDir(), "zk")}); err == nil || !strings.Contains(err.Error(), "zookeeper.jar") {
		if z != nil {
			z.Close()
		}
		t.Errorf("StartZK without ZooKeeper: %v, want an error naming the jar", err)
	}
}

func TestRedisConfArgsAndQuoting(t *testing.T) {
	got := redisConf(`/tmp/a "b"`, 1234, RedisOptions{User: "u", Password: `p"w\`, Args: []string{"maxmemory 10mb"}})
	for _, want := range []string{
		"bind 127.0.0.1\n", "port 1234\n", `dir "/tmp/a \"b\""` + "\n",
		"appendonly yes\n", "appendfsync always\n", "save \"\"\n",
		`user "u" on ">p\"w\\" ~* &* +@all` + "\n", "user default off\n",
		"maxmemory 10mb\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("redis.conf lacks %q:\n%s", want, got)
		}
	}
	clusterConf := redisConf("/d", 99, RedisOptions{Cluster: true})
	for _, want := range []string{"port 99\n", "cluster-enabled yes\n", "cluster-port 100\n", "cluster-config-file nodes.conf\n"} {
		if !strings.Contains(clusterConf, want) {
			t.Errorf("cluster redis.conf lacks %q:\n%s", want, clusterConf)
		}
	}
	tlsConf := redisConf("/d", 99, RedisOptions{TLS: true})
	for _, want := range []string{"port 0\n", "tls-port 99\n", "tls-auth-clients no\n", `tls-ca-cert-file "/d/ca.crt"`} {
		if !strings.Contains(tlsConf, want) {
			t.Errorf("TLS redis.conf lacks %q:\n%s", want, tlsConf)
		}
	}
}

func TestReservePortsAreDistinctAndFree(t *testing.T) {
	a, err := reservePorts(9)
	if err != nil {
		t.Fatal(err)
	}
	defer a.release()
	b, err := reservePorts(9)
	if err != nil {
		t.Fatal(err)
	}
	defer b.release()
	if a.base < b.base+b.n && b.base < a.base+a.n {
		t.Errorf("overlapping reservations [%d,%d) and [%d,%d)", a.base, a.base+a.n, b.base, b.base+b.n)
	}
	if _, ok := lockPort(a.base + 4); ok {
		t.Errorf("port %d reserved twice", a.base+4)
	}
	for p := b.base; p < b.base+b.n; p++ {
		if !portFree(p) {
			t.Errorf("reserved port %d is not free to bind", p)
		}
	}
}

// TestSentinelSetFailsOver starts a master, a replica and three
// sentinels, writes a key, checks that a set without the master refuses a
// failover, forces a failover and checks that the replica
// became the master with the key, that the old master rejoined as its
// replica, and that Close leaves no process.
func TestSentinelSetFailsOver(t *testing.T) {
	skipWithout(t, RedisMissing())
	set, err := StartSentinelSet(SentinelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	m0, err := set.MasterAddr(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m0 != set.Nodes[0].Addr {
		t.Fatalf("master %s, want %s", m0, set.Nodes[0].Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := set.Nodes[0].Client(5 * time.Second)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d, %v", n, err)
	}
	c.Close()
	// A set that does not hold the master the sentinels name refuses
	// before asking for a failover (it returned a nil old master, and
	// the caller printed it).
	stray := &SentinelSet{Sentinels: set.Sentinels}
	if old, cur, err := stray.Failover(); err == nil || old != nil || cur != nil {
		t.Fatalf("Failover of a set without the master: %v, %v, %v; want an error", old, cur, err)
	}
	if m, err := set.MasterAddr(time.Second); err != nil || m != m0 {
		t.Fatalf("after a refused Failover the master is %s (%v), want %s still", m, err, m0)
	}
	old, cur, err := set.Failover()
	if err != nil {
		t.Fatal(err)
	}
	if old != set.Nodes[0] || cur != set.Nodes[1] {
		t.Fatalf("failover from %v to %v, want %v to %v", old, cur, set.Nodes[0], set.Nodes[1])
	}
	if err := set.WaitSettled(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if role, err := set.Nodes[0].Role(time.Second); err != nil || role != "slave" {
		t.Errorf("old master's role %q (%v), want slave", role, err)
	}
	c = cur.Client(5 * time.Second)
	defer c.Close()
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Errorf("GET k on the new master: %q, %v", v, err)
	}
	var pids []int
	for _, n := range set.Nodes {
		pids = append(pids, n.PID())
	}
	for _, s := range set.Sentinels {
		pids = append(pids, s.PID())
	}
	if err := set.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		gone(t, pid)
	}
}
