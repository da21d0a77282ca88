package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/epochal/epochal/internal/testkit/testserver"
)

// TestDemoOnRedis: the demo runs against a real redis-server and passes
// its check; twice on one prefix, the second run joins the first's accounts.
func TestDemoOnRedis(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	for i := 0; i < 2; i++ {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"--backend", "redis", "--addr", srv.Addr, "--prefix", "demo-test",
			"demo", "--duration", "300ms", "--accounts", "4"}, &out, &errOut)
		if code != exitOK || !strings.Contains(out.String(), "check: PASS") || !strings.Contains(out.String(), "backend redis") {
			t.Fatalf("run %d: exit %d\nstdout:\n%s\nstderr:\n%s", i, code, out.String(), errOut.String())
		}
	}
}

// TestDemoRedisUnreachable: a server that is not there is exit code 3 with
// one line on stderr saying what to do.
func TestDemoRedisUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"--backend", "redis", "--addr", addr, "demo", "--duration", "100ms"}, &out, &errOut)
	if code != exitDown || strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0 || !strings.Contains(errOut.String(), "--addr") {
		t.Fatalf("exit %d, stderr %q; want %d and one line naming --addr", code, errOut.String(), exitDown)
	}
}
