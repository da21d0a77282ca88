package main

// Connecting to secured servers: credentials, TLS, redis:// URLs, Sentinel,
// Cluster and ZooKeeper digest authentication, and how a server's refusal
// (authentication or permission) is told apart from a server that cannot be
// reached.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	gozk "github.com/go-zookeeper/zk"
	goredis "github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/backend/zk"
)

// Environment variables of the connection flags.
const (
	envUser     = "EPOCHAL_USER"
	envPassword = "EPOCHAL_PASSWORD"
	envAuth     = "EPOCHAL_AUTH"
	// envSentinelPassword: --sentinel-password, the sentinels' own.
	envSentinelPassword = "EPOCHAL_SENTINEL_PASSWORD"
)

// secure holds the connection flags beyond --addr: credentials, database,
// TLS, Sentinel and Cluster. Passwords are never printed: not in --help
// (their flags have no default), not in errors (a URL in --addr is shown
// redacted).
type secure struct {
	user, password string
	db             int
	tls            bool
	tlsCA          string
	tlsCert        string
	tlsKey         string
	tlsInsecure    bool
	sentinelMaster string
	sentinelPass   string // the sentinels' own requirepass
	cluster        bool
	auth           string // ZooKeeper digest "user:password"

	// Resolved by resolveSecure.
	addrs   []string    // Redis addresses (host:port)
	tlsConf *tls.Config // nil: plaintext
}

// addSecureFlags defines the connection flags on the root command.
func addSecureFlags(root *cobra.Command, s *secure) {
	f := root.PersistentFlags()
	f.StringVar(&s.user, "user", "", "Redis ACL user name (env "+envUser+"; default: the default user)")
	f.StringVar(&s.password, "password", "", "Redis password: requirepass, or the --user's (env "+envPassword+", which keeps it out of the process list; never printed)")
	f.IntVar(&s.db, "db", 0, "Redis database number (not with --cluster)")
	f.BoolVar(&s.tls, "tls", false, "connect to Redis over TLS (a rediss:// URL in --addr implies it)")
	f.StringVar(&s.tlsCA, "tls-ca", "", "PEM file of the CA(s) that sign the Redis server's certificate (default: the system's)")
	f.StringVar(&s.tlsCert, "tls-cert", "", "PEM file of a client certificate, for a server that asks for one (with --tls-key)")
	f.StringVar(&s.tlsKey, "tls-key", "", "PEM file of the --tls-cert's private key")
	f.BoolVar(&s.tlsInsecure, "tls-insecure", false, "do not verify the Redis server's certificate (testing only: anyone in the path can read and change the traffic)")
	f.StringVar(&s.sentinelMaster, "sentinel-master", "", "Redis Sentinel: the master's name; --addr lists the sentinels, comma-separated (--user, --password and --db are the master's; the sentinels are asked with --sentinel-password if given; --tls is for both)")
	f.StringVar(&s.sentinelPass, "sentinel-password", "", "with --sentinel-master: the sentinels' own password (their requirepass), if they have one (env "+envSentinelPassword+"; never printed)")
	f.BoolVar(&s.cluster, "cluster", false, "Redis Cluster: --addr lists one or more of its nodes, comma-separated")
	f.StringVar(&s.auth, "auth", "", "ZooKeeper digest authentication, user:password: the nodes Epochal creates are then that identity's alone (env "+envAuth+"; never printed)")
}

// secureFlags names the connection flags.
var secureFlags = []string{"user", "password", "db", "tls", "tls-ca", "tls-cert", "tls-key", "tls-insecure", "sentinel-master", "sentinel-password", "cluster", "auth"}

// isRedisURL reports whether addr is a redis:// or rediss:// URL.
func isRedisURL(addr string) bool {
	l := strings.ToLower(addr)
	return strings.HasPrefix(l, "redis://") || strings.HasPrefix(l, "rediss://")
}

