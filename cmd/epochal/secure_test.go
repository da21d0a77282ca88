package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/internal/testkit/testserver"
)

// secRun runs the command line in process and fails the test if any of
// secrets appears in its output (stdout or stderr).
func secRun(t *testing.T, secrets []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	for _, s := range secrets {
		if strings.Contains(out.String(), s) || strings.Contains(errOut.String(), s) {
			t.Errorf("epochal %v: the secret %q is in its output\nstdout:\n%s\nstderr:\n%s", redactArgs(args, secrets), s, out.String(), errOut.String())
		}
	}
	return code, out.String(), errOut.String()
}

// redactArgs is args with the secrets masked, for failure messages.
func redactArgs(args, secrets []string) []string {
	r := make([]string, len(args))
	for i, a := range args {
		for _, s := range secrets {
			a = strings.ReplaceAll(a, s, "***")
		}
		r[i] = a
	}
	return r
}

// wantCode checks a run's exit code and that its stderr is one line
// holding each of want.
func wantCode(t *testing.T, secrets []string, code int, want []string, args ...string) string {
	t.Helper()
	got, out, errOut := secRun(t, secrets, args...)
	ok := got == code
	for _, w := range want {
		ok = ok && strings.Contains(errOut, w)
	}
	if code != exitOK {
		ok = ok && strings.Count(errOut, "\n") == 1
	}
	if !ok {
		t.Errorf("epochal %v: exit %d, stderr %q; want exit %d and one line saying %q\nstdout:\n%s",
			redactArgs(args, secrets), got, errOut, code, want, out)
	}
	return out
}

const refusal = "refused by the server: authentication or permission"

// TestSecureRequirepass: against a redis-server with requirepass, no
// password and a wrong one are refusals (exit 4, not "unreachable" 3); the
// right one, from --password, EPOCHAL_PASSWORD or a redis:// URL, works.
// The password never appears in any output, --help included.
func TestSecureRequirepass(t *testing.T) {
	const pw, wrong = "pw-Requirepass-71", "pw-Wrong-93"
	srv := testserver.StartRedis(t, testserver.RedisOptions{Password: pw})
	seedRedis(t, srv, "", pw, 0, "sec")
	secrets := []string{pw, wrong}
	base := []string{"--backend", "redis", "--addr", srv.Addr, "--prefix", "sec"}
	args := func(extra ...string) []string { return append(append(append([]string{}, base...), extra...), "clock") }

	wantCode(t, secrets, exitRefused, []string{refusal, "NOAUTH", "--password"}, args()...)
	wantCode(t, secrets, exitRefused, []string{refusal, "WRONGPASS"}, args("--password", wrong)...)
	if out := wantCode(t, secrets, exitOK, nil, args("--password", pw)...); strings.TrimSpace(out) == "" {
		t.Errorf("clock printed nothing")
	}
	wantCode(t, secrets, exitOK, nil, "--backend", "redis", "--addr", "redis://:"+pw+"@"+srv.Addr+"/0", "--prefix", "sec", "clock")
	wantCode(t, secrets, exitRefused, []string{refusal, "WRONGPASS"}, "--backend", "redis", "--addr", "redis://:"+wrong+"@"+srv.Addr+"/3", "--prefix", "sec", "clock")
	// A command that writes (the demo commits transactions) works too.
	wantCode(t, secrets, exitOK, nil, append(base, "--password", pw, "demo", "--duration", "200ms", "--accounts", "3")...)

	t.Setenv(envPassword, pw)
	wantCode(t, secrets, exitOK, nil, args()...)
	// Where it does not apply it is ignored, not refused: a password
	// exported for Redis does not stop a demo on mem, nor does one for
	// ZooKeeper a Redis command.
	wantCode(t, secrets, exitOK, nil, "--backend", "mem", "demo", "--duration", "100ms", "--accounts", "2")
	t.Setenv(envAuth, "zkuser:"+wrong)
	wantCode(t, secrets, exitOK, nil, args()...)
	wantCode(t, secrets, exitRefused, []string{refusal, "WRONGPASS"}, args("--password", wrong)...) // the flag wins
	if out := wantCode(t, secrets, exitOK, nil, "--backend", "redis", "--help"); !strings.Contains(out, "--password") {
		t.Errorf("--help does not list --password:\n%s", out)
	}
	// A password that is given twice, in the URL and the environment, is
	// a usage error that shows neither.
	wantCode(t, secrets, exitUsage, []string{"--password (or EPOCHAL_PASSWORD) and the URL"}, "--backend", "redis", "--addr", "redis://:"+wrong+"@"+srv.Addr, "clock")
	// A URL exported in EPOCHAL_ADDR is Redis's: a demo on mem ignores
	// it (given as --addr, it is refused).
	t.Setenv(envAddr, "redis://"+srv.Addr+"/0")
	wantCode(t, secrets, exitOK, nil, "--backend", "redis", "--prefix", "sec", "clock")
	wantCode(t, secrets, exitOK, nil, "--backend", "mem", "demo", "--duration", "100ms", "--accounts", "2")
	wantCode(t, secrets, exitOK, nil, "demo", "--duration", "100ms", "--accounts", "2")
	wantCode(t, secrets, exitUsage, []string{"not mem"}, "--backend", "mem", "--addr", "redis://"+srv.Addr+"/0", "demo", "--duration", "100ms", "--accounts", "2")
}

