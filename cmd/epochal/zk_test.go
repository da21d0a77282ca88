package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/epochal/epochal/internal/testkit/testserver"
)

// TestDemoOnZK: the demo runs against a real ZooKeeper and passes its
// check; twice on one root, the second run joins the first's accounts.
func TestDemoOnZK(t *testing.T) {
	srv := testserver.StartZK(t)
	for i := 0; i < 2; i++ {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"--backend", "zk", "--addr", srv.ConnectString(), "--root", "/demo-test",
			"demo", "--duration", "300ms", "--accounts", "4"}, &out, &errOut)
		if code != exitOK || !strings.Contains(out.String(), "check: PASS") || !strings.Contains(out.String(), "backend zk") {
			t.Fatalf("run %d: exit %d\nstdout:\n%s\nstderr:\n%s", i, code, out.String(), errOut.String())
		}
	}
}

// TestDemoZKUnreachable: an ensemble that is not there is exit code 3 with
// one line on stderr saying what to do, within --connect-timeout.
func TestDemoZKUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"--backend", "zk", "--addr", addr, "--connect-timeout", "500ms", "demo", "--duration", "100ms"}, &out, &errOut)
	if code != exitDown || strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0 || !strings.Contains(errOut.String(), "--addr") {
		t.Fatalf("exit %d, stderr %q; want %d and one line naming --addr", code, errOut.String(), exitDown)
	}
}