// resolveSecure applies the environment to the connection flags and checks
// their combination with the backend. It runs after g.addr has its final
// value (from the flag, the environment or the default); a URL there is
// parsed, and g.addr replaced by its redacted form, so that no message
// shows the password.
func (g *globals) resolveSecure(cmd *cobra.Command) error {
	s := &g.sec
	for _, f := range []struct {
		flag, env string
		v         *string
	}{{"user", envUser, &s.user}, {"password", envPassword, &s.password}, {"sentinel-password", envSentinelPassword, &s.sentinelPass}, {"auth", envAuth, &s.auth}} {
		if fl := cmd.Flags().Lookup(f.flag); fl != nil && !fl.Changed {
			if v := os.Getenv(f.env); v != "" {
				*f.v = v
			}
		}
	}
	// given: the connection flags on the command line. Those only in the
	// environment are not refused where they do not apply (a password, or
	// a URL in EPOCHAL_ADDR, exported for Redis does not stop a demo on
	// mem): they are ignored.
	var given []string
	for _, n := range secureFlags {
		if cmd.Flags().Changed(n) {
			given = append(given, "--"+n)
		}
	}
	isURL := isRedisURL(g.addr)
	if isURL && g.backend == backendMem && !cmd.Flags().Changed("addr") {
		isURL = false // EPOCHAL_ADDR, exported for Redis: mem dials nothing
	}
	if isURL {
		given = append(given, "a redis:// URL in --addr")
	}
	if g.backend == backendRedis && !isURL && strings.Contains(g.addr, ",") && !s.cluster && s.sentinelMaster == "" {
		return usagef("--addr lists %d addresses: add --cluster (its nodes) or --sentinel-master NAME (the sentinels)", len(strings.Split(g.addr, ",")))
	}
	switch name := cmd.Name(); {
	case len(given) > 0 && (name == "bench" || name == "jepsen" || cmd.HasParent() && cmd.Parent().Name() == "jepsen"):
		return usagef("%s connects without credentials or TLS: %s not supported (run it against a server of its own, or one without authentication)", cmd.CommandPath(), strings.Join(given, ", "))
	}
	switch g.backend {
	case backendMem:
		if len(given) > 0 {
			return usagef("%s: for --backend redis or zk, not %s", strings.Join(given, ", "), g.backend)
		}
		return nil
	case backendZK:
		for _, f := range given {
			if f != "--auth" {
				return usagef("%s is for --backend redis; ZooKeeper takes --auth user:password (digest)", f)
			}
		}
		s.user, s.password, s.sentinelPass = "", "", "" // from the environment, for Redis
		if s.auth != "" && (!strings.Contains(s.auth, ":") || strings.HasPrefix(s.auth, ":")) {
			return usagef("--auth: want user:password (ZooKeeper digest)")
		}
		return nil
	}
	// Redis.
	if cmd.Flags().Changed("auth") {
		return usagef("--auth is for --backend zk; Redis takes --user and --password")
	}
	s.auth = "" // from the environment, for ZooKeeper
	if len(given) == 0 && s.user == "" && s.password == "" {
		return nil // a plain host:port, dialled as given
	}
	if s.db < 0 {
		return usagef("--db %d: want 0 or more", s.db)
	}
	if s.cluster && s.sentinelMaster != "" {
		return usagef("--cluster and --sentinel-master: a server is one or the other")
	}
	if s.cluster && s.db != 0 {
		return usagef("--db %d with --cluster: Redis Cluster has only database 0", s.db)
	}
	if s.sentinelMaster == "" {
		if cmd.Flags().Changed("sentinel-password") {
			return usagef("--sentinel-password is the sentinels' password: for --sentinel-master")
		}
		s.sentinelPass = "" // from the environment, for a Sentinel set-up
	}
	var host string
	if isURL {
		if s.cluster || s.sentinelMaster != "" {
			return usagef("a redis:// URL in --addr names one server: with --cluster or --sentinel-master, list host:port addresses and use --user, --password and --tls")
		}
		o, redacted, err := parseRedisURL(g.addr)
		if err != nil {
			return err
		}
		g.addr = redacted
		for _, c := range []struct {
			flag    string
			flagSet bool
			urlSet  bool
		}{
			{"--user (or " + envUser + ")", s.user != "", o.user != ""},
			{"--password (or " + envPassword + ")", s.password != "", o.password != ""},
			{"--db", s.db != 0, o.db != 0},
		} {
			if c.flagSet && c.urlSet {
				return usagef("%s and the URL in --addr both give it: give it once", c.flag)
			}
		}
		if o.user != "" {
			s.user = o.user
		}
		if o.password != "" {
			s.password = o.password
		}
		if o.db != 0 {
			s.db = o.db
		}
		if o.tls {
			s.tls = true
		} else if s.tls {
			return usagef("--tls with a redis:// URL: use rediss:// (or a host:port address)")
		}
		if s.password == "" && s.user != "" {
			// Not named: it may be a password written where the user
			// name goes (redis://secret@host).
			return usagef("the URL in --addr names a user without a password: write redis://user:password@host:port, or redis://:password@host:port for a requirepass")
		}
		s.addrs = []string{o.addr}
	} else {
		for _, a := range strings.Split(g.addr, ",") {
			a = strings.TrimSpace(a)
			if _, _, err := net.SplitHostPort(a); err != nil {
				return usagef("--addr %q: want host:port (or a redis:// or rediss:// URL): %v", a, err)
			}
			s.addrs = append(s.addrs, a)
		}
		if s.password == "" && s.user != "" {
			return usagef("--user %s without --password (or %s)", s.user, envPassword)
		}
	}
	// One server's certificate is checked against the host it is
	// dialled by. Sentinel and Cluster dial several servers (the
	// sentinels, then the master they name; every node) with one
	// tls.Config: its ServerName stays empty, so that crypto/tls takes
	// each dial's own host (go-redis dials with tls.DialWithDialer).
	if !s.cluster && s.sentinelMaster == "" {
		host, _, _ = net.SplitHostPort(s.addrs[0])
	}
	tlsOpts := s.tlsCA != "" || s.tlsCert != "" || s.tlsKey != "" || s.tlsInsecure
	if tlsOpts && !s.tls {
		return usagef("--tls-ca, --tls-cert, --tls-key and --tls-insecure need --tls (or a rediss:// URL)")
	}
	if !s.tls {
		return nil
	}
	conf, err := s.tlsConfig(host)
	if err != nil {
		return err
	}
	s.tlsConf = conf
	return nil
}

