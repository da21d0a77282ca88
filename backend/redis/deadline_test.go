package redis_test

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/internal/testkit/deadlinetest"
	"github.com/epochal/epochal/internal/testkit/testserver"
)

// deadlineHarness reaches srv through open.
func deadlineHarness(srv *testserver.Redis, open func(ctx context.Context, addr, ns string) (backend.Driver, error)) deadlinetest.Harness {
	return deadlinetest.Harness{
		Addr: srv.Addr, Open: open,
		Pause: srv.Pause, Resume: srv.Resume,
		LockLease: 10 * time.Second,
	}
}

// TestDeadlines: with the server stopped (SIGSTOP), and behind a proxy that
// swallows every byte, every call (Dosync on both paths, Deref, atoms,
// promises, delays, locks, groups, Open) returns by its deadline, and
// afterwards everything works and nothing was lost or applied twice.
func TestDeadlines(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	deadlinetest.Run(t, deadlineHarness(srv, func(ctx context.Context, addr, ns string) (backend.Driver, error) {
		return redis.Open(ctx, redis.Config{Addr: addr, Prefix: ns})
	}))
}

// TestDeadlinesOverCallersClient: redis.New over a client made with
// go-redis's defaults (ContextTimeoutEnabled false: the client itself
// waits out its read timeout, whatever the ctx) keeps the deadlines too.
func TestDeadlinesOverCallersClient(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	deadlinetest.RunStopped(t, deadlineHarness(srv, func(ctx context.Context, addr, ns string) (backend.Driver, error) {
		c := goredis.NewClient(&goredis.Options{Addr: addr})
		b, err := redis.New(c, redis.Config{Prefix: ns, DialTimeout: time.Until(deadlineOf(ctx))})
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		return closing{b, c}, nil
	}))
}

func deadlineOf(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(time.Minute)
}

// closing closes the caller's client with the backend.
type closing struct {
	*redis.Backend
	c *goredis.Client
}

func (c closing) Close() error {
	err := c.Backend.Close()
	_ = c.c.Close()
	return err
}