// TestSecureACL: ACL users. alice (all permissions) gets in with her
// password and is refused with a wrong one or none; bob, read-only, may
// inspect (the inspecting commands open read-only) but not run the demo,
// which needs SET (opening a namespace to write stores the backend's
// identity); carol lacks EVALSHA, which the demo's commits need, and dave
// ZRANGEBYLEX, which refs ls needs: each refusal is exit 4, naming the
// command.
func TestSecureACL(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{User: "alice", Password: "alice-Secret-1", Args: []string{
		`user bob on >bob-Secret-2 ~* &* +@all -@write`,
		`user carol on >carol-Secret-3 ~* &* +@all -evalsha -eval -fcall`,
		`user dave on >dave-Secret-4 ~* &* +@all -zrangebylex`,
	}})
	seedRedis(t, srv, "alice", "alice-Secret-1", 0, "acl")
	secrets := []string{"alice-Secret-1", "bob-Secret-2", "carol-Secret-3", "dave-Secret-4"}
	r := func(user, pw string, cmd ...string) []string {
		a := []string{"--backend", "redis", "--addr", srv.Addr, "--prefix", "acl"}
		if user != "" {
			a = append(a, "--user", user)
		}
		if pw != "" {
			a = append(a, "--password", pw)
		}
		return append(a, cmd...)
	}
	wantCode(t, secrets, exitOK, nil, r("alice", "alice-Secret-1", "clock")...)
	wantCode(t, secrets, exitOK, nil, "--backend", "redis", "--addr", "redis://alice:alice-Secret-1@"+srv.Addr, "--prefix", "acl", "clock")
	wantCode(t, secrets, exitRefused, []string{refusal, "WRONGPASS"}, r("alice", "bob-Secret-2", "clock")...)
	wantCode(t, secrets, exitRefused, []string{refusal, "NOAUTH"}, r("", "", "clock")...) // the default user is off
	wantCode(t, secrets, exitRefused, []string{refusal, "WRONGPASS"}, r("mallory", "alice-Secret-1", "clock")...)
	wantCode(t, secrets, exitOK, nil, r("bob", "bob-Secret-2", "clock")...)
	wantCode(t, secrets, exitRefused, []string{refusal, "NOPERM", "'set'"}, r("bob", "bob-Secret-2", "demo", "--duration", "200ms", "--accounts", "3")...)
	wantCode(t, secrets, exitRefused, []string{refusal, "NOPERM", "evalsha"}, r("carol", "carol-Secret-3", "demo", "--duration", "200ms", "--accounts", "3")...)
	wantCode(t, secrets, exitOK, nil, r("dave", "dave-Secret-4", "clock")...)
	wantCode(t, secrets, exitRefused, []string{refusal, "NOPERM", "zrangebylex"}, r("dave", "dave-Secret-4", "refs", "ls")...)
}

