package testserver

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// redisReadyTimeout bounds how long StartRedis and Restart wait for PONG.
const redisReadyTimeout = 10 * time.Second

// RequireRedis skips the test when redis-server is not in PATH, or fails it
// when the environment variable CI is "true". StartRedis calls it.
func RequireRedis(t testing.TB) {
	t.Helper()
	requireServer(t, redisMissing())
}

// redisMissing says what is missing to run Redis, or "".
func redisMissing() string {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return "redis-server is not installed (not found in PATH; Debian package redis-server)"
	}
	return ""
}

// RedisOptions configures StartRedis. The zero value is a plain server.
type RedisOptions struct {
	// User and Password set up authentication. With User set, an ACL user of
	// that name gets all permissions (+@all ~* &*) and the password (none,
	// "nopass", when Password is empty), and the default user is disabled.
	// With only Password set, it is the default user's password
	// (requirepass).
	User, Password string

	// TLS makes the server speak TLS only: the plaintext port is disabled and
	// Addr is the tls-port. The helper generates a self-signed CA and a
	// server certificate for 127.0.0.1 and localhost into Dir; clients do not
	// need certificates of their own (tls-auth-clients no).
	TLS bool

	// Args are extra redis.conf lines, appended after the helper's own (so
	// they override them), e.g. "maxmemory 10mb".
	Args []string
}

// Redis is a redis-server started by StartRedis.
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

	tlsConf   *tls.Config
	ports     *ports
	t         testing.TB
	tailShown bool // a failure message already showed the log's tail

	mu sync.Mutex
	p  *proc
}

// StartRedis starts a redis-server on a free 127.0.0.1 port with a fresh
// directory, waits (up to 10 s) until it answers PING, and stops it when the
// test ends. It skips or fails the test like RequireRedis when redis-server
// is missing, and fails it if the server does not come up.
func StartRedis(t testing.TB, opts RedisOptions) *Redis {
	t.Helper()
	if !requireServer(t, redisMissing()) {
		return nil
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("testserver: %v", err)
	}
	r := &Redis{Dir: t.TempDir(), User: opts.User, Password: opts.Password, t: t}
	t.Cleanup(r.cleanup)
	if opts.TLS {
		r.CAFile, r.tlsConf, err = writeTLSFiles(r.Dir)
		if err != nil {
			t.Fatalf("testserver: generating TLS certificates: %v", err)
		}
	}
	const attempts = 5
	for attempt := 1; ; attempt++ {
		ps, err := reservePorts(1)
		if err != nil {
			t.Fatalf("testserver: %v", err)
		}
		r.ports = ps
		r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ps.base))
		conf := filepath.Join(r.Dir, "redis.conf")
		if err := os.WriteFile(conf, []byte(redisConf(r.Dir, ps.base, opts)), 0o644); err != nil {
			t.Fatalf("testserver: %v", err)
		}
		p := &proc{
			name:    "redis-server " + r.Addr,
			path:    path,
			args:    []string{conf},
			dir:     r.Dir,
			logPath: filepath.Join(r.Dir, "server.log"),
		}
		r.mu.Lock()
		r.p = p
		r.mu.Unlock()
		if err := p.start(); err != nil {
			t.Fatalf("testserver: %v", err)
		}
		err = r.waitReady(p)
		if err == nil {
			return r
		}
		stopErr := p.kill()
		if bindFailure(p) && attempt < attempts && stopErr == nil {
			t.Logf("testserver: %s could not bind its port, trying another one", p.name)
			ps.release()
			continue
		}
		r.tailShown = true
		t.Fatalf("testserver: %s did not answer PING within %v: %v (kill: %v)\n--- tail of %s:\n%s",
			p.name, redisReadyTimeout, err, stopErr, p.logPath, p.logTail(40))
	}
}

