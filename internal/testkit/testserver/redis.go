package testserver

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/epochal/epochal/internal/servers"
)

// RequireRedis skips the test when redis-server is not in PATH, or fails it
// when the environment variable CI is "true". StartRedis calls it.
func RequireRedis(t testing.TB) {
	t.Helper()
	requireServer(t, servers.RedisMissing())
}

// RedisOptions configures StartRedis. The zero value is a plain server. The
// fields are those of [servers.RedisOptions], which documents them.
type RedisOptions struct {
	// User and Password set up authentication (an ACL user, or only the
	// default user's password).
	User, Password string
	// TLS makes the server speak TLS only, with a generated certificate.
	TLS bool
	// Cluster runs it in cluster mode, holding no slots yet.
	Cluster bool
	// Sentinel runs it as a Redis Sentinel; Args say what it monitors.
	Sentinel bool
	// Args are extra redis.conf lines, e.g. "maxmemory 10mb".
	Args []string
}

// Redis is a redis-server started by StartRedis (a [servers.Redis] whose
// lifetime is the test's).
//
// Its data persists across Kill and Restart: the server runs with
// appendonly yes and appendfsync always, so every acknowledged write is on
// disk before the reply.
type Redis struct {
	// Addr is host:port to connect to, e.g. "127.0.0.1:23456". It stays the
	// same across restarts.
	Addr string
	// Dir is the server's own directory: redis.conf, server.log (stdout and
	// stderr of every run), appendonlydir/ and, with TLS, ca.crt,
	// server.crt and server.key. It is removed when the test ends.
	Dir string
	// User and Password are the credentials from RedisOptions, for clients.
	User, Password string
	// CAFile is the PEM file of the CA that signed the server certificate,
	// or "" without TLS.
	CAFile string

	s *servers.Redis
	t testing.TB
	reporter
}

// StartRedis starts a redis-server on a free 127.0.0.1 port with a fresh
// directory, waits (up to 10 s) until it answers PING, and stops it when the
// test ends. It skips or fails the test like RequireRedis when redis-server
// is missing, and fails it if the server does not come up.
func StartRedis(t testing.TB, opts RedisOptions) *Redis {
	t.Helper()
	if !requireServer(t, servers.RedisMissing()) {
		return nil
	}
	r := &Redis{t: t}
	s, err := servers.StartRedis(servers.RedisOptions{
		User: opts.User, Password: opts.Password, TLS: opts.TLS, Cluster: opts.Cluster, Sentinel: opts.Sentinel, Args: opts.Args,
		Dir: t.TempDir(), Logf: t.Logf,
	})
	if err != nil {
		r.check(t, err)
		return nil
	}
	r.s = s
	r.Addr, r.Dir, r.User, r.Password, r.CAFile = s.Addr, s.Dir, s.User, s.Password, s.CAFile
	t.Cleanup(r.cleanup)
	return r
}

// cleanup stops the server at the end of the test and releases its port.
func (r *Redis) cleanup() {
	t := r.t
	if why := r.s.ExitedOnItsOwn(); why != "" {
		t.Logf("testserver: %s had exited by itself before the end of the test: %s", r.s, why)
	}
	if err := r.s.Close(); err != nil {
		t.Errorf("testserver: %v", err)
	}
	if t.Failed() && !r.tailShown {
		t.Logf("testserver: tail of %s:\n%s", r.s.LogPath(), r.s.LogTail(40))
	}
}

// ClientTLS returns a TLS configuration for clients of this server (trusting
// its CA, server name 127.0.0.1), a new one on each call, or nil without TLS.
func (r *Redis) ClientTLS() *tls.Config { return r.s.ClientTLS() }

// PID returns the PID of the running server (also its process group id), or
// 0 when it is not running.
func (r *Redis) PID() int { return r.s.PID() }

// Kill sends SIGKILL to the server's process group and waits until it has
// exited. It does nothing when the server is not running.
func (r *Redis) Kill(t testing.TB) {
	t.Helper()
	r.check(t, r.s.Kill())
}

// Stop sends SIGTERM to the server's process group (and SIGCONT, should it be
// paused), waits until it has exited, and kills it if it has not within a few
// seconds. It does nothing when the server is not running.
func (r *Redis) Stop(t testing.TB) {
	t.Helper()
	r.check(t, r.s.Stop())
}

// Pause sends SIGSTOP to the server's process group and returns once it is
// stopped: connections are still accepted by the kernel, but nothing is
// answered until Resume.
func (r *Redis) Pause(t testing.TB) {
	t.Helper()
	r.check(t, r.s.Pause())
}

// Resume sends SIGCONT to the server's process group.
func (r *Redis) Resume(t testing.TB) {
	t.Helper()
	r.check(t, r.s.Resume())
}

// Restart starts the server again on the same port with the same directory,
// so the data written before is still there, and waits until it answers
// PING. A server that is still running is stopped first (SIGTERM).
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	r.check(t, r.s.Restart())
}

// Ping connects (with TLS and AUTH as configured), sends PING and expects
// PONG, all within timeout. It returns an error otherwise (a net.Error with
// Timeout() true when the server does not answer in time, e.g. paused).
func (r *Redis) Ping(timeout time.Duration) error { return r.s.Ping(timeout) }
