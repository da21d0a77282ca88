package jepsenlite

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/internal/servers"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// TestRedisTopologyConfig: the Sentinel topology's flags are checked.
func TestRedisTopologyConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string // "" for accepted
	}{
		{Config{Backend: "redis", Workload: "bank", RedisTopology: "sentinel", Nemesis: []string{FaultFailover}, Time: 30 * time.Second}, ""},
		{Config{Backend: "redis", Workload: "bank", RedisTopology: "sentinel", RedisWait: 1, Nemesis: []string{FaultFailover}, Time: 30 * time.Second}, ""},
		{Config{Backend: "redis", Workload: "bank", Nemesis: []string{FaultFailover}, Time: 30 * time.Second}, `nemesis "failover" is not available`},
		{Config{Backend: "redis", Workload: "bank", RedisTopology: "sentinel", Nemesis: []string{FaultPartition}, Time: 30 * time.Second}, `nemesis "partition" is not available`},
		{Config{Backend: "redis", Workload: "bank", RedisWait: 1, Time: 30 * time.Second}, "--redis-wait needs replicas"},
		{Config{Backend: "redis", Workload: "bank", RedisTopology: "sentinel", RedisWait: -1, Time: 30 * time.Second}, "--redis-wait -1"},
		{Config{Backend: "zk", Workload: "bank", RedisTopology: "sentinel", Time: 30 * time.Second}, "is for --backend redis"},
		{Config{Backend: "redis", Workload: "bank", RedisTopology: "cluster", Time: 30 * time.Second}, `--redis-topology "cluster"`},
	} {
		err := CheckConfig(tc.cfg)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckConfig(%+v): %v, want accepted", tc.cfg, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("CheckConfig(%+v): %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// TestSentinelClusterFailover: the Sentinel topology starts and a client
// connects through the sentinels with WaitReplicas 1. Before each fault
// (failover, failover-pause: the master changes each time) one value is
// written with the replica up, which must be acknowledged, and one with
// the replica paused (so that it cannot acknowledge within a short
// WaitTimeout), which must not: its writer gets ErrOutcomeUnknown wrapping
// ErrNotReplicated. After the fault the value read through the new master
// is the last acknowledged one or a later one of unknown outcome: no
// acknowledged write was lost.
func TestSentinelClusterFailover(t *testing.T) {
	testserver.RequireRedis(t)
	c, _ := clusterTestStart(t, clusterConfig{Backend: "redis", RedisTopology: TopologySentinel, Proxied: true}, FaultFailover, FaultFailoverPause)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	d, err := openWorkerDriver(ctx, workerConfig{Backend: "redis", Addrs: c.Addrs(), Namespace: "failover-test",
		RedisSentinel: servers.SentinelMaster, RedisWait: 1}, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, err := stm.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	x, err := refs.New(ctx, s, "x", 0)
	if err != nil {
		t.Fatal(err)
	}
	// A second client of the same data, with a WaitTimeout short enough
	// that the replica's pause stays below down-after-milliseconds.
	fc := goredis.NewFailoverClient(&goredis.FailoverOptions{MasterName: servers.SentinelMaster, SentinelAddrs: c.Addrs(), MaxRetries: 3})
	defer fc.Close()
	sb, err := redis.New(fc, redis.Config{Prefix: "failover-test", WaitReplicas: 1, WaitTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	short, err := stm.Open(ctx, sb)
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	xs, err := refs.New(ctx, short, "x", 0)
	if err != nil {
		t.Fatal(err)
	}

	acked, unknown := 0, []int(nil) // what a read may return
	for i, kind := range []string{FaultFailover, FaultFailoverPause} {
		before, err := c.sentinel.MasterAddr(time.Second)
		if err != nil {
			t.Fatal(err)
		}
		v := 10 * (i + 1)
		if err := s.Dosync(ctx, func(tx *txn.Tx) error { x.Set(tx, v); return nil }); err != nil {
			t.Fatalf("writing %d with the replica up: %v", v, err)
		}
		acked, unknown = v, nil
		var replica *servers.Redis
		for _, n := range c.sentinel.Nodes {
			if n.Addr != before {
				replica = n
			}
		}
		if err := replica.Pause(); err != nil {
			t.Fatal(err)
		}
		err = short.Dosync(ctx, func(tx *txn.Tx) error { xs.Set(tx, v+1); return nil })
		if rerr := replica.Resume(); rerr != nil {
			t.Fatal(rerr)
		}
		if !errors.Is(err, stm.ErrOutcomeUnknown) || !errors.Is(err, redis.ErrNotReplicated) {
			t.Fatalf("writing %d with the replica paused: %v; want ErrOutcomeUnknown wrapping ErrNotReplicated, not an acknowledgement", v+1, err)
		}
		unknown = append(unknown, v+1)
		if err := c.sentinel.WaitSettled(30 * time.Second); err != nil {
			t.Fatal(err)
		}

		f, err := c.Inject(ctx, kind)
		if err != nil {
			t.Fatal(err)
		}
		t.Log(f)
		if err := f.Heal(ctx); err != nil {
			t.Fatal(err)
		}
		after, err := c.sentinel.MasterAddr(time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if after == before {
			t.Fatalf("%s: the master is still %s", kind, before)
		}
		// The client may meet the old master (now a replica) until
		// go-redis learns of the switch: retry the read until ctx ends.
		var got int
		for {
			got, err = x.Deref(ctx)
			if err == nil || ctx.Err() != nil {
				break
			}
			t.Logf("read after %s: %v (retrying)", kind, err)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		if err != nil || (got != acked && !slices.Contains(unknown, got)) {
			t.Fatalf("x after %s = %d, %v; want %d (acknowledged) or one of %v (outcome unknown)", kind, got, err, acked, unknown)
		}
	}
}
