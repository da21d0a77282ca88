package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/internal/benchkit"
	"github.com/epochal/epochal/internal/testserver"
	"github.com/epochal/epochal/locks"
)

// BenchmarkRedisLock measures locks.Mutex on the Redis backend beside a
// hand-written lock (SET key token NX PX, retried every setnxRetry while
// held; released by a Lua script that deletes the key only if it still
// holds the token), with benchkit.Locks: uncontended lock+unlock latency
// and round trips, and handoff latency between four goroutines. Both use
// a 10 s lease and one go-redis client (default options) per variant.
func BenchmarkRedisLock(b *testing.B) {
	srv := testserver.StartRedis(b, testserver.RedisOptions{})
	ec, eh := xferClient(srv)
	defer ec.Close()
	be, err := redis.New(ec, redis.Config{Prefix: newPrefix("benchlock")})
	if err != nil {
		b.Fatal(err)
	}
	hc, hh := xferClient(srv)
	defer hc.Close()
	benchkit.Locks(b, []benchkit.LockImpl{
		{
			Name: "epochal",
			New: func(b *testing.B, name string) benchkit.Lock {
				m, err := locks.NewMutex(be, name, locks.WithLease(10*time.Second))
				if err != nil {
					b.Fatal(err)
				}
				return m
			},
			Count: eh.n.Load, Unit: "round-trips/op",
		},
		{
			Name:  "setnx",
			New:   func(b *testing.B, name string) benchkit.Lock { return &setnxLock{c: hc, key: "setnx:" + name} },
			Count: hh.n.Load, Unit: "round-trips/op",
		},
	})
}

// setnxRetry is how long the hand-written lock waits before trying again.
const setnxRetry = time.Millisecond

var setnxRelease = goredis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0`)

// setnxLock is the usual hand-written Redis lock.
type setnxLock struct {
	c     *goredis.Client
	key   string
	token string
}

func (l *setnxLock) Lock(ctx context.Context) error {
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	tok := hex.EncodeToString(raw[:])
	for {
		ok, err := l.c.SetNX(ctx, l.key, tok, 10*time.Second).Result()
		if err != nil {
			return err
		}
		if ok {
			l.token = tok
			return nil
		}
		t := time.NewTimer(setnxRetry)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

func (l *setnxLock) Unlock(ctx context.Context) error {
	return setnxRelease.Run(ctx, l.c, []string{l.key}, l.token).Err()
}
