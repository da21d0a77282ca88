package servers

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// redisReadyTimeout bounds how long StartRedis and Restart wait for PONG.
const redisReadyTimeout = 10 * time.Second

// RedisMissing says what is missing to run Redis (redis-server not in PATH),
// or "".
func RedisMissing() string {
	if _, err := redisServer(); err != nil {
		return err.Error()
	}
	return ""
}

// redisServer returns the path of redis-server, or an error saying it is
// not installed.
func redisServer() (string, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redis-server is not installed (not found in PATH; Debian package redis-server)")
	}
	return path, nil
}

// RedisOptions configures StartRedis. The zero value is a plain server in a
// temporary directory.
type RedisOptions struct {
	// User and Password set up authentication. With User set, an ACL user of
	// that name gets all permissions (+@all ~* &*) and the password (none,
	// "nopass", when Password is empty), and the default user is disabled.
	// With only Password set, it is the default user's password
	// (requirepass).
	User, Password string

	// TLS makes the server speak TLS only: the plaintext port is disabled and
	// Addr is the tls-port. StartRedis generates a self-signed CA and a
	// server certificate for 127.0.0.1 and localhost into Dir; clients do not
	// need certificates of their own (tls-auth-clients no).
	TLS bool

	// Cluster runs the server in cluster mode (cluster-enabled yes), its
	// cluster bus on the port after Addr's (reserved with it), its node
	// configuration in Dir/nodes.conf. It starts holding no slots: the
	// caller assigns them (CLUSTER ADDSLOTSRANGE) and introduces nodes to
	// each other (CLUSTER MEET).
	Cluster bool

	// Sentinel runs the server as a Redis Sentinel (redis-server --sentinel):
	// Args give what it monitors, e.g. "sentinel monitor mymaster 127.0.0.1
	// 6379 1" and "sentinel auth-pass mymaster PASSWORD". It rewrites its
	// redis.conf as it learns.
	Sentinel bool

	// Args are extra redis.conf lines, appended after the package's own (so
	// they override them), e.g. "maxmemory 10mb".
	Args []string

	// Dir is the server's directory, created if needed and kept by Close.
	// When empty, StartRedis creates a temporary one, which Close removes.
	Dir string

	// Logf, if not nil, is told about start attempts that are retried.
	Logf func(format string, args ...any)
}

// Redis is a redis-server started by StartRedis. Its methods are safe for
// concurrent use; lifecycle operations (Kill, Stop, Pause, Resume, Restart,
// Close) are serialised.
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
	// server.crt and server.key.
	Dir string
	// User and Password are the credentials from RedisOptions, for clients.
	User, Password string
	// CAFile is the PEM file of the CA that signed the server certificate,
	// or "" without TLS.
	CAFile string

	tlsConf *tls.Config
	ownDir  bool // Dir was created by StartRedis: Close removes it

	mu     sync.Mutex
	p      *proc
	ports  *ports
	closed bool
}

// StartRedis starts a redis-server on a free 127.0.0.1 port, waits (up to
// 10 s) until it answers PING and returns it; the caller must Close it. A
// server that does not come up is killed and its error is a
// *NotServingError holding the tail of its log.
func StartRedis(opts RedisOptions) (*Redis, error) {
	path, err := redisServer()
	if err != nil {
		return nil, err
	}
	dir, own, err := serverDir(opts.Dir, "epochal-redis-")
	if err != nil {
		return nil, err
	}
	r := &Redis{Dir: dir, ownDir: own, User: opts.User, Password: opts.Password}
	if err := r.start(path, opts); err != nil {
		_ = r.Close()
		return nil, err
	}
	return r, nil
}

