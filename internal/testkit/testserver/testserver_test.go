package testserver

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/internal/servers"
)

// expectGone registers, before any server is started, a cleanup that runs
// after the servers' own cleanups and checks that every recorded process and
// its process group are gone. It returns the function recording a PID.
func expectGone(t *testing.T) func(pid int) {
	t.Helper()
	var pids []int
	t.Cleanup(func() {
		if len(pids) == 0 {
			t.Errorf("no PID was recorded")
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("pid %d still exists after cleanup (kill -0: %v)", pid, err)
			}
			if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("process group %d still exists after cleanup (kill -0: %v)", pid, err)
			}
		}
	})
	return func(pid int) {
		t.Helper()
		if pid <= 0 {
			t.Fatalf("bad PID %d", pid)
		}
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("pid %d is not running: %v", pid, err)
		}
		pids = append(pids, pid)
	}
}

// redisDo opens a connection to r, sends one command and returns the reply.
func redisDo(t *testing.T, r *Redis, args ...string) (string, error) {
	t.Helper()
	c := r.s.Client(5 * time.Second)
	defer c.Close()
	return doText(t, c, args...)
}

// doText sends one command on c and returns its reply as text.
func doText(t *testing.T, c *goredis.Client, args ...string) (string, error) {
	t.Helper()
	a := make([]any, len(args))
	for i, s := range args {
		a[i] = s
	}
	return c.Do(t.Context(), a...).Text()
}

func TestRedisDataSurvivesKillAndStop(t *testing.T) {
	t.Parallel()
	record := expectGone(t)
	r := StartRedis(t, RedisOptions{})
	record(r.PID())
	if r.ClientTLS() != nil || r.CAFile != "" {
		t.Errorf("plain server: ClientTLS() = %v, CAFile = %q; want nil, empty", r.ClientTLS(), r.CAFile)
	}
	if !strings.HasPrefix(r.Addr, "127.0.0.1:") {
		t.Errorf("Addr = %q, want 127.0.0.1:port", r.Addr)
	}
	if v, err := redisDo(t, r, "SET", "k1", "before kill"); err != nil || v != "OK" {
		t.Fatalf("SET: %q, %v", v, err)
	}

	oldPID := r.PID()
	r.Kill(t)
	if err := syscall.Kill(oldPID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("after Kill, pid %d: kill -0 = %v, want ESRCH", oldPID, err)
	}
	if r.PID() != 0 {
		t.Errorf("PID() after Kill = %d, want 0", r.PID())
	}
	if err := r.Ping(time.Second); err == nil {
		t.Fatalf("PING answered after Kill")
	}
	r.Kill(t) // killing a dead server does nothing

	addr := r.Addr
	r.Restart(t)
	record(r.PID())
	if r.Addr != addr {
		t.Errorf("Addr changed across Restart: %q -> %q", addr, r.Addr)
	}
	if r.PID() == oldPID {
		t.Errorf("Restart kept pid %d", oldPID)
	}
	if v, err := redisDo(t, r, "GET", "k1"); err != nil || v != "before kill" {
		t.Fatalf("GET after SIGKILL and restart: %q, %v; want %q", v, err, "before kill")
	}

	if v, err := redisDo(t, r, "SET", "k2", "before stop"); err != nil || v != "OK" {
		t.Fatalf("SET: %q, %v", v, err)
	}
	r.Stop(t)
	r.Stop(t) // idempotent
	r.Restart(t)
	record(r.PID())
	for k, want := range map[string]string{"k1": "before kill", "k2": "before stop"} {
		if v, err := redisDo(t, r, "GET", k); err != nil || v != want {
			t.Errorf("GET %s after stop and restart: %q, %v; want %q", k, v, err, want)
		}
	}
}

func TestRedisPauseResume(t *testing.T) {
	t.Parallel()
	record := expectGone(t)
	r := StartRedis(t, RedisOptions{})
	record(r.PID())

	r.Pause(t)
	start := time.Now()
	err := r.Ping(300 * time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("PING to a paused server: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("PING timeout took %v", d)
	}
	r.Resume(t)
	if err := r.Ping(2 * time.Second); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}

	// Left paused on purpose: cleanup must still stop it.
	r.Pause(t)
}

