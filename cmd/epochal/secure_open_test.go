package main

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// silentServer listens on loopback and accepts connections it never
// answers (held open until the test ends); it returns its address.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	mustNoErr(t, err, "listen")
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// TestOpenInterrupted: an interrupt (the command's ctx canceled) while
// the backend is being opened ends the command at once, over Sentinel and
// Cluster as over one server, rather than after --connect-timeout; and
// --connect-timeout bounds the opening of each.
func TestOpenInterrupted(t *testing.T) {
	addr := silentServer(t)
	for _, c := range []struct {
		name  string
		flags []string
	}{
		{"single", nil},
		{"sentinel", []string{"--sentinel-master", "mymaster"}},
		{"cluster", []string{"--cluster"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append(append([]string{"--backend", "redis", "--addr", addr, "--password", "x"}, c.flags...), "clock")
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(300*time.Millisecond, cancel)
			start := time.Now()
			var out, errOut strings.Builder
			code := run(ctx, append([]string{"--connect-timeout", "30s"}, args...), &out, &errOut)
			if took := time.Since(start); code == exitOK || took > 3*time.Second || !strings.Contains(errOut.String(), "interrupted") {
				t.Errorf("interrupted after 300ms: exit %d after %v, stderr %q; want it to end at once, saying interrupted", code, took.Round(time.Millisecond), errOut.String())
			}
			start = time.Now()
			out.Reset()
			errOut.Reset()
			code = run(context.Background(), append([]string{"--connect-timeout", "1s"}, args...), &out, &errOut)
			if took := time.Since(start); code != exitDown || took > 3*time.Second {
				t.Errorf("--connect-timeout 1s: exit %d after %v, stderr %q; want exit 3 within about 1s", code, took.Round(time.Millisecond), errOut.String())
			}
		})
	}
}

// TestRedisClientsBoundByCtx: the Sentinel and Cluster clients the
// command makes bound each request by its ctx's deadline
// (ContextTimeoutEnabled), as redis.Open's does for one server; so
// --connect-timeout bounds each request, not go-redis's own read timeout
// and retries.
func TestRedisClientsBoundByCtx(t *testing.T) {
	for _, flags := range [][]string{{"--sentinel-master", "m"}, {"--cluster"}} {
		g := &globals{backend: backendRedis, addr: "127.0.0.1:1", connect: time.Second}
		if flags[0] == "--cluster" {
			g.sec.cluster = true
		} else {
			g.sec.sentinelMaster = "m"
		}
		c, _ := g.redisClient([]string{g.addr})
		var on bool
		switch c := c.(type) {
		case *goredis.ClusterClient:
			on = c.Options().ContextTimeoutEnabled
		case *goredis.Client:
			on = c.Options().ContextTimeoutEnabled
		default:
			t.Fatalf("%v: a %T", flags, c)
		}
		_ = c.Close()
		if !on {
			t.Errorf("%v: the client's ContextTimeoutEnabled is false", flags)
		}
	}
}
