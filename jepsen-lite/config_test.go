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
	} {
		if err := jepsenlite.CheckConfig(cfg); err != nil {
			t.Errorf("CheckConfig(%+v) = %v, want nil", cfg, err)
		}
	}
}
