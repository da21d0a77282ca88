package redis_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/backendtest"
	"github.com/epochal/epochal/internal/testkit/testserver"
)

// TestClusterConformance runs the driver suite on a three-master Redis
// Cluster: every key of a prefix shares its hash tag, so every script and
// MULTI/EXEC runs on one node.
func TestClusterConformance(t *testing.T) {
	var addrs []string
	for i := 0; i < 3; i++ {
		srv := testserver.StartRedis(t, testserver.RedisOptions{Args: []string{"cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 15000"}})
		addrs = append(addrs, srv.Addr)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli (package redis-tools, installed with redis-server) is missing: %v", err)
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Every node must see the cluster ok before the suite starts: one that
	// has not heard of all slots yet answers CLUSTERDOWN. (The node timeout
	// is long so that a loaded machine does not mark a slow node failed.)
	deadline := time.Now().Add(60 * time.Second)
	for _, addr := range addrs {
		n := goredis.NewClient(&goredis.Options{Addr: addr})
		for {
			info, err := n.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				_ = n.Close()
				t.Fatalf("node %s never saw the cluster ok: %v %s", addr, err, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
		_ = n.Close()
	}
	c := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	backendtest.Run(t, func(t *testing.T) backend.Driver {
		b, err := redis.New(c, redis.Config{Prefix: newPrefix("cluster")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}
