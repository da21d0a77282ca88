package main

import (
	"strings"
	"testing"
)

// TestJepsenUsage: bad command lines of epochal jepsen are usage errors
// (exit 2) saying what is wrong, before anything starts; none passes.
func TestJepsenUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		// check takes exactly one run directory.
		{[]string{"jepsen", "check"}, "takes 1 argument(s), RUN-DIR; got 0"},
		{[]string{"jepsen", "check", "a", "b"}, "takes 1 argument(s), RUN-DIR; got 2"},
		// ZooKeeper runs 1 or 3 nodes (2 exited 3, a server that would
		// not start); Redis one (3 was ignored).
		{[]string{"--backend", "zk", "jepsen", "--nodes", "2"}, "--nodes 2: want 1 or 3"},
		{[]string{"--backend", "redis", "jepsen", "--nodes", "3"}, "--nodes 3 is for ZooKeeper"},
	} {
		out, _, err := runCLI(t, tc.args...)
		if code := exitCode(err); code != exitUsage || err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(out, "PASS") {
			t.Errorf("epochal %q: exit %d, error %v; want exit %d and an error saying %s", tc.args, code, err, exitUsage, tc.want)
		}
	}
}
