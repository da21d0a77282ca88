package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	gostm "github.com/anacrolix/stm"
	gozk "github.com/go-zookeeper/zk"
	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/locks"
)

// Lease is the lease of Epochal's locks and of the hand-written Redis
// lock in the lock workload (on ZooKeeper, Epochal's session timeout).
const Lease = 10 * time.Second

func lockName(i int) string { return fmt.Sprintf("lock/%04d", i) }

// holders keeps each worker's holders of each lock, made on first use by
// that worker (so only it touches its row).
type holders[H any] struct {
	rows [][]H
	made [][]bool
}

func newHolders[H any](workers, n int) *holders[H] {
	h := &holders[H]{rows: make([][]H, workers), made: make([][]bool, workers)}
	for w := range workers {
		h.rows[w] = make([]H, n)
		h.made[w] = make([]bool, n)
	}
	return h
}

func (h *holders[H]) get(w, i int, mk func() (H, error)) (H, error) {
	if !h.made[w][i] {
		v, err := mk()
		if err != nil {
			return v, err
		}
		h.rows[w][i], h.made[w][i] = v, true
	}
	return h.rows[w][i], nil
}

// epochalLocks: a locks.Mutex per worker and lock.
type epochalLocks struct {
	*epochal
	h *holders[*locks.Mutex]
}

func openEpochalLocks(ctx context.Context, t Target, n, workers int) (Locks, error) {
	e, err := openEpochal(ctx, t, "epochal")
	if err != nil {
		return nil, err
	}
	return &epochalLocks{epochal: e, h: newHolders[*locks.Mutex](workers, n)}, nil
}

func (l *epochalLocks) Lock(ctx context.Context, w, i int) error {
	m, err := l.h.get(w, i, func() (*locks.Mutex, error) {
		return locks.NewMutex(l.s, lockName(i), locks.WithLease(Lease))
	})
	if err != nil {
		return err
	}
	return m.Lock(ctx)
}

func (l *epochalLocks) Unlock(ctx context.Context, w, i int) error {
	return l.h.rows[w][i].Unlock(ctx)
}

// Retries of a lock workload: none (waiting for a holder is not a retry).
func (l *epochalLocks) Retries() int64 { return 0 }

// setnxLocks: the usual hand-written Redis lock: SET key token NX PX,
// tried again every millisecond while held; released by a script that
// deletes the key only if it still holds the token.
type setnxLocks struct {
	*redisPlain
	tokens [][]string
}

// SetNXRetry is how long the hand-written Redis lock waits before trying
// again.
const SetNXRetry = time.Millisecond

var releaseScript = goredis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0`)

func openSetNXLocks(ctx context.Context, t Target, n, workers int) (Locks, error) {
	c, h, err := redisClient(ctx, t)
	if err != nil {
		return nil, err
	}
	p := &redisPlain{c: c, h: h, keys: make([]string, n)}
	space := t.space("setnx")
	for i := range p.keys {
		p.keys[i] = fmt.Sprintf("{%s}:%04d", space, i)
	}
	if err := releaseScript.Load(ctx, c).Err(); err != nil {
		p.Close()
		return nil, err
	}
	l := &setnxLocks{redisPlain: p, tokens: make([][]string, workers)}
	for w := range l.tokens {
		l.tokens[w] = make([]string, n)
	}
	return l, nil
}

func (l *setnxLocks) Lock(ctx context.Context, w, i int) error {
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	tok := hex.EncodeToString(raw[:])
	for {
		ok, err := l.c.SetNX(ctx, l.keys[i], tok, Lease).Result()
		if err != nil {
			return err
		}
		if ok {
			l.tokens[w][i] = tok
			return nil
		}
		t := time.NewTimer(SetNXRetry)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

func (l *setnxLocks) Unlock(ctx context.Context, w, i int) error {
	return releaseScript.Run(ctx, l.c, []string{l.keys[i]}, l.tokens[w][i]).Err()
}

func (l *setnxLocks) Retries() int64 { return 0 }

// zkLocks: go-zookeeper's lock recipe (an ephemeral sequential node, a
// watch on the one before), one *zk.Lock per worker and lock.
type zkLocks struct {
	c     *gozk.Conn
	root  string
	count func() (int64, bool)
	h     *holders[*gozk.Lock]
}

func openZKLocks(ctx context.Context, t Target, n, workers int) (Locks, error) {
	c, root, err := zkConn(ctx, t, "zk-lock")
	if err != nil {
		return nil, err
	}
	return &zkLocks{c: c, root: root, count: zkWrites(t), h: newHolders[*gozk.Lock](workers, n)}, nil
}

func (z *zkLocks) Lock(_ context.Context, w, i int) error {
	l, _ := z.h.get(w, i, func() (*gozk.Lock, error) {
		return gozk.NewLock(z.c, fmt.Sprintf("%s/%04d", z.root, i), gozk.WorldACL(gozk.PermAll)), nil
	})
	return l.Lock()
}

func (z *zkLocks) Unlock(_ context.Context, w, i int) error { return z.h.rows[w][i].Unlock() }
func (z *zkLocks) Retries() int64                           { return 0 }
func (z *zkLocks) Count() (int64, bool)                     { return z.count() }
func (z *zkLocks) Close()                                   { z.c.Close() }

// goSTMLocks: a stm.Var[bool] per lock, taken by a transaction that
// Retries (waits for a change) while it is set.
type goSTMLocks struct{ vs []*gostm.Var[bool] }

func openGoSTMLocks(_ context.Context, _ Target, n, _ int) (Locks, error) {
	l := &goSTMLocks{vs: make([]*gostm.Var[bool], n)}
	for i := range l.vs {
		l.vs[i] = gostm.NewVar(false)
	}
	return l, nil
}

func (l *goSTMLocks) Lock(_ context.Context, _, i int) error {
	v := l.vs[i]
	gostm.Atomically(gostm.VoidOperation(func(tx *gostm.Tx) {
		if v.Get(tx) {
			tx.Retry()
		}
		v.Set(tx, true)
	}))
	return nil
}

func (l *goSTMLocks) Unlock(_ context.Context, _, i int) error {
	gostm.AtomicSet(l.vs[i], false)
	return nil
}

func (l *goSTMLocks) Retries() int64       { return 0 }
func (l *goSTMLocks) Count() (int64, bool) { return noCount() }
func (l *goSTMLocks) Close()               {}

// mutexLocks: a sync.Mutex per lock.
type mutexLocks struct{ ms []sync.Mutex }

func openMutexLocks(_ context.Context, _ Target, n, _ int) (Locks, error) {
	return &mutexLocks{ms: make([]sync.Mutex, n)}, nil
}

func (l *mutexLocks) Lock(_ context.Context, _, i int) error   { l.ms[i].Lock(); return nil }
func (l *mutexLocks) Unlock(_ context.Context, _, i int) error { l.ms[i].Unlock(); return nil }
func (l *mutexLocks) Retries() int64                           { return 0 }
func (l *mutexLocks) Count() (int64, bool)                     { return noCount() }
func (l *mutexLocks) Close()                                   {}