// redisURL is what a redis:// or rediss:// URL in --addr says.
type redisURL struct {
	addr           string // host:port
	user, password string
	db             int
	tls            bool // rediss://
}

// parseRedisURL parses a redis:// or rediss:// URL (scheme, user name and
// password, host, port, database number) and returns it with its form for
// messages: scheme://[user:]xxxxx@host:port/db. Its errors say what is
// wrong in general terms and quote nothing from the URL: a password that
// holds an unencoded # / ? @ or % makes the parser split the URL inside it
// (a piece of the password read as a port, a path, a query, a fragment or
// an escape), so no part of a URL that does not parse can be shown.
func parseRedisURL(raw string) (redisURL, string, error) {
	const encode = "in its user name and password, percent-encode # / ? @ and % as %23 %2F %3F %40 %25"
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || (u.Scheme != "redis" && u.Scheme != "rediss") {
		return redisURL{}, "", usagef("--addr: not a valid redis:// or rediss:// URL; %s", encode)
	}
	switch {
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return redisURL{}, "", usagef("--addr: a redis:// URL takes no #fragment; %s", encode)
	case u.RawQuery != "" || u.ForceQuery:
		return redisURL{}, "", usagef("--addr: URL options (?...) are not taken, use the flags; %s", encode)
	}
	db := 0
	if p := strings.Trim(u.Path, "/"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || strings.TrimLeft(p, "0123456789") != "" {
			return redisURL{}, "", usagef("--addr: the URL's path must be a database number, such as /3; %s", encode)
		}
		db = n
	}
	r := redisURL{db: db, tls: u.Scheme == "rediss"}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		host = "localhost"
	}
	if port == "" {
		port = "6379"
	}
	r.addr = net.JoinHostPort(host, port)
	shown := u.Scheme + "://"
	if u.User != nil {
		r.user = u.User.Username()
		if pw, ok := u.User.Password(); ok {
			r.password = pw
			shown += r.user + ":xxxxx@"
		} else {
			// "redis://secret@host": a password written where the user
			// name goes. Not shown.
			shown += "xxxxx@"
		}
	}
	shown += r.addr + "/" + strconv.Itoa(db)
	return r, shown, nil
}