// TestSecureTLS: a TLS-only redis-server with a password. The CA from
// --tls-ca (or --tls-insecure) and the password from a rediss:// URL get in;
// without --tls-ca the certificate is not trusted (and said so); a server
// that asks for client certificates takes --tls-cert and --tls-key.
func TestSecureTLS(t *testing.T) {
	const pw = "tls-Secret-4"
	secrets := []string{pw}
	srv := testserver.StartRedis(t, testserver.RedisOptions{TLS: true, Password: pw})
	seedRedis(t, srv, "", pw, 0, "tls")
	seedRedis(t, srv, "", pw, 1, "tls")
	wantCode(t, secrets, exitOK, nil, "--backend", "redis", "--addr", srv.Addr, "--tls", "--tls-ca", srv.CAFile, "--password", pw, "--prefix", "tls", "clock")
	wantCode(t, secrets, exitOK, nil, "--backend", "redis", "--addr", "rediss://:"+pw+"@"+srv.Addr+"/1", "--tls-ca", srv.CAFile, "--prefix", "tls", "clock")
	wantCode(t, secrets, exitOK, nil, "--backend", "redis", "--addr", srv.Addr, "--tls", "--tls-insecure", "--password", pw, "--prefix", "tls", "clock")
	wantCode(t, secrets, exitDown, []string{"certificate", "--tls-ca"}, "--backend", "redis", "--addr", srv.Addr, "--tls", "--password", pw, "--prefix", "tls", "clock")
	wantCode(t, secrets, exitRefused, []string{refusal, "NOAUTH"}, "--backend", "redis", "--addr", srv.Addr, "--tls", "--tls-ca", srv.CAFile, "--prefix", "tls", "clock")

	mtls := testserver.StartRedis(t, testserver.RedisOptions{TLS: true, Args: []string{"tls-auth-clients yes"}})
	seedRedis(t, mtls, "", "", 0, "mtls")
	// The server's certificate serves as a client certificate too.
	cert, key := filepath.Join(mtls.Dir, "server.crt"), filepath.Join(mtls.Dir, "server.key")
	wantCode(t, nil, exitOK, nil, "--backend", "redis", "--addr", mtls.Addr, "--tls", "--tls-ca", mtls.CAFile, "--tls-cert", cert, "--tls-key", key, "--prefix", "mtls", "clock")
	// No client certificate: the server refuses the handshake. That is a
	// refusal (exit 4) naming --tls-cert, not a server that cannot be
	// reached.
	wantCode(t, nil, exitRefused, []string{"certificate", "--tls-cert"}, "--backend", "redis", "--addr", mtls.Addr, "--tls", "--tls-ca", mtls.CAFile, "--prefix", "mtls", "--connect-timeout", "3s", "clock")
}

// TestSecureZKAuth: a root created with --auth user:password is that
// identity's: the same credentials open it, none or others are refused
// (exit 4, NoAuth), not reported unreachable.
func TestSecureZKAuth(t *testing.T) {
	z := testserver.StartZK(t)
	const pw, wrong = "zk-Secret-5", "zk-Wrong-6"
	seedZK(t, z.ConnectString(), "/secured", "alice:"+pw)
	secrets := []string{pw, wrong}
	r := func(extra ...string) []string {
		return append(append([]string{"--backend", "zk", "--addr", z.ConnectString(), "--root", "/secured"}, extra...), "clock")
	}
	wantCode(t, secrets, exitOK, nil, r("--auth", "alice:"+pw)...)
	wantCode(t, secrets, exitOK, nil, r("--auth", "alice:"+pw)...) // again, on the existing root
	wantCode(t, secrets, exitRefused, []string{refusal, "--auth", "/secured"}, r()...)
	wantCode(t, secrets, exitRefused, []string{refusal}, r("--auth", "alice:"+wrong)...)
	t.Setenv(envAuth, "alice:"+pw)
	wantCode(t, secrets, exitOK, nil, r()...)
}