// redisConf returns the redis.conf of a server.
func redisConf(dir string, port int, opts RedisOptions) string {
	var b strings.Builder
	line := func(words ...string) { b.WriteString(strings.Join(words, " ") + "\n") }
	line("bind", "127.0.0.1")
	if opts.TLS {
		line("port", "0")
		line("tls-port", strconv.Itoa(port))
		line("tls-cert-file", confQuote(filepath.Join(dir, "server.crt")))
		line("tls-key-file", confQuote(filepath.Join(dir, "server.key")))
		line("tls-ca-cert-file", confQuote(filepath.Join(dir, "ca.crt")))
		line("tls-auth-clients", "no")
	} else {
		line("port", strconv.Itoa(port))
	}
	line("dir", confQuote(dir))
	line("daemonize", "no")
	line("logfile", `""`)
	line("appendonly", "yes")
	line("appendfsync", "always")
	line("save", `""`)
	switch {
	case opts.User != "" && opts.Password != "":
		line("user", confQuote(opts.User), "on", confQuote(">"+opts.Password), "~*", "&*", "+@all")
		line("user", "default", "off")
	case opts.User != "":
		line("user", confQuote(opts.User), "on", "nopass", "~*", "&*", "+@all")
		line("user", "default", "off")
	case opts.Password != "":
		line("requirepass", confQuote(opts.Password))
	}
	for _, a := range opts.Args {
		line(a)
	}
	return b.String()
}

// confQuote quotes s as one redis.conf argument.
func confQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, "\\x%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func (r *Redis) proc() *proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p
}

// waitReady polls PING until PONG, the process exits, or the deadline.
func (r *Redis) waitReady(p *proc) error {
	ok, err := waitUntil(redisReadyTimeout, func() bool { return p.current() == nil }, func() (bool, error) {
		err := r.Ping(time.Second)
		return err == nil, err
	})
	if ok {
		return nil
	}
	if why := p.exitedOnItsOwn(); why != "" {
		return fmt.Errorf("server exited (%s); last PING: %v", why, err)
	}
	if err == nil {
		err = errors.New("timed out")
	}
	return err
}

// cleanup stops the server at the end of the test and releases its port.
func (r *Redis) cleanup() {
	t := r.t
	p := r.proc()
	if p != nil {
		if why := p.exitedOnItsOwn(); why != "" {
			t.Logf("testserver: %s had exited by itself before the end of the test: %s", p.name, why)
		}
		if err := p.stop(stopGrace); err != nil {
			t.Errorf("testserver: stopping %s: %v", p.name, err)
		}
		if t.Failed() && !r.tailShown {
			t.Logf("testserver: tail of %s:\n%s", p.logPath, p.logTail(40))
		}
	}
	if r.ports != nil {
		r.ports.release()
	}
}

// ClientTLS returns a TLS configuration for clients of this server (trusting
// its CA, server name 127.0.0.1), a new one on each call, or nil without TLS.
func (r *Redis) ClientTLS() *tls.Config {
	if r.tlsConf == nil {
		return nil
	}
	return r.tlsConf.Clone()
}

// PID returns the PID of the running server (also its process group id), or
// 0 when it is not running.
func (r *Redis) PID() int { return r.proc().pid() }

// Kill sends SIGKILL to the server's process group and waits until it has
// exited. It does nothing when the server is not running.
func (r *Redis) Kill(t testing.TB) {
	t.Helper()
	r.proc().locked(t, (*proc).kill)
}

// Stop sends SIGTERM to the server's process group (and SIGCONT, should it be
// paused), waits until it has exited, and kills it if it has not within a few
// seconds. It does nothing when the server is not running.
func (r *Redis) Stop(t testing.TB) {
	t.Helper()
	r.proc().locked(t, (*proc).stopGracefully)
}

// Pause sends SIGSTOP to the server's process group and returns once it is
// stopped: connections are still accepted by the kernel, but nothing is
// answered until Resume.
func (r *Redis) Pause(t testing.TB) {
	t.Helper()
	r.proc().locked(t, (*proc).pause)
}

// Resume sends SIGCONT to the server's process group.
func (r *Redis) Resume(t testing.TB) {
	t.Helper()
	r.proc().locked(t, (*proc).resume)
}

