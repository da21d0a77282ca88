package jepsenlite_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/epochal/epochal/internal/testserver"
	jepsenlite "github.com/epochal/epochal/jepsen-lite"
)

// The test binary runs as a jepsen-lite client process when this is set.
const envWorker = "JEPSENLITE_TEST_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(envWorker) == "1" {
		if err := jepsenlite.WorkerArgsMain(context.Background(), os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// workerCmd re-runs this test binary as a client process.
func workerCmd(args []string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envWorker+"=1")
	return cmd
}

func short(t *testing.T, cfg jepsenlite.Config) *jepsenlite.Summary {
	t.Helper()
	cfg.Dir = t.TempDir()
	cfg.WorkerCmd = workerCmd
	if cfg.Seed == 0 {
		cfg.Seed = 42
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Time+3*time.Minute)
	defer cancel()
	sum, err := jepsenlite.Run(ctx, cfg)
	if err != nil {
		if sum != nil {
			logs, _ := filepath.Glob(filepath.Join(sum.Dir, "worker-*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				if len(b) > 0 {
					t.Logf("%s:\n%s", filepath.Base(l), b)
				}
			}
		}
		t.Fatalf("jepsen run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(sum.Dir, "INCOMPLETE")); err == nil {
		t.Fatalf("a finished run is still marked INCOMPLETE")
	}
	for _, f := range []string{"history.jsonl", "history.edn", "results.json", "report.html"} {
		if st, err := os.Stat(filepath.Join(sum.Dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("run directory lacks %s: %v", f, err)
		}
	}
	return sum
}

// describe sums a run up: its counts, and per checker and anomaly name
// how many were found, with the first one's explanation (cut short).
func describe(sum *jepsenlite.Summary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ops %d (ok %d fail %d info %d), faults %d", sum.Ops, sum.OK, sum.Fail, sum.Info, len(sum.Faults))
	for _, r := range sum.Results {
		n := map[string]int{}
		for _, a := range r.Anomalies {
			n[a.Name]++
		}
		for _, a := range r.Anomalies {
			if n[a.Name] == 0 {
				continue
			}
			explain := a.Explain
			if len(explain) > 400 {
				explain = explain[:400] + " ..."
			}
			fmt.Fprintf(&b, "\n  %s: %s x%d (allowed=%v), first: %s", r.Checker, a.Name, n[a.Name], a.Allowed, explain)
			n[a.Name] = 0
		}
	}
	return b.String()
}

// expectPass runs each workload on a backend with its faults: no anomaly.
// The mixed and watch workloads have tests of their own (TestMixedRuns,
// TestWatchRuns), with the faults that reach their paths.
func expectPass(t *testing.T, backend string, nemesis []string, nodes int) {
	for _, w := range jepsenlite.Workloads {
		if w == "mixed" || w == "watch" {
			continue
		}
		t.Run(w, func(t *testing.T) {
			sum := short(t, jepsenlite.Config{Backend: backend, Workload: w, Nemesis: nemesis, Nodes: nodes,
				Time: 5 * time.Second, Interval: time.Second, Workers: 2, Clients: 3, Rate: 400})
			t.Logf("%s", describe(sum))
			if sum.Failed() {
				t.Fatalf("anomalies on %s/%s: %s", backend, w, describe(sum))
			}
			if sum.OK < 20 {
				t.Fatalf("only %d operations succeeded: the run tested little", sum.OK)
			}
			if len(nemesis) > 0 && len(sum.Faults) == 0 {
				t.Fatalf("no fault was injected")
			}
		})
	}
}

func TestShortRunsMem(t *testing.T) {
	expectPass(t, "mem", []string{jepsenlite.NemesisSkew}, 0)
}

func TestShortRunsRedis(t *testing.T) {
	testserver.RequireRedis(t)
	expectPass(t, "redis", []string{"kill", "pause", "partition", jepsenlite.NemesisClientKill}, 0)
}

func TestShortRunsZK(t *testing.T) {
	testserver.RequireZK(t)
	expectPass(t, "zk", []string{"leader", "pause", "partition", jepsenlite.NemesisClientKill}, 3)
}

// TestLockRuns: the lock workload with the faults that make holders lose
// their leases (a paused or killed server, a killed or paused client).
func TestLockRuns(t *testing.T) {
	for _, tc := range []struct {
		backend string
		nemesis []string
		nodes   int
	}{
		// client-pause freezes a holder past its lease: resumed, it must
		// find Lost closed on its first look (internal/lease looks at the
		// deadline, not only at its timer).
		{"redis", []string{"pause", "kill", jepsenlite.NemesisClientKill, jepsenlite.NemesisClientPause}, 0},
		{"zk", []string{"pause", "kill", jepsenlite.NemesisClientKill, jepsenlite.NemesisClientPause}, 1},
	} {
		t.Run(tc.backend, func(t *testing.T) {
			if tc.backend == "redis" {
				testserver.RequireRedis(t)
			} else {
				testserver.RequireZK(t)
			}
			sum := short(t, jepsenlite.Config{Backend: tc.backend, Workload: "lock", Nemesis: tc.nemesis, Nodes: tc.nodes,
				Time: 5 * time.Second, Interval: time.Second, Workers: 2, Clients: 3, Rate: 400})
			t.Logf("%s", describe(sum))
			if sum.Failed() {
				t.Fatalf("anomalies on %s/lock: %s", tc.backend, describe(sum))
			}
			// On ZooKeeper a lease is the 4 s session timeout: in 5 s
			// with faults few holdings end.
			if sum.OK < 10 || len(sum.Faults) == 0 {
				t.Fatalf("the run tested little: %s", describe(sum))
			}
		})
	}
}

// TestSeededBugsAreCaught: with each deliberate engine bug, a short run
// reports an anomaly, by name. The first four break the protocol on mem;
// the last three are the first review's defects, each on the path only a
// real server pair, a lagging ZooKeeper follower or a broken Redis feed
// reaches.
func TestSeededBugsAreCaught(t *testing.T) {
	cases := []struct {
		bug, workload string
		general       bool
		anomalies     []string // any of them, not allowed
		cfg           jepsenlite.Config
	}{
		{"skip-read-point-check", "bank", false, []string{"wrong-total"}, jepsenlite.Config{}},
		{"no-commute-recompute", "counter", true, []string{"counter-out-of-range"}, jepsenlite.Config{}},
		{"release-intents-early", "register", true, []string{"nonlinearizable"}, jepsenlite.Config{}},
		{"skip-intent-recovery", "bank", true, []string{"wrong-total"}, jepsenlite.Config{}},
		// A ZooKeeper atom's swap raises the floor of a Redis-coordinated
		// STM to a zxid: later transactions read at a point no Redis
		// commit reaches, and first-committer-wins never fires.
		{"observe-foreign-points", "mixed", false, []string{"wrong-total", "lost-update", "lost-append", "G-single", "G0", "G1c", "incompatible-order"},
			jepsenlite.Config{Coordinator: "redis", Time: 4 * time.Second, Rate: 1000}},
		// A follower 20 ms behind its leader says a live record is
		// missing; the Redis intent is rolled back, the commit succeeds
		// without it.
		{"trust-missing-record", "mixed", false, []string{"wrong-total", "lost-append"},
			jepsenlite.Config{Coordinator: "zk", Nodes: 3, Nemesis: []string{jepsenlite.FaultLag}, Time: 5 * time.Second, Interval: time.Second, Rate: 1000}},
		// A watcher stalls for seconds while its Pub/Sub connection
		// crawls (slow) and its commands do not: its feed falls further
		// behind the history than the history reaches back, so a round
		// delivers the feed's versions, then the history's, with a hole
		// between.
		{"watch-gap-first-only", "watch", false, []string{"watch-hole"},
			jepsenlite.Config{Backend: "redis", Nemesis: []string{jepsenlite.FaultSlow}, Time: 8 * time.Second, Interval: time.Second, Rate: 500}},
	}
	for _, c := range cases {
		t.Run(c.bug, func(t *testing.T) {
			cfg := c.cfg
			cfg.Workload, cfg.Bug, cfg.General = c.workload, c.bug, c.general
			if cfg.Backend == "" && cfg.Coordinator == "" {
				cfg.Backend = "mem"
			}
			if cfg.Backend == "redis" || cfg.Coordinator != "" {
				testserver.RequireRedis(t)
			}
			if cfg.Backend == "zk" || cfg.Coordinator != "" {
				testserver.RequireZK(t)
			}
			if cfg.Time == 0 {
				cfg.Time = 3 * time.Second
			}
			if cfg.Rate == 0 {
				cfg.Rate = 4000
			}
			cfg.Workers, cfg.Clients = 2, 4
			sum := short(t, cfg)
			t.Logf("%s", describe(sum))
			if !sum.Failed() {
				t.Fatalf("bug %s on %s went unnoticed: %s", c.bug, c.workload, describe(sum))
			}
			named := false
			for _, r := range sum.Results {
				for _, a := range r.Anomalies {
					named = named || (slices.Contains(c.anomalies, a.Name) && !a.Allowed)
				}
			}
			if !named {
				t.Fatalf("the run failed without reporting any of %v: %s", c.anomalies, describe(sum))
			}
		})
	}
}

// TestBadInput: unknown names and an unwritable directory are clear
// errors; nothing is reported as a pass.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		cfg  jepsenlite.Config
		want string
	}{
		{jepsenlite.Config{Backend: "mem", Workload: "nosuch", Time: time.Second}, `unknown workload "nosuch"`},
		{jepsenlite.Config{Backend: "etcd", Workload: "bank", Time: time.Second}, `unknown backend "etcd"`},
		{jepsenlite.Config{Backend: "mem", Workload: "bank", Nemesis: []string{"gremlins"}, Time: time.Second}, `nemesis "gremlins"`},
		{jepsenlite.Config{Backend: "mem", Workload: "bank", Nemesis: []string{"kill"}, Time: time.Second}, `not available on mem`},
		{jepsenlite.Config{Backend: "mem", Workload: "bank", Time: 0}, `--time`},
		{jepsenlite.Config{Backend: "mem", Workload: "bank", Bug: "nosuch", Time: time.Second}, `unknown bug`},
	} {
		tc.cfg.Dir = t.TempDir()
		if _, err := jepsenlite.Run(ctx, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%+v) = %v, want an error saying %s", tc.cfg, err, tc.want)
		}
	}
	// A directory that cannot be made: its parent is a regular file.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := jepsenlite.Run(ctx, jepsenlite.Config{Backend: "mem", Workload: "bank", Time: time.Second, Dir: filepath.Join(file, "runs")})
	if err == nil || !strings.Contains(err.Error(), "run directory") {
		t.Errorf("unwritable directory: %v", err)
	}
}