// TestSecureUsage: bad combinations of the connection flags are usage
// errors (exit 2) saying what is wrong, before anything is dialled, and
// never show a password, nor a piece of one: a redis:// URL whose
// password holds an unencoded # / ? or % is refused without quoting it.
func TestSecureUsage(t *testing.T) {
	const pw = "usage-Secret-7"
	// Pieces of the malformed URLs' passwords that a parser's error
	// would quote.
	secrets := []string{pw, "Hunter2x", "Sx9", "%zz", "Cd2x", "Frag-Secret"}
	addr := closedAddr(t)
	r := func(extra ...string) []string {
		return append([]string{"--backend", "redis", "--addr", addr}, extra...)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{r("--user", "alice", "clock"), "without --password"},
		{r("--db", "-1", "clock"), "--db -1"},
		{r("--cluster", "--sentinel-master", "m", "clock"), "one or the other"},
		{r("--cluster", "--db", "2", "clock"), "only database 0"},
		{r("--tls-ca", "/nonexistent", "clock"), "need --tls"},
		{r("--tls", "--tls-ca", "/nonexistent/ca.pem", "clock"), "--tls-ca"},
		{r("--tls", "--tls-cert", "/x.crt", "clock"), "go together"},
		{r("--tls", "--tls-insecure", "--tls-ca", "/x", "clock"), "--tls-insecure and --tls-ca"},
		{r("--auth", "a:"+pw, "clock"), "--auth is for --backend zk"},
		{[]string{"--backend", "redis", "--addr", addr + "," + addr, "clock"}, "add --cluster"},
		{[]string{"--backend", "redis", "--addr", "redis://:" + pw + "@" + addr, "--tls", "clock"}, "use rediss://"},
		{[]string{"--backend", "redis", "--addr", "redis://:" + pw + "@" + addr + "/x", "clock"}, "database number"},
		{[]string{"--backend", "redis", "--addr", "redis://:" + pw + "@" + addr + "?dial_timeout=1s", "clock"}, "URL options"},
		{[]string{"--backend", "redis", "--addr", "redis://" + addr + "?password=Hunter2x", "clock"}, "URL options"},
		{[]string{"--backend", "redis", "--addr", "redis://:Hunter2x#x@" + addr, "clock"}, "percent-encode"},
		{[]string{"--backend", "redis", "--addr", "redis://:" + pw + "@" + addr + "#Frag-Secret", "clock"}, "#fragment"},
		{[]string{"--backend", "redis", "--addr", "redis://user:Sx9/cret@" + addr, "clock"}, "percent-encode"},
		{[]string{"--backend", "redis", "--addr", "redis://u:p%zz@" + addr, "clock"}, "percent-encode"},
		{[]string{"--backend", "redis", "--addr", "redis://:123/Cd2x@" + addr, "clock"}, "database number"},
		{[]string{"--backend", "redis", "--addr", "redis://Hunter2x@" + addr, "clock"}, "without a password"},
		{[]string{"--backend", "redis", "--addr", "redis://:" + pw + "@" + addr, "--cluster", "clock"}, "names one server"},
		{[]string{"--backend", "redis", "--addr", "redis://alice:" + pw + "@" + addr, "--user", "bob", "clock"}, "--user (or EPOCHAL_USER) and the URL"},
		{[]string{"--backend", "zk", "--addr", addr, "--password", pw, "clock"}, "ZooKeeper takes --auth"},
		{[]string{"--backend", "zk", "--addr", addr, "--auth", pw, "clock"}, "want user:password"},
		{[]string{"--backend", "mem", "--password", pw, "demo"}, "not mem"},
		{[]string{"--backend", "redis", "--password", pw, "bench"}, "not supported"},
	} {
		wantCode(t, secrets, exitUsage, []string{c.want}, c.args...)
	}
}