// tlsConfig builds the TLS configuration the flags describe, with host as
// its ServerName ("": each dial's host). Unreadable or malformed files are
// usage errors naming the file.
func (s *secure) tlsConfig(host string) (*tls.Config, error) {
	if s.tlsInsecure && s.tlsCA != "" {
		return nil, usagef("--tls-insecure and --tls-ca: with --tls-insecure nothing is verified, against the CA or otherwise")
	}
	if (s.tlsCert == "") != (s.tlsKey == "") {
		return nil, usagef("--tls-cert and --tls-key go together: the certificate and its private key")
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host, InsecureSkipVerify: s.tlsInsecure}
	if s.tlsCA != "" {
		pem, err := os.ReadFile(s.tlsCA)
		if err != nil {
			return nil, usagef("--tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("--tls-ca %s: no PEM certificate in it", s.tlsCA)
		}
		conf.RootCAs = pool
	}
	if s.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(s.tlsCert, s.tlsKey)
		if err != nil {
			return nil, usagef("--tls-cert %s, --tls-key %s: %v", s.tlsCert, s.tlsKey, err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// openRedis opens the Redis backend the flags name: one server, a Sentinel
// failover client or a Cluster client.
func (g *globals) openRedis(ctx context.Context, prefix string) (backend.Driver, error) {
	s := &g.sec
	addrs := s.addrs
	if len(addrs) == 0 { // resolve did not run (tests calling open directly)
		addrs = []string{g.addr}
	}
	octx, cancel := context.WithTimeout(ctx, g.connect)
	defer cancel()
	cfg := redis.Config{Prefix: prefix, DialTimeout: g.connect, ReadOnly: g.readOnly}
	if !s.cluster && s.sentinelMaster == "" {
		cfg.Addr, cfg.Username, cfg.Password, cfg.DB, cfg.TLS = addrs[0], s.user, s.password, s.db, s.tlsConf
		b, err := redis.Open(octx, cfg)
		if err != nil {
			return nil, g.openError(ctx, err, redis.ErrConfig, "is redis-server running at "+g.addr+"? set --addr or "+envAddr, "")
		}
		return b, nil
	}
	c, what := g.redisClient(addrs)
	cfg.Addr = g.addr // for its messages only
	b, err := redis.NewContext(octx, c, cfg)
	if err != nil {
		if ctx.Err() != nil {
			// Interrupted: not waiting for Close, which waits for a
			// lookup under way (the Sentinel client holds its lock
			// while it asks the sentinels, bounded by its timeouts
			// only).
			go c.Close()
		} else {
			_ = c.Close()
		}
		return nil, g.openError(ctx, err, redis.ErrConfig, what, "")
	}
	return &ownedRedis{Backend: b, c: c}, nil
}

// redisClient makes the Sentinel failover client or the Cluster client
// the flags name, and says what to check when it cannot be reached.
func (g *globals) redisClient(addrs []string) (goredis.UniversalClient, string) {
	s := &g.sec
	if s.cluster {
		return goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs: addrs, Username: s.user, Password: s.password, TLSConfig: s.tlsConf,
			DialTimeout: g.connect, MaxRetries: 3, ContextTimeoutEnabled: true,
		}), "is the Redis Cluster at " + g.addr + " up? set --addr or " + envAddr
	}
	return goredis.NewFailoverClient(&goredis.FailoverOptions{
		MasterName: s.sentinelMaster, SentinelAddrs: addrs, SentinelPassword: s.sentinelPass,
		Username: s.user, Password: s.password, DB: s.db, TLSConfig: s.tlsConf,
		DialTimeout: g.connect, MaxRetries: 3, ContextTimeoutEnabled: true,
	}), fmt.Sprintf("are the sentinels at %s up, and do they monitor a master named %q? check --addr and --sentinel-master", g.addr, s.sentinelMaster)
}

// ownedRedis is a backend over a client openRedis made: Close closes both.
type ownedRedis struct {
	*redis.Backend
	c goredis.UniversalClient
}

func (o *ownedRedis) Close() error {
	err := o.Backend.Close()
	if cerr := o.c.Close(); err == nil {
		err = cerr
	}
	return err
}

// openZK opens the ZooKeeper backend the flags name.
func (g *globals) openZK(ctx context.Context, root string) (backend.Driver, error) {
	servers := strings.Split(g.addr, ",")
	octx, cancel := context.WithTimeout(ctx, g.connect)
	defer cancel()
	b, err := zk.Open(octx, zk.Config{Servers: servers, Root: root, Auth: g.sec.auth, ReadOnly: g.readOnly})
	if err != nil {
		return nil, g.openError(ctx, err, zk.ErrConfig, "is ZooKeeper running at "+g.addr+"? set --addr or "+envAddr, root)
	}
	return b, nil
}

// openError classifies an error opening a backend: a bad setting is a
// usage error, a refusal (authentication or permission) is said as such,
// an interrupt (ctx, the command's, ended) too; anything else means the
// server could not be reached.
func (g *globals) openError(ctx context.Context, err, errConfig error, down, root string) error {
	if ns := g.namespaceErr(err); ns != nil {
		return ns
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("opening %s at %s: interrupted", g.backend, g.addr)
	case errors.Is(err, backend.ErrDataLost):
		// The server answered: what it holds is damaged (a ZooKeeper
		// root without its epoch node), which the error says.
		return err
	case errors.Is(err, errConfig):
		return &usageError{err: err}
	case certRefused(err):
		return fmt.Errorf("%w (the server refused the TLS client certificate, or asked for one: give one it trusts with --tls-cert and --tls-key)", err)
	case refused(err):
		hint := "check --user and --password (or " + envPassword + "), and the user's ACL"
		if g.sec.sentinelMaster != "" {
			hint = "check --user and --password (or " + envPassword + "), the master's, --sentinel-password (or " + envSentinelPassword + "), the sentinels', and the users' ACLs"
		}
		if g.backend == backendZK {
			hint = fmt.Sprintf("check --auth (or %s): %s belongs to the identity that created it", envAuth, root)
		}
		return fmt.Errorf("%w (%s)", err, hint)
	case g.backend == backendRedis && !g.sec.cluster && clusterReply(err):
		return usagef("%v: the server is a Redis Cluster node: add --cluster", err)
	case untrusted(err):
		return &downError{err: fmt.Errorf("%w (the server's certificate is not trusted: give the CA that signed it with --tls-ca)", err)}
	default:
		return &downError{err: fmt.Errorf("%w (%s)", err, down)}
	}
}

// refused reports whether err is the server refusing the client: Redis
// NOAUTH, WRONGPASS or NOPERM (and go-redis's errors for them), a TLS
// client certificate refused or missing (certRefused), ZooKeeper NoAuth
// or auth failed. exitCode maps it to exitRefused.
func refused(err error) bool {
	if err == nil {
		return false
	}
	if certRefused(err) {
		return true
	}
	if errors.Is(err, gozk.ErrNoAuth) || errors.Is(err, gozk.ErrAuthFailed) {
		return true
	}
	if goredis.IsAuthError(err) || goredis.IsPermissionError(err) {
		return true
	}
	var re goredis.Error
	if errors.As(err, &re) {
		msg := re.Error()
		for _, p := range []string{"NOAUTH ", "WRONGPASS ", "NOPERM "} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
	}
	return false
}

// certAlerts are the TLS alerts a server sends when it does not accept
// the client's certificate: none was given and it asks for one
// (certificate required), or it does not trust or take the one given.
var certAlerts = []string{"tls: certificate required", "tls: bad certificate", "tls: unknown certificate authority",
	"tls: certificate unknown", "tls: certificate expired", "tls: certificate revoked", "tls: unsupported certificate"}

// certRefused reports whether err is a TLS alert from the server refusing
// the client's certificate (Redis with tls-auth-clients yes, or
// optional, and a certificate it does not trust).
func certRefused(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return false
	}
	return slices.Contains(certAlerts, op.Err.Error())
}

// untrusted reports whether err is a TLS certificate the client does not
// trust.
func untrusted(err error) bool {
	var cve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	return errors.As(err, &cve) || errors.As(err, &ua) || errors.As(err, &he)
}

// clusterReply reports whether err is a Redis Cluster node's answer to a
// client that does not speak Cluster (a redirection, or SELECT refused).
func clusterReply(err error) bool {
	var re goredis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "MOVED ") || strings.HasPrefix(msg, "ASK ") || strings.Contains(msg, "not allowed in cluster mode")
}
