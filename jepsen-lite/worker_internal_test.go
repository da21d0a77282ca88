package jepsenlite

import (
	"context"
	"testing"
	"time"

	"github.com/epochal/epochal/internal/testkit/testserver"
)

// TestZKHome: a ZooKeeper client process connects to its home server
// (its worker number modulo the ensemble), through that node's proxy.
func TestZKHome(t *testing.T) {
	testserver.RequireZK(t)
	c, _ := clusterTestStart(t, clusterConfig{Backend: "zk", Nodes: 3, Proxied: true}, "kill", "pause", "leader", "partition", "reset", "delay", "jitter", "slow")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, home := range []int{1, 2, 3} {
		d, err := openDriver(ctx, "zk", c.Addrs(), "/home", false, home, 0)
		if err != nil {
			t.Fatalf("open with home %d: %v", home, err)
		}
		var conns []int
		for _, p := range c.proxies {
			conns = append(conns, p.Conns())
		}
		d.Close()
		t.Logf("home %d: connections per node %v", home, conns)
		if conns[home%3] != 1 {
			t.Errorf("home %d: connections per node %v, want one at node %d", home, conns, home%3)
		}
	}
}