// start starts the server, on other ports when a port is taken.
func (r *Redis) start(path string, opts RedisOptions) error {
	var err error
	if opts.TLS {
		r.CAFile, r.tlsConf, err = writeTLSFiles(r.Dir)
		if err != nil {
			return fmt.Errorf("generating TLS certificates: %w", err)
		}
	}
	const attempts = 5
	for attempt := 1; ; attempt++ {
		n := 1
		if opts.Cluster {
			n = 2 // the cluster bus too
		}
		ps, err := reservePorts(n)
		if err != nil {
			return err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ps.base))
		conf := filepath.Join(r.Dir, "redis.conf")
		if err := os.WriteFile(conf, []byte(redisConf(r.Dir, ps.base, opts)), 0o644); err != nil {
			ps.release()
			return err
		}
		args := []string{conf}
		if opts.Sentinel {
			args = append(args, "--sentinel")
		}
		p := &proc{
			name:    "redis-server " + addr,
			path:    path,
			args:    args,
			dir:     r.Dir,
			logPath: filepath.Join(r.Dir, "server.log"),
		}
		r.mu.Lock()
		r.Addr, r.p, r.ports = addr, p, ps
		r.mu.Unlock()
		if err := p.start(); err != nil {
			return err
		}
		err = r.waitReady(p)
		if err == nil {
			return nil
		}
		stopErr := p.kill()
		if bindFailure(p) && attempt < attempts && stopErr == nil {
			if opts.Logf != nil {
				opts.Logf("servers: %s could not bind its port, trying another one", p.name)
			}
			ps.release()
			continue
		}
		return &NotServingError{
			Err:  fmt.Errorf("%s did not answer PING within %v: %v (kill: %v)", p.name, redisReadyTimeout, err, stopErr),
			Logs: fmt.Sprintf("--- tail of %s:\n%s", p.logPath, p.logTail(40)),
		}
	}
}

// serverDir returns dir, created if needed, or a new temporary directory
// (own).
func serverDir(dir, pattern string) (string, bool, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", pattern)
		return d, true, err
	}
	return dir, false, os.MkdirAll(dir, 0o755)
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
	if opts.Cluster {
		line("cluster-enabled", "yes")
		line("cluster-port", strconv.Itoa(port+1))
		line("cluster-config-file", "nodes.conf")
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

// String names the server: "redis-server 127.0.0.1:port".
func (r *Redis) String() string { return r.proc().name }

// waitReady polls PING until PONG, the process exits, or the deadline.
func (r *Redis) waitReady(p *proc) error {
	return p.awaitReady(redisReadyTimeout, func() (bool, error) {
		err := r.Ping(time.Second)
		return err == nil, err
	})
}

// Close stops the server (SIGTERM, SIGKILL after a few seconds), makes sure
// no process of its group is left, releases its port and, if StartRedis
// created its directory, removes it. The server cannot be restarted
// afterwards. Closing again does nothing.
func (r *Redis) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	p, ps := r.p, r.ports
	r.mu.Unlock()
	var errs []error
	if p != nil {
		errs = append(errs, p.close(stopGrace))
	}
	if ps != nil {
		ps.release()
	}
	if r.ownDir {
		errs = append(errs, os.RemoveAll(r.Dir))
	}
	return errors.Join(errs...)
}

// ExitedOnItsOwn describes how the server exited if it did without being
// signalled by this package (a crash), or returns "".
func (r *Redis) ExitedOnItsOwn() string { return r.proc().exitedOnItsOwn() }

// LogPath is the server's log file: stdout and stderr of every run.
func (r *Redis) LogPath() string { return r.proc().logPath }

// LogTail returns the last lines of the server's log.
func (r *Redis) LogTail(lines int) string { return r.proc().logTail(lines) }

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
func (r *Redis) Kill() error { return r.proc().locked((*proc).kill) }

// Stop sends SIGTERM to the server's process group (and SIGCONT, should it be
// paused), waits until it has exited, and kills it if it has not within a few
// seconds. It does nothing when the server is not running.
func (r *Redis) Stop() error { return r.proc().locked((*proc).stopGracefully) }

// Pause sends SIGSTOP to the server's process group and returns once it is
// stopped: connections are still accepted by the kernel, but nothing is
// answered until Resume.
func (r *Redis) Pause() error { return r.proc().locked((*proc).pause) }

// Resume sends SIGCONT to the server's process group.
func (r *Redis) Resume() error { return r.proc().locked((*proc).resume) }

// Restart starts the server again on the same port with the same directory,
// so the data written before is still there, and waits until it answers
// PING. A server that is still running is stopped first (SIGTERM). A server
// that does not answer is killed and the error is a *NotServingError.
func (r *Redis) Restart() error {
	p := r.proc()
	p.op.Lock()
	defer p.op.Unlock()
	err := p.restart(r.waitReady)
	var nr *notReady
	if errors.As(err, &nr) {
		return &NotServingError{
			Err:  fmt.Errorf("restarted %s did not answer PING within %v: %v", p.name, redisReadyTimeout, nr),
			Logs: fmt.Sprintf("--- tail of %s:\n%s", p.logPath, p.logTail(40)),
		}
	}
	return err
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
		Subject:               pkix.Name{CommonName: "epochal servers CA"},
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
	// The server certificate is good for client authentication too: the
	// package's own client presents it, so that a server run with
	// "tls-auth-clients yes" (in Args) still answers its PING.
	clientCert := tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
	return caFile, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{clientCert}}, nil
}
