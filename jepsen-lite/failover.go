package jepsenlite

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/internal/servers"
)

// FaultFailover forces a Redis failover in a Sentinel topology
// (Config.RedisTopology "sentinel"): a sentinel is asked for SENTINEL
// FAILOVER, which promotes the replica while the old master still runs
// and still takes writes until the sentinels reconfigure it as the new
// master's replica (which drops what the new master lacks). Heal waits
// until the old master has rejoined as a replica with its link up, for
// as long as its ctx allows (the runner gives each heal 60 s).
const FaultFailover = "failover"

// FaultFailoverPause pauses the Redis master (SIGSTOP) until the
// sentinels take it for down and promote the replica (about 1 s of
// down-after-milliseconds, then their vote); heal resumes it, and waits
// until the sentinels have made it the new master's replica. What the
// replica had not received when the master stopped is lost.
const FaultFailoverPause = "failover-pause"

// Redis topologies (Config.RedisTopology).
const (
	TopologySingle   = "single"   // one redis-server behind a proxy (the default)
	TopologySentinel = "sentinel" // a master, a replica and three sentinels; clients go through Sentinel
)

// checkRedisTopology checks RedisTopology and RedisWait, and fixes which
// faults a Sentinel topology supports in supported.
func (c *Config) checkRedisTopology(supported map[string]bool) error {
	switch c.RedisTopology {
	case "", TopologySingle:
	case TopologySentinel:
		if c.Backend != "redis" || c.Second() != "" {
			return fmt.Errorf("jepsen: --redis-topology sentinel is for --backend redis (one backend)")
		}
		for _, k := range clusterFaults("redis", 1) {
			delete(supported, k) // no proxies, and kill/pause would name one node of two
		}
		supported[FaultFailover] = true
		supported[FaultFailoverPause] = true
	default:
		return fmt.Errorf("jepsen: --redis-topology %q: want single or sentinel", c.RedisTopology)
	}
	if c.RedisWait < 0 {
		return fmt.Errorf("jepsen: --redis-wait %d: want 0 (no WAIT) or more replicas", c.RedisWait)
	}
	if c.RedisWait > 0 && c.RedisTopology != TopologySentinel {
		return fmt.Errorf("jepsen: --redis-wait needs replicas: --redis-topology sentinel")
	}
	return nil
}

// redisArgs are the worker flags of RedisTopology and RedisWait.
func (c *Config) redisArgs() []string {
	var args []string
	if c.RedisTopology == TopologySentinel {
		args = append(args, "--redis-sentinel", servers.SentinelMaster)
	}
	if c.RedisWait > 0 {
		args = append(args, "--redis-wait", strconv.Itoa(c.RedisWait))
	}
	return args
}

// openWorkerDriver opens a worker's first backend: through Sentinel
// (go-redis's failover client, and redis.New over it) when the worker was
// given a master name, else as openDriver does.
func openWorkerDriver(ctx context.Context, cfg workerConfig, linearizable bool, home int) (backend.Driver, error) {
	if cfg.Backend != "redis" || (cfg.RedisSentinel == "" && cfg.RedisWait == 0) {
		return openDriver(ctx, cfg.Backend, cfg.Addrs, cfg.Namespace, linearizable, home, cfg.WatchKeep)
	}
	rc := redis.Config{Prefix: cfg.Namespace, WatchKeep: cfg.WatchKeep, WaitReplicas: cfg.RedisWait}
	if cfg.RedisSentinel == "" {
		rc.Addr = cfg.Addrs[0]
		return redis.Open(ctx, rc)
	}
	c := goredis.NewFailoverClient(&goredis.FailoverOptions{
		MasterName:    cfg.RedisSentinel,
		SentinelAddrs: cfg.Addrs,
		MaxRetries:    3, // as redis.Open: every retried script is idempotent
	})
	b, err := redis.New(c, rc)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return &closeBoth{Backend: b, c: c}, nil
}

// closeBoth is a backend over a client of its own: Close closes both.
type closeBoth struct {
	*redis.Backend
	c goredis.UniversalClient
}

func (b *closeBoth) Close() error {
	err := b.Backend.Close()
	if cerr := b.c.Close(); err == nil {
		err = cerr
	}
	return err
}

// startSentinel starts the Sentinel topology of a Redis cluster.
func (c *cluster) startSentinel(cfg clusterConfig) error {
	set, err := servers.StartSentinelSet(servers.SentinelOptions{
		Dir:  clusterDir(cfg.Dir, "redis"),
		Args: []string{"appendonly yes", "appendfsync always"},
	})
	if err != nil {
		return fmt.Errorf("jepsen: starting redis with sentinels: %w", err)
	}
	c.sentinel = set
	c.addrs = set.SentinelAddrs()
	return nil
}

// injectFailover forces a failover (see FaultFailover).
func (c *cluster) injectFailover(f *clusterFault) error {
	old, cur, err := c.sentinel.Failover()
	if err != nil {
		return err
	}
	f.desc = fmt.Sprintf("fail over from %s to %s", old, cur)
	f.undo = func() error { return nil } // the sentinels demote the old master by themselves
	return nil
}

// injectFailoverPause pauses the master until it is replaced (see
// FaultFailoverPause).
func (c *cluster) injectFailoverPause(f *clusterFault) error {
	old, cur, err := c.sentinel.PauseMaster()
	if err != nil {
		return err
	}
	f.desc = fmt.Sprintf("pause %s until the sentinels promote %s", old, cur)
	f.undo = old.Resume
	return nil
}

// sentinelFaults are the faults of a Sentinel topology.
func sentinelFaults() []string { return slices.Clone([]string{FaultFailover, FaultFailoverPause}) }