// TestSecureCluster: --cluster against a real two-node Redis Cluster with
// a password, --addr naming the node that does not hold the prefix's slot:
// the cluster client follows the redirection and the demo commits there;
// without a password it is refused; --db is refused before anything is
// dialled.
func TestSecureCluster(t *testing.T) {
	const pw = "cluster-Secret-8"
	secrets := []string{pw}
	ctx := context.Background()
	var nodes [2]*testserver.Redis
	var clients [2]*goredis.Client
	for i := range nodes {
		nodes[i] = testserver.StartRedis(t, testserver.RedisOptions{Password: pw, Cluster: true})
		clients[i] = goredis.NewClient(&goredis.Options{Addr: nodes[i].Addr, Password: pw})
		defer clients[i].Close()
	}
	formCluster(t, nodes, clients)
	slot, err := clients[0].ClusterKeySlot(ctx, "{cl}:x").Result()
	if err != nil {
		t.Fatal(err)
	}
	other := 0 // the node that does not hold the slot
	if slot <= 8191 {
		other = 1
	}
	r := func(extra ...string) []string {
		return append([]string{"--backend", "redis", "--addr", nodes[other].Addr, "--cluster", "--prefix", "cl"}, extra...)
	}
	wantCode(t, secrets, exitOK, nil, r("--password", pw, "demo", "--duration", "200ms", "--accounts", "3")...)
	// The command the demo prints inspects its accounts, on the cluster.
	out := wantCode(t, secrets, exitOK, nil, "--backend", "redis", "--addr", nodes[other].Addr+","+nodes[1-other].Addr, "--cluster", "--password", pw, "demo", "--duration", "200ms", "--accounts", "3")
	checkInspectCmd(t, out, map[string]string{envPassword: pw})
	wantCode(t, secrets, exitOK, nil, r("--password", pw, "clock")...)
	wantCode(t, secrets, exitRefused, []string{refusal, "NOAUTH"}, r("clock")...)
	wantCode(t, secrets, exitUsage, []string{"only database 0"}, r("--password", pw, "--db", "1", "clock")...)
	// Without --cluster, the redirection is told as such, not as a server
	// that cannot be reached.
	wantCode(t, secrets, exitUsage, []string{"MOVED", "add --cluster"}, "--backend", "redis", "--addr", nodes[other].Addr, "--password", pw, "--prefix", "cl", "clock")
	// The demo's refs are on the node that holds the slot, not on the one
	// --addr named.
	owner := clients[1-other]
	if keys, err := owner.Keys(ctx, "{cl}:*").Result(); err != nil || len(keys) < 3 {
		t.Errorf("keys under {cl} on the slot's node: %v, %v; want the demo's", keys, err)
	}
}

// formCluster makes the two cluster-mode nodes one Redis Cluster, node 0
// holding slots 0-8191 and node 1 the rest, and waits until both say it is
// ok.
func formCluster(t *testing.T, nodes [2]*testserver.Redis, clients [2]*goredis.Client) {
	t.Helper()
	ctx := context.Background()
	for i, r := range [][2]int{{0, 8191}, {8192, 16383}} {
		if err := clients[i].Do(ctx, "CLUSTER", "ADDSLOTSRANGE", r[0], r[1]).Err(); err != nil {
			t.Fatalf("node %d: CLUSTER ADDSLOTSRANGE: %v", i, err)
		}
	}
	host, port, _ := net.SplitHostPort(nodes[1].Addr)
	bus, _ := strconv.Atoi(port)
	bus++ // the cluster bus is on the next port
	if err := clients[0].Do(ctx, "CLUSTER", "MEET", host, port, bus).Err(); err != nil {
		t.Fatalf("CLUSTER MEET: %v", err)
	}
	for i := range clients {
		waitFor(t, 20*time.Second, "cluster_state:ok on both nodes", func() bool {
			info, err := clients[i].ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:2")
		})
	}
}

// TestSecureSentinel: --sentinel-master against a real Sentinel that
// monitors a redis-server with a password: the master it names is used,
// with the password; none is refused, exit 4.
func TestSecureSentinel(t *testing.T) {
	const pw = "sentinel-Secret-9"
	secrets := []string{pw}
	master := testserver.StartRedis(t, testserver.RedisOptions{Password: pw})
	host, port, _ := net.SplitHostPort(master.Addr)
	sentinel := testserver.StartRedis(t, testserver.RedisOptions{Sentinel: true, Args: []string{
		"sentinel monitor mymaster " + host + " " + port + " 1",
		"sentinel auth-pass mymaster " + pw,
	}})
	r := func(extra ...string) []string {
		return append([]string{"--backend", "redis", "--addr", sentinel.Addr, "--sentinel-master", "mymaster", "--prefix", "sn"}, extra...)
	}
	out := wantCode(t, secrets, exitOK, nil, r("--password", pw, "demo", "--duration", "200ms", "--accounts", "3")...)
	checkInspectCmd(t, out, map[string]string{envPassword: pw}) // the command it prints names the sentinels and the master
	wantCode(t, secrets, exitRefused, []string{refusal, "NOAUTH"}, r("clock")...)
	wantCode(t, secrets, exitDown, []string{`master named "nosuch"`, "--sentinel-master"}, r("--sentinel-master", "nosuch", "--password", pw, "clock")...)
	// The demo wrote to the master the sentinel named.
	c := goredis.NewClient(&goredis.Options{Addr: master.Addr, Password: pw})
	defer c.Close()
	if keys, err := c.Keys(context.Background(), "{sn}:*").Result(); err != nil || len(keys) < 3 {
		t.Errorf("keys under {sn} on the master: %v, %v; want the demo's", keys, err)
	}
}

