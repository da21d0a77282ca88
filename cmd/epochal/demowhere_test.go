package main

import (
	"bytes"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/epochal/epochal/internal/testkit/testserver"
)

// inspectCmd matches the line of a demo's report that names its prefix or
// root and the command that inspects it: the prefix or root (2), the
// command's flags (3) and the variables that must hold its secrets (5:
// "EPOCHAL_PASSWORD", "EPOCHAL_PASSWORD and EPOCHAL_SENTINEL_PASSWORD"),
// if any.
var inspectCmd = regexp.MustCompile(`(?m)^(prefix|root): +(\S+) \(inspect: epochal (.*) refs ls(, with (EPOCHAL_[A-Z_]+(?: and EPOCHAL_[A-Z_]+)*) set)?\)$`)

// checkInspectCmd finds the inspect command in a demo's output and runs
// it as printed, in a subtest, with the variables it names set from env
// (variable: value): it must list the demo's accounts. It must name
// exactly env's variables, and the demo's output must hold none of their
// values (nor, for user:password, the password).
func checkInspectCmd(t *testing.T, demoOut string, env map[string]string) {
	t.Helper()
	m := inspectCmd.FindStringSubmatch(demoOut)
	if m == nil || !strings.Contains(m[3], m[2]) {
		t.Fatalf("demo output names no prefix or root and inspect command:\n%s", demoOut)
	}
	var names []string
	if m[5] != "" {
		names = strings.Split(m[5], " and ")
	}
	for _, v := range env {
		if strings.Contains(demoOut, v) || strings.Contains(demoOut, v[strings.LastIndex(v, ":")+1:]) {
			t.Fatalf("the demo's output holds a secret:\n%s", demoOut)
		}
	}
	want := slices.Sorted(maps.Keys(env))
	if slices.Sort(names); !slices.Equal(names, want) {
		t.Fatalf("the inspect command names the variables %q for its secrets; want %q: %s", names, want, m[0])
	}
	t.Run("printed command", func(t *testing.T) {
		for k, v := range env {
			t.Setenv(k, v)
		}
		var out, errOut bytes.Buffer
		if code := run(t.Context(), append(strings.Fields(m[3]), "refs", "ls", "--json"), &out, &errOut); code != exitOK {
			t.Fatalf("epochal %s refs ls: exit %d: %s", m[3], code, errOut.String())
		}
		for _, name := range []string{"bank/acct-000", "bank/acct-001", "bank/acct-002"} {
			if !strings.Contains(out.String(), `"name": "`+name+`"`) {
				t.Errorf("epochal %s refs ls: no %s in\n%s", m[3], name, out.String())
			}
		}
	})
}

// TestDemoPrintsWhere: a demo on Redis or ZooKeeper without --prefix or
// --root prints the fresh prefix or root it used and a command that
// inspects it, with every connection flag it needs (--db, --tls, --tls-ca,
// the address a URL names) and no password (the variable to set instead);
// that command, run as printed, lists the demo's accounts.
func TestDemoPrintsWhere(t *testing.T) {
	check := func(t *testing.T, env map[string]string, args ...string) {
		t.Helper()
		var out, errOut bytes.Buffer
		code := run(t.Context(), append(args, "demo", "--duration", "200ms", "--accounts", "3"), &out, &errOut)
		if code != exitOK {
			t.Fatalf("demo: exit %d\n%s%s", code, out.String(), errOut.String())
		}
		checkInspectCmd(t, out.String(), env)
	}
	t.Run("redis", func(t *testing.T) {
		srv := testserver.StartRedis(t, testserver.RedisOptions{})
		check(t, nil, "--backend", "redis", "--addr", srv.Addr)
		check(t, nil, "--backend", "redis", "--addr", srv.Addr, "--db", "3")
	})
	t.Run("redis-tls", func(t *testing.T) {
		const pw = "where-Secret-12"
		srv := testserver.StartRedis(t, testserver.RedisOptions{TLS: true, User: "alice", Password: pw})
		env := map[string]string{envPassword: pw}
		check(t, env, "--backend", "redis", "--addr", "rediss://alice:"+pw+"@"+srv.Addr+"/2", "--tls-ca", srv.CAFile)
		check(t, env, "--backend", "redis", "--addr", srv.Addr, "--tls", "--tls-ca", srv.CAFile, "--user", "alice", "--password", pw, "--db", "1")
	})
	t.Run("zk", func(t *testing.T) {
		srv := testserver.StartZK(t)
		check(t, nil, "--backend", "zk", "--addr", srv.ConnectString())
		check(t, map[string]string{envAuth: "bob:zk-Where-13"}, "--backend", "zk", "--addr", srv.ConnectString(), "--auth", "bob:zk-Where-13")
	})
	t.Run("mem", func(t *testing.T) {
		out, _, err := runCLI(t, "demo", "--duration", "100ms", "--accounts", "2")
		if err != nil || inspectCmd.MatchString(out) {
			t.Errorf("demo on mem: %v; it has nothing to inspect from outside, yet says\n%s", err, out)
		}
	})
}