func TestRedisRestartRetriesWhileItsPortIsTaken(t *testing.T) {
	t.Parallel()
	record := expectGone(t)
	r := StartRedis(t, RedisOptions{})
	record(r.PID())
	if v, err := redisDo(t, r, "SET", "k", "v"); err != nil || v != "OK" {
		t.Fatalf("SET: %q, %v", v, err)
	}
	r.Kill(t)

	// Something else takes the port while the server is down, and lets it go
	// once the restarted server has failed to bind it.
	l, err := net.Listen("tcp", r.Addr)
	if err != nil {
		t.Fatalf("taking %s: %v", r.Addr, err)
	}
	logPath := r.Dir + "/server.log"
	sawBindFailure := make(chan bool, 1)
	go func() {
		defer l.Close()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if b, _ := os.ReadFile(logPath); strings.Contains(string(b), "Address already in use") {
				sawBindFailure <- true
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		sawBindFailure <- false
	}()
	r.Restart(t)
	record(r.PID())
	if !<-sawBindFailure {
		t.Fatalf("the restarted server never reported its port as taken")
	}
	if v, err := redisDo(t, r, "GET", "k"); err != nil || v != "v" {
		t.Fatalf("GET after the retried restart: %q, %v; want v", v, err)
	}
}

func TestRedisACLUser(t *testing.T) {
	t.Parallel()
	record := expectGone(t)
	r := StartRedis(t, RedisOptions{User: "alice", Password: "s3cret pass"})
	record(r.PID())
	if err := r.Ping(2 * time.Second); err != nil {
		t.Fatalf("PING with AUTH: %v", err)
	}
	try := func(args ...string) (string, error) {
		// Not authenticated: every command as it comes.
		c := servers.RedisClient(r.Addr, r.ClientTLS(), "", "", 5*time.Second)
		defer c.Close()
		return doText(t, c, args...)
	}
	if v, err := try("AUTH", "alice", "s3cret pass"); err != nil || v != "OK" {
		t.Errorf("AUTH with the right password: %q, %v; want OK", v, err)
	}
	var re goredis.Error
	if _, err := try("AUTH", "alice", "wrong"); !errors.As(err, &re) || !strings.HasPrefix(err.Error(), "WRONGPASS") {
		t.Errorf("AUTH with a wrong password: %v; want a WRONGPASS error reply", err)
	}
	if _, err := try("PING"); !errors.As(err, &re) || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Errorf("PING without AUTH: %v; want a NOAUTH error reply", err)
	}
	if _, err := try("AUTH", "default", ""); err == nil {
		t.Errorf("AUTH as the default user succeeded; it should be disabled")
	}
	if v, err := redisDo(t, r, "ACL", "WHOAMI"); err != nil || v != "alice" {
		t.Errorf("ACL WHOAMI: %q, %v; want alice", v, err)
	}
}

func TestRedisTLS(t *testing.T) {
	t.Parallel()
	record := expectGone(t)
	r := StartRedis(t, RedisOptions{TLS: true, Password: "pw"})
	record(r.PID())
	cfg := r.ClientTLS()
	if cfg == nil || r.CAFile == "" {
		t.Fatalf("TLS server: ClientTLS() = %v, CAFile = %q", cfg, r.CAFile)
	}

	rc := servers.RedisClient(r.Addr, cfg, "", "", 5*time.Second)
	if v, err := doText(t, rc, "AUTH", "pw"); err != nil || v != "OK" {
		t.Fatalf("AUTH over TLS: %q, %v", v, err)
	}
	if v, err := doText(t, rc, "PING"); err != nil || v != "PONG" {
		t.Fatalf("PING over TLS: %q, %v", v, err)
	}
	rc.Close()

	// Without our CA the certificate is not trusted.
	if c, err := tls.Dial("tcp", r.Addr, &tls.Config{ServerName: "127.0.0.1"}); err == nil {
		c.Close()
		t.Errorf("TLS dial without the CA succeeded")
	}

	// A plaintext client gets nothing useful from the TLS port.
	pc, err := net.DialTimeout("tcp", r.Addr, 5*time.Second)
	if err != nil {
		t.Fatalf("plain dial: %v", err)
	}
	defer pc.Close()
	_ = pc.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(pc, "*1\r\n$4\r\nPING\r\n"); err == nil {
		line, err := bufio.NewReader(pc).ReadString('\n')
		if err == nil || strings.Contains(line, "PONG") {
			t.Errorf("plaintext PING on the TLS port got %q, %v; want no reply", line, err)
		}
	}

	// Restart keeps TLS and the certificates.
	r.Kill(t)
	r.Restart(t)
	record(r.PID())
	if err := r.Ping(2 * time.Second); err != nil {
		t.Fatalf("PING over TLS after restart: %v", err)
	}
}

func TestZKStandalone(t *testing.T) {
	t.Parallel()
	record := expectGone(t)
	z := StartZK(t)
	record(z.PID(0))
	if len(z.Servers) != 1 {
		t.Fatalf("Servers = %q, want one", z.Servers)
	}
	if s, err := z.FourLetter(0, "ruok", 2*time.Second); err != nil || s != "imok" {
		t.Fatalf("ruok: %q, %v; want imok", s, err)
	}
	if m := z.Mode(0); m != "standalone" {
		t.Errorf("Mode(0) = %q, want standalone", m)
	}
	if l := z.Leader(t); l != 0 {
		t.Errorf("Leader = %d, want 0", l)
	}

	z.Pause(t, 0)
	if _, err := z.FourLetter(0, "ruok", 300*time.Millisecond); err == nil {
		t.Errorf("ruok answered by a paused server")
	}
	if m := z.Mode(0); m != "" {
		t.Errorf("Mode of a paused server = %q, want empty", m)
	}
	z.Resume(t, 0)
	if s, err := z.FourLetter(0, "ruok", 2*time.Second); err != nil || s != "imok" {
		t.Fatalf("ruok after Resume: %q, %v; want imok", s, err)
	}

	old := z.PID(0)
	z.Kill(t, 0)
	if err := syscall.Kill(old, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("after Kill, pid %d: kill -0 = %v, want ESRCH", old, err)
	}
	z.Restart(t, 0)
	record(z.PID(0))
	if m := z.Mode(0); m != "standalone" {
		t.Errorf("Mode(0) after Restart = %q, want standalone", m)
	}
}

