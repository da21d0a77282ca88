package jepsenlite_test

import (
	"strings"
	"testing"
	"time"

	jepsenlite "github.com/epochal/epochal/jepsen-lite"
)

// TestConfigRefused: settings a run cannot honour are refused by
// CheckConfig (and so by Run) with an error naming the flag, before
// anything starts; none is silently replaced by a default or ignored.
func TestConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		cfg  jepsenlite.Config
		want string
	}{
		// ZooKeeper runs 1 or 3 nodes; Redis one server.
		{jepsenlite.Config{Backend: "zk", Workload: "bank", Nodes: 2, Time: time.Second}, "--nodes 2: want 1 or 3"},
		{jepsenlite.Config{Backend: "zk", Workload: "bank", Nodes: 5, Time: time.Second}, "--nodes 5: want 1 or 3"},
		{jepsenlite.Config{Backend: "zk", Workload: "bank", Nodes: -1, Time: time.Second}, "--nodes -1: want 1 or 3"},
		{jepsenlite.Config{Backend: "redis", Workload: "bank", Nodes: 3, Time: time.Second}, "--nodes 3 is for ZooKeeper"},
		{jepsenlite.Config{Backend: "mem", Workload: "bank", Nodes: 3, Time: time.Second}, "--nodes 3 is for ZooKeeper"},
		// mixed's client 0 of each process only reads: with one client
		// nothing is written.
		{jepsenlite.Config{Workload: "mixed", Clients: 1, Time: time.Second}, "--clients 1: the mixed workload needs at least 2"},
		// Process numbers are worker*1e9 + client*1e6 (+1 per info), the
		// watchers' worker*1e9 + 9e8: 901 clients collide with them.
		// mixed's appended values are worker*1e9 + (client+1)*1e7 + n:
		// 100 clients repeat the next worker's.
		{jepsenlite.Config{Backend: "mem", Workload: "bank", Clients: 901, Time: time.Second}, "--clients 901: at most 900"},
		{jepsenlite.Config{Workload: "mixed", Clients: 100, Time: time.Second}, "--clients 100: at most 99"},
		// Negative values were silently replaced by the defaults.
		{jepsenlite.Config{Backend: "mem", Workload: "bank", Workers: -1, Time: time.Second}, "--workers -1"},
		{jepsenlite.Config{Backend: "mem", Workload: "bank", Clients: -1, Time: time.Second}, "--clients -1"},
		{jepsenlite.Config{Backend: "mem", Workload: "bank", Interval: -time.Second, Time: time.Second}, "--interval -1s"},
		{jepsenlite.Config{Backend: "mem", Workload: "bank", CheckTimeout: -time.Second, Time: time.Second}, "--check-timeout -1s"},
		{jepsenlite.Config{Backend: "mem", Workload: "bank", Lease: -time.Second, Time: time.Second}, "--lease -1s"},
	} {
		if err := jepsenlite.CheckConfig(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckConfig(%+v) = %v, want an error saying %s", tc.cfg, err, tc.want)
		}
	}
	// What is allowed stays allowed.
	for _, cfg := range []jepsenlite.Config{
		{Backend: "zk", Workload: "bank", Nodes: 1, Time: time.Second},
		{Backend: "zk", Workload: "bank", Nodes: 3, Time: time.Second},
		{Backend: "redis", Workload: "bank", Nodes: 1, Time: time.Second},
		{Backend: "redis", Workload: "bank", Time: time.Second},
		{Workload: "mixed", Coordinator: "redis", Nodes: 3, Time: time.Second},
		{Workload: "mixed", Clients: 2, Time: time.Second},
		{Workload: "mixed", Clients: 99, Time: time.Second},
		{Backend: "mem", Workload: "bank", Clients: 900, Time: time.Second},
	} {
		if err := jepsenlite.CheckConfig(cfg); err != nil {
			t.Errorf("CheckConfig(%+v) = %v, want nil", cfg, err)
		}
	}
}
