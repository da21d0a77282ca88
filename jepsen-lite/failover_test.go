package jepsenlite

import (
	"context"
	"strings"
	"testing"
	"time"

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

// TestSentinelClusterFailover: the Sentinel topology starts, a client
// connects through the sentinels, a commit acknowledged with
// WaitReplicas 1 survives the faults failover and failover-pause (the
// master changes each time), and the client finds it through the new
// master.
func TestSentinelClusterFailover(t *testing.T) {
	testserver.RequireRedis(t)
	c, _ := clusterTestStart(t, clusterConfig{Backend: "redis", RedisTopology: TopologySentinel, Proxied: true}, FaultFailover, FaultFailoverPause)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d, err := openWorkerDriver(ctx, workerConfig{Backend: "redis", Addrs: c.Addrs(), Namespace: "failover-test",
		RedisSentinel: "epochal", RedisWait: 1}, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, err := stm.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := refs.New(ctx, s, "x", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, 42); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{FaultFailover, FaultFailoverPause} {
		before, err := c.sentinel.MasterAddr(time.Second)
		if err != nil {
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
		var v int
		for {
			v, err = r.Deref(ctx)
			if err == nil || ctx.Err() != nil {
				break
			}
			t.Logf("read after %s: %v (retrying)", kind, err)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		if err != nil || v != 42 {
			t.Fatalf("x after %s = %d, %v; want 42", kind, v, err)
		}
	}
}