func TestZKEnsembleLeaderFailover(t *testing.T) {
	t.Parallel()
	record := expectGone(t)
	start := time.Now()
	z := StartZKEnsemble(t, 3)
	t.Logf("3-node ensemble serving after %v: %s", time.Since(start).Round(time.Millisecond), z.ConnectString())
	for i := range 3 {
		record(z.PID(i))
	}
	if len(z.Servers) != 3 {
		t.Fatalf("Servers = %q, want 3", z.Servers)
	}

	leader := z.Leader(t)
	if leader < 0 || leader >= 3 {
		t.Fatalf("Leader = %d", leader)
	}
	followers := 0
	for i := range 3 {
		if i != leader && z.Mode(i) == "follower" {
			followers++
		}
	}
	if followers != 2 {
		t.Errorf("%d followers besides leader %d, want 2", followers, leader)
	}

	killedAt := time.Now()
	z.Kill(t, leader)
	if z.PID(leader) != 0 {
		t.Errorf("PID(%d) after Kill = %d, want 0", leader, z.PID(leader))
	}
	newLeader := z.Leader(t)
	t.Logf("leader %d killed; node %d leads after %v", leader, newLeader, time.Since(killedAt).Round(time.Millisecond))
	if newLeader == leader || newLeader < 0 || newLeader >= 3 {
		t.Fatalf("new leader = %d, old one was %d", newLeader, leader)
	}

	restartAt := time.Now()
	z.Restart(t, leader)
	record(z.PID(leader))
	t.Logf("node %d rejoined after %v", leader, time.Since(restartAt).Round(time.Millisecond))
	if m := z.Mode(leader); m != "follower" {
		t.Errorf("restarted node %d: mode %q, want follower", leader, m)
	}
	if l := z.Leader(t); l != newLeader {
		t.Errorf("leader after the rejoin = %d, want %d", l, newLeader)
	}
}

// recordingTB stands in for a test, to observe Fatalf and Skipf, which
// return here instead of ending the goroutine.
type recordingTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordingTB) Helper()                      {}
func (r *recordingTB) Fatalf(f string, args ...any) { r.fatal = fmt.Sprintf(f, args...) }
func (r *recordingTB) Skipf(f string, args ...any)  { r.skip = fmt.Sprintf(f, args...) }
func (r *recordingTB) Errorf(f string, args ...any) { r.fatal = fmt.Sprintf(f, args...) }
func (r *recordingTB) Cleanup(func())               { panic("unexpected Cleanup: something was started") }
func (r *recordingTB) TempDir() string              { panic("unexpected TempDir: something was started") }

// Not parallel: it changes the environment and a package variable.
func TestMissingServerSkipsOrFailsUnderCI(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no redis-server, no java here
	oldJar := servers.ZKJar
	servers.ZKJar = "/nonexistent/zookeeper.jar"
	t.Cleanup(func() { servers.ZKJar = oldJar })

	for _, tc := range []struct {
		name    string
		require func(testing.TB)
		start   func(testing.TB)
		what    string
	}{
		{"redis", RequireRedis, func(t testing.TB) { StartRedis(t, RedisOptions{}) }, "redis-server"},
		{"zk", RequireZK, func(t testing.TB) { StartZK(t) }, "zookeeper.jar"},
	} {
		t.Setenv("CI", "")
		rec := &recordingTB{TB: t}
		tc.require(rec)
		if rec.fatal != "" || !strings.Contains(rec.skip, tc.what) || !strings.Contains(rec.skip, "make test") {
			t.Errorf("%s without CI: skip %q, fatal %q; want a skip naming %s and make test", tc.name, rec.skip, rec.fatal, tc.what)
		}
		rec = &recordingTB{TB: t}
		tc.start(rec) // must stop after the skip, without starting anything
		if rec.skip == "" {
			t.Errorf("%s: Start without the server did not skip", tc.name)
		}

		t.Setenv("CI", "true")
		rec = &recordingTB{TB: t}
		tc.require(rec)
		if rec.skip != "" || !strings.Contains(rec.fatal, tc.what) || !strings.Contains(rec.fatal, "make test") {
			t.Errorf("%s with CI=true: skip %q, fatal %q; want a failure naming %s and make test", tc.name, rec.skip, rec.fatal, tc.what)
		}
	}
}
