package redis_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend/redis"
)

// TestNewContextInterrupted: NewContext returns when its ctx is canceled,
// with an error wrapping ctx's, over a server that never answers, rather
// than after Config.DialTimeout (which bounds New alone).
func TestNewContextInterrupted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn // accepted, never answered
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	c := goredis.NewClient(&goredis.Options{Addr: ln.Addr().String()})
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err = redis.NewContext(ctx, c, redis.Config{Prefix: "nc", DialTimeout: 30 * time.Second})
	if took := time.Since(start); !errors.Is(err, context.Canceled) || took > 5*time.Second {
		t.Errorf("NewContext, canceled after 200ms: %v after %v; want context.Canceled at once", err, took.Round(time.Millisecond))
	}
}