// TestSecureSentinelAuth: sentinels that require a password of their own
// (requirepass in sentinel mode) take --sentinel-password or
// EPOCHAL_SENTINEL_PASSWORD, while --password is the master's; without it
// the refusal (exit 4) names --sentinel-password. Neither password is
// printed; the demo's inspect command asks for both variables.
func TestSecureSentinelAuth(t *testing.T) {
	const pw, spw = "master-Secret-14", "sentinels-Secret-15"
	secrets := []string{pw, spw}
	master := testserver.StartRedis(t, testserver.RedisOptions{Password: pw})
	host, port, _ := net.SplitHostPort(master.Addr)
	sentinel := testserver.StartRedis(t, testserver.RedisOptions{Sentinel: true, Password: spw, Args: []string{
		"sentinel monitor mymaster " + host + " " + port + " 1",
		"sentinel auth-pass mymaster " + pw,
	}})
	r := func(extra ...string) []string {
		return append([]string{"--backend", "redis", "--addr", sentinel.Addr, "--sentinel-master", "mymaster", "--prefix", "sna", "--password", pw}, extra...)
	}
	wantCode(t, secrets, exitRefused, []string{refusal, "NOAUTH", "--sentinel-password"}, r("clock")...)
	wantCode(t, secrets, exitRefused, []string{refusal, "--sentinel-password"}, r("--sentinel-password", "wrong-Sentinel-16", "clock")...)
	out := wantCode(t, secrets, exitOK, nil, "--backend", "redis", "--addr", sentinel.Addr, "--sentinel-master", "mymaster",
		"--password", pw, "--sentinel-password", spw, "--prefix", "sna", "demo", "--duration", "200ms", "--accounts", "3")
	checkInspectCmd(t, out, map[string]string{envPassword: pw, envSentinelPassword: spw})
	t.Setenv(envSentinelPassword, spw)
	wantCode(t, secrets, exitOK, nil, r("clock")...)
	// The master's password is still needed: the sentinels' is not it.
	wantCode(t, secrets, exitRefused, []string{refusal, "NOAUTH"}, "--backend", "redis", "--addr", sentinel.Addr, "--sentinel-master", "mymaster", "--prefix", "sna", "clock")
	// Only with --sentinel-master; refused on mem (given as a flag).
	t.Setenv(envSentinelPassword, "")
	wantCode(t, secrets, exitUsage, []string{"--sentinel-password", "--sentinel-master"}, "--backend", "redis", "--addr", master.Addr, "--sentinel-password", spw, "clock")
	wantCode(t, secrets, exitUsage, []string{"not mem"}, "--backend", "mem", "--sentinel-password", spw, "demo")
}

// seedRedis creates the namespace prefix on srv (database db) as a program
// that writes would: the inspecting commands open namespaces read-only and
// refuse one that does not exist.
func seedRedis(t *testing.T, srv *testserver.Redis, user, password string, db int, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: prefix, Username: user, Password: password, DB: db, TLS: srv.ClientTLS()})
	if err != nil {
		t.Fatalf("create namespace %q: %v", prefix, err)
	}
	_ = b.Close()
}

// seedZK creates root on a ZooKeeper as auth ("user:password", digest).
func seedZK(t *testing.T, servers, root, auth string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := zk.Open(ctx, zk.Config{Servers: strings.Split(servers, ","), Root: root, Auth: auth})
	if err != nil {
		t.Fatalf("create root %q: %v", root, err)
	}
	_ = b.Close()
}
