package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	gozk "github.com/go-zookeeper/zk"
	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/stm"
)

// CountHook counts a go-redis client's round trips: one per command
// processed, one per pipeline or MULTI/EXEC pipeline sent (N).
type CountHook struct{ N atomic.Int64 }

func (h *CountHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *CountHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error { h.N.Add(1); return next(ctx, cmd) }
}
func (h *CountHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error { h.N.Add(1); return next(ctx, cmds) }
}

// redisClient returns a new go-redis client of t's server with default
// options (as a user would make one) and a round-trip counter, after a
// PING.
func redisClient(ctx context.Context, t Target) (*goredis.Client, *CountHook, error) {
	c := goredis.NewClient(&goredis.Options{Addr: t.RedisAddr, Username: t.RedisUser, Password: t.RedisPassword, TLSConfig: t.RedisTLS})
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, nil, fmt.Errorf("redis %s: %w", t.RedisAddr, err)
	}
	h := &CountHook{}
	c.AddHook(h)
	return c, h, nil
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

// zkSession returns a new go-zookeeper connection of t's servers once its
// session is up (within ctx).
func zkSession(ctx context.Context, t Target) (*gozk.Conn, error) {
	c, ev, err := gozk.Connect(t.ZKServers, 10*time.Second, gozk.WithLogInfo(false), gozk.WithLogger(discardLogger{}))
	if err != nil {
		return nil, err
	}
	up := make(chan struct{})
	go func() {
		once := false
		for e := range ev {
			if e.State == gozk.StateHasSession && !once {
				once = true
				close(up)
			}
		}
	}()
	select {
	case <-up:
		return c, nil
	case <-ctx.Done():
		go c.Close() // it waits for a server that may not answer
		return nil, ctx.Err()
	}
}

// zkConn returns a new go-zookeeper connection of t's servers, once its
// session is up, and a new root node under which the caller keeps its
// nodes.
func zkConn(ctx context.Context, t Target, impl string) (*gozk.Conn, string, error) {
	c, err := zkSession(ctx, t)
	if err != nil {
		return nil, "", err
	}
	root := "/" + t.space(impl)
	if _, err := c.Create(root, nil, 0, gozk.WorldACL(gozk.PermAll)); err != nil {
		c.Close()
		return nil, "", fmt.Errorf("zk create %s: %w", root, err)
	}
	return c, root, nil
}

// epochal is an STM opened on t's backend for one cell, with what is
// counted beside it.
type epochal struct {
	s     *stm.STM
	count func() (int64, bool)
	close func()
}

func (e *epochal) Retries() int64    { return e.s.Stats().Retries }
func (e *epochal) Recomputes() int64 { return e.s.Stats().Recomputes }

func (e *epochal) Count() (int64, bool) { return e.count() }

func (e *epochal) Close() {
	_ = e.s.Close()
	e.close()
}

// openEpochal opens an STM with default options on t's backend, in a new
// key space: on Redis over its own client (whose round trips are
// counted), on ZooKeeper under a new root.
func openEpochal(ctx context.Context, t Target, impl string) (*epochal, error) {
	var (
		drv   backend.Driver
		count = func() (int64, bool) { return 0, false }
		close = func() {}
	)
	switch t.Backend {
	case Mem:
		drv = mem.New()
	case Redis:
		c, h, err := redisClient(ctx, t)
		if err != nil {
			return nil, err
		}
		b, err := redis.New(c, redis.Config{Prefix: t.space(impl), WaitReplicas: t.RedisWait})
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		drv = b
		count = func() (int64, bool) { return h.N.Load(), true }
		close = func() { _ = b.Close(); _ = c.Close() }
	case ZK:
		b, err := zk.Open(ctx, zk.Config{Servers: t.ZKServers, Root: "/" + t.space(impl)})
		if err != nil {
			return nil, err
		}
		drv = b
		count = zkWrites(t)
		close = func() { _ = b.Close() }
	default:
		return nil, fmt.Errorf("unknown backend %q", t.Backend)
	}
	s, err := stm.Open(ctx, drv)
	if err != nil {
		close()
		return nil, err
	}
	return &epochal{s: s, count: count, close: close}, nil
}

// zkWrites counts ZooKeeper writes with t.ZKWrites, when set.
func zkWrites(t Target) func() (int64, bool) {
	return func() (int64, bool) {
		if t.ZKWrites == nil {
			return 0, false
		}
		n, err := t.ZKWrites()
		return n, err == nil
	}
}

// noCount is Count for what counts nothing.
func noCount() (int64, bool) { return 0, false }

var zxidRE = regexp.MustCompile(`Zxid: (0x[0-9a-fA-F]+)`)

// ZxidOf returns a function that reads the newest zxid of the ZooKeeper
// server at addr with the srvr four-letter word (which the server must
// allow: 4lw.commands.whitelist), each read within timeout.
func ZxidOf(addr string, timeout time.Duration) func() (int64, error) {
	return func() (int64, error) {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write([]byte("srvr")); err != nil {
			return 0, err
		}
		out, err := io.ReadAll(c)
		if err != nil {
			return 0, err
		}
		m := zxidRE.FindSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("zk srvr at %s: no Zxid in %q", addr, out)
		}
		return strconv.ParseInt(string(m[1]), 0, 64)
	}
}

// ServerVersion asks t's server for its version: Redis's INFO server
// redis_version, ZooKeeper's srvr first line. "" for mem or when it
// cannot be read.
func ServerVersion(ctx context.Context, t Target) string {
	switch t.Backend {
	case Redis:
		c, _, err := redisClient(ctx, t)
		if err != nil {
			return ""
		}
		defer c.Close()
		info, err := c.Info(ctx, "server").Result()
		if err != nil {
			return ""
		}
		for _, l := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
				return "redis " + v
			}
		}
	case ZK:
		if len(t.ZKServers) == 0 {
			return ""
		}
		c, err := net.DialTimeout("tcp", t.ZKServers[0], 5*time.Second)
		if err != nil {
			return ""
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("srvr")); err != nil {
			return ""
		}
		out, _ := io.ReadAll(c)
		if first, _, _ := strings.Cut(string(out), "\n"); strings.HasPrefix(first, "Zookeeper version:") {
			return "zookeeper " + strings.TrimSpace(strings.TrimPrefix(first, "Zookeeper version:"))
		}
	}
	return ""
}

// Ping checks that t's server answers within t.ConnectTimeout (or ctx):
// Redis a PING, ZooKeeper a session.
func Ping(ctx context.Context, t Target) error {
	if t.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.ConnectTimeout)
		defer cancel()
	}
	switch t.Backend {
	case Redis:
		c, _, err := redisClient(ctx, t)
		if err != nil {
			return err
		}
		return c.Close()
	case ZK:
		c, err := zkSession(ctx, t)
		if err != nil {
			return fmt.Errorf("zk %v: %w", t.ZKServers, err)
		}
		c.Close()
	}
	return nil
}