// Restart starts the server again on the same port with the same directory,
// so the data written before is still there, and waits until it answers
// PING. A server that is still running is stopped first (SIGTERM).
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	p := r.proc()
	p.op.Lock()
	defer p.op.Unlock()
	err := p.restart(r.waitReady)
	var nr *notReady
	switch {
	case errors.As(err, &nr):
		r.tailShown = true
		t.Fatalf("testserver: restarted %s did not answer PING within %v: %v\n--- tail of %s:\n%s",
			p.name, redisReadyTimeout, nr, p.logPath, p.logTail(40))
	case err != nil:
		t.Fatalf("testserver: %v", err)
	}
}

// Ping connects (with TLS and AUTH as configured), sends PING and expects
// PONG, all within timeout. It returns an error otherwise (a net.Error with
// Timeout() true when the server does not answer in time, e.g. paused).
func (r *Redis) Ping(timeout time.Duration) error {
	c, err := r.dial(timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if r.Password != "" || r.User != "" {
		args := []string{"AUTH", r.Password}
		if r.User != "" {
			args = []string{"AUTH", r.User, r.Password}
		}
		if _, err := c.do(args...); err != nil {
			return fmt.Errorf("AUTH: %w", err)
		}
	}
	v, err := c.do("PING")
	if err != nil {
		return err
	}
	if v != "PONG" {
		return fmt.Errorf("PING: unexpected reply %q", v)
	}
	return nil
}

// respConn is a minimal RESP2 client: enough to wait for a server and to
// test this package.
type respConn struct {
	net.Conn
	br *bufio.Reader
}

// dial connects to the server, over TLS if it serves TLS, with every
// operation on the connection bounded by timeout.
func (r *Redis) dial(timeout time.Duration) (*respConn, error) {
	d := &net.Dialer{Timeout: timeout, Deadline: time.Now().Add(timeout)}
	var c net.Conn
	var err error
	if r.tlsConf != nil {
		c, err = tls.DialWithDialer(d, "tcp", r.Addr, r.ClientTLS())
	} else {
		c, err = d.Dial("tcp", r.Addr)
	}
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	return &respConn{Conn: c, br: bufio.NewReader(c)}, nil
}

// respError is an error reply (-ERR ..., -WRONGPASS ...).
type respError string

func (e respError) Error() string { return string(e) }

// do sends a command and returns its reply: simple strings, bulk strings and
// integers as text, a nil bulk as "(nil)", arrays joined with newlines, and
// error replies as a respError.
func (c *respConn) do(args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return "", err
	}
	return c.read()
}

func (c *respConn) read() (string, error) {
	line, err := c.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("empty RESP line")
	}
	body := line[1:]
	switch line[0] {
	case '+', ':':
		return body, nil
	case '-':
		return "", respError(body)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil {
			return "", fmt.Errorf("bad bulk length %q", body)
		}
		if n < 0 {
			return "(nil)", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.br, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return "", fmt.Errorf("bad array length %q", body)
		}
		var items []string
		for i := 0; i < n; i++ {
			s, err := c.read()
			if err != nil {
				return "", err
			}
			items = append(items, s)
		}
		return strings.Join(items, "\n"), nil
	}
	return "", fmt.Errorf("unexpected RESP line %q", line)
}

// writeTLSFiles generates a CA and a server certificate for 127.0.0.1, ::1
// and localhost into dir, and returns the CA file and a client config.
func writeTLSFiles(dir string) (caFile string, client *tls.Config, err error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "epochal testserver CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", nil, err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", nil, err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return "", nil, err
	}
	srvKeyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		return "", nil, err
	}
	caFile = filepath.Join(dir, "ca.crt")
	files := []struct {
		name, typ string
		der       []byte
		mode      os.FileMode
	}{
		{"ca.crt", "CERTIFICATE", caDER, 0o644},
		{"server.crt", "CERTIFICATE", srvDER, 0o644},
		{"server.key", "PRIVATE KEY", srvKeyDER, 0o600},
	}
	for _, f := range files {
		data := pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der})
		if err := os.WriteFile(filepath.Join(dir, f.name), data, f.mode); err != nil {
			return "", nil, err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return caFile, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, nil
}
