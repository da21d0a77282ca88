package jepsenlite_test

import (
	"testing"
	"time"

	"github.com/epochal/epochal/internal/testkit/testserver"
	jepsenlite "github.com/epochal/epochal/jepsen-lite"
)

// TestMixedRuns: the mixed workload, each backend the coordinator in
// turn, with faults in both clusters, among them a lagging ZooKeeper
// follower: no anomaly.
func TestMixedRuns(t *testing.T) {
	for _, tc := range []struct {
		coordinator string
		nemesis     []string
	}{
		{"redis", []string{"kill", jepsenlite.FaultLag, "reset", jepsenlite.NemesisClientKill}},
		{"zk", []string{jepsenlite.FaultLag, "leader", "partition", jepsenlite.NemesisClientKill}},
	} {
		t.Run(tc.coordinator, func(t *testing.T) {
			testserver.RequireRedis(t)
			testserver.RequireZK(t)
			sum := short(t, jepsenlite.Config{Workload: "mixed", Coordinator: tc.coordinator, Nemesis: tc.nemesis, Nodes: 3,
				Time: 6 * time.Second, Interval: 750 * time.Millisecond, Workers: 2, Clients: 3, Rate: 400})
			t.Logf("%s", describe(sum))
			if !sum.Passed() {
				t.Fatalf("anomalies on mixed with coordinator %s: %s", tc.coordinator, describe(sum))
			}
			if sum.OK < 20 || len(sum.Faults) == 0 {
				t.Fatalf("the run tested little: %s", describe(sum))
			}
			for _, r := range sum.Results {
				if r.OK == 0 {
					t.Errorf("checker %s saw no operation that completed ok", r.Checker)
				}
			}
		})
	}
}

// TestWatchRuns: the watch workload on each backend, with faults that
// break change feeds (on Redis) and slow watchers: every committed
// version delivered, or announced.
func TestWatchRuns(t *testing.T) {
	for _, tc := range []struct {
		backend string
		nemesis []string
		nodes   int
	}{
		{"mem", []string{jepsenlite.NemesisSkew}, 0},
		{"redis", []string{jepsenlite.FaultSlow, "reset", "kill", jepsenlite.NemesisClientKill}, 0},
		{"zk", []string{jepsenlite.FaultLag, "reset", "pause", jepsenlite.NemesisClientKill}, 3},
	} {
		t.Run(tc.backend, func(t *testing.T) {
			switch tc.backend {
			case "redis":
				testserver.RequireRedis(t)
			case "zk":
				testserver.RequireZK(t)
			}
			sum := short(t, jepsenlite.Config{Backend: tc.backend, Workload: "watch", Nemesis: tc.nemesis, Nodes: tc.nodes,
				Time: 6 * time.Second, Interval: 750 * time.Millisecond, Workers: 2, Clients: 3, Rate: 400})
			t.Logf("%s", describe(sum))
			if !sum.Passed() {
				t.Fatalf("anomalies on %s/watch: %s", tc.backend, describe(sum))
			}
			if sum.OK < 20 || len(sum.Faults) == 0 {
				t.Fatalf("the run tested little: %s", describe(sum))
			}
		})
	}
}
