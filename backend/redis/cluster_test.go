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
		srv := testserver.StartRedis(t, testserver.RedisOptions{Args: []string{"cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 2000"}})
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
	c := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster never became ok: %v %s", err, info)
		}
		time.Sleep(100 * time.Millisecond)
	}
	backendtest.Run(t, func(t *testing.T) backend.Driver {
		b, err := redis.New(c, redis.Config{Prefix: newPrefix("cluster")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}
