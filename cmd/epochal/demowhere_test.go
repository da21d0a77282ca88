package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/epochal/epochal/internal/testkit/testserver"
)

// TestDemoPrintsWhere: a demo on Redis or ZooKeeper without --prefix or
// --root prints the fresh prefix or root it used and a command that
// inspects it; that command, run as printed, lists the demo's accounts.
func TestDemoPrintsWhere(t *testing.T) {
	inspectCmd := regexp.MustCompile(`(?m)^(prefix|root): +(\S+) \(inspect: epochal (.*) refs ls\)$`)
	check := func(t *testing.T, args ...string) {
		var out, errOut bytes.Buffer
		code := run(t.Context(), append(args, "demo", "--duration", "200ms", "--accounts", "3"), &out, &errOut)
		if code != exitOK {
			t.Fatalf("demo: exit %d\n%s%s", code, out.String(), errOut.String())
		}
		m := inspectCmd.FindStringSubmatch(out.String())
		if m == nil || !strings.Contains(m[3], m[2]) {
			t.Fatalf("demo output names no prefix or root and inspect command:\n%s", out.String())
		}
		out.Reset()
		if code := run(t.Context(), append(strings.Fields(m[3]), "refs", "ls", "--json"), &out, &errOut); code != exitOK {
			t.Fatalf("epochal %s refs ls: exit %d: %s", m[3], code, errOut.String())
		}
		for _, name := range []string{"bank/acct-000", "bank/acct-001", "bank/acct-002"} {
			if !strings.Contains(out.String(), `"name": "`+name+`"`) {
				t.Errorf("epochal %s refs ls: no %s in\n%s", m[3], name, out.String())
			}
		}
	}
	t.Run("redis", func(t *testing.T) {
		srv := testserver.StartRedis(t, testserver.RedisOptions{})
		check(t, "--backend", "redis", "--addr", srv.Addr)
	})
	t.Run("zk", func(t *testing.T) {
		srv := testserver.StartZK(t)
		check(t, "--backend", "zk", "--addr", srv.ConnectString())
	})
	t.Run("mem", func(t *testing.T) {
		out, _, err := runCLI(t, "demo", "--duration", "100ms", "--accounts", "2")
		if err != nil || inspectCmd.MatchString(out) {
			t.Errorf("demo on mem: %v; it has nothing to inspect from outside, yet says\n%s", err, out)
		}
	})
}
