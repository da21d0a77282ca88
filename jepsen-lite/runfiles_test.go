package jepsenlite_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/epochal/epochal/internal/testkit/testserver"
	jepsenlite "github.com/epochal/epochal/jepsen-lite"
	"github.com/epochal/epochal/jepsen-lite/check"
)

// TestConfigFileWritten: a run's config.json holds the whole
// configuration as run, the seed and the settings given included, and
// Recheck reads it back.
func TestConfigFileWritten(t *testing.T) {
	cfg := jepsenlite.Config{Backend: "mem", Workload: "bank", Time: time.Second, Workers: 1, Clients: 3,
		Seed: 123456789, Rate: 300, MinOK: 2, CheckTimeout: 7 * time.Second, Dir: t.TempDir()}
	sum, err := jepsenlite.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(sum.Dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got jepsenlite.Config
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("config.json: %v\n%s", err, b)
	}
	if got.Seed != cfg.Seed || got.Backend != "mem" || got.Workload != "bank" || got.Time != cfg.Time || got.Workers != 1 ||
		got.Clients != 3 || got.Rate != 300 || got.MinOK != 2 || got.CheckTimeout != 7*time.Second || got.Interval <= 0 || got.Lease <= 0 {
		t.Fatalf("config.json lacks the settings given (or the defaults filled in):\n%s", b)
	}
	// Its keys are lower case, durations as Go writes them, the seed a
	// string (beyond JavaScript's exact integers), defaults filled in.
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for k := range raw {
		if strings.ToLower(k) != k {
			t.Errorf("config.json key %q is not lower case", k)
		}
	}
	if raw["time"] != "1s" || raw["seed"] != "123456789" || raw["check_timeout"] != "7s" || raw["redis_topology"] == nil {
		t.Errorf("config.json: time %v, seed %v, check_timeout %v, redis_topology %v; want \"1s\", \"123456789\", \"7s\" and a value\n%s",
			raw["time"], raw["seed"], raw["check_timeout"], raw["redis_topology"], b)
	}
	defaults, err := jepsenlite.Run(t.Context(), jepsenlite.Config{Backend: "mem", Workload: "counter", Time: time.Second, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var d jepsenlite.Config
	if b, err := os.ReadFile(filepath.Join(defaults.Dir, "config.json")); err != nil || json.Unmarshal(b, &d) != nil ||
		d.CheckTimeout != check.DefaultCheckTimeout || d.MinOK != jepsenlite.DefaultMinOK {
		t.Errorf("config.json of a run with the defaults: check timeout %v, min ok %d; want %v and %d (%v)", d.CheckTimeout, d.MinOK,
			check.DefaultCheckTimeout, jepsenlite.DefaultMinOK, err)
	}
	// config.json as runs wrote it before (Go's names, nanoseconds) is
	// still read.
	var old jepsenlite.Config
	if err := json.Unmarshal([]byte(`{"Backend":"mem","Workload":"bank","Time":1000000000,"Seed":12345678901234567890}`), &old); err != nil ||
		old.Time != time.Second || old.Seed != 12345678901234567890 || old.Workload != "bank" {
		t.Errorf("an older config.json: %v, %+v", err, old)
	}
	re, err := jepsenlite.Recheck(sum.Dir, 0)
	if err != nil {
		t.Fatalf("Recheck: %v", err)
	}
	if re.Config.Seed != cfg.Seed || re.Config.Workload != "bank" || re.Verdict != sum.Verdict {
		t.Fatalf("Recheck read seed %d, workload %q, verdict %s; want %d, bank, %s", re.Config.Seed, re.Config.Workload, re.Verdict, cfg.Seed, sum.Verdict)
	}
}

// cancelOnWrite cancels a context at its first write: the first redraw
// of a run's progress, once the run is under way.
type cancelOnWrite struct{ cancel context.CancelFunc }

func (c cancelOnWrite) Write(p []byte) (int, error) { c.cancel(); return len(p), nil }

// TestRunCutShort: a run whose context is cancelled mid-run (^C) is
// marked cut short: verdict INCOMPLETE, in the summary, results.json and
// report.html, the INCOMPLETE mark kept; nothing says PASS, and Recheck
// refuses it (its history lacks the rest of the run and the final
// reads).
// It runs on mem (clients in this process) and on Redis (client
// processes, a server and a nemesis).
func TestRunCutShort(t *testing.T) {
	t.Run("mem", func(t *testing.T) { testRunCutShort(t, "mem") })
	t.Run("redis", func(t *testing.T) {
		testserver.RequireRedis(t)
		testRunCutShort(t, "redis")
	})
}

func testRunCutShort(t *testing.T, backend string) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := jepsenlite.Config{Backend: backend, Workload: "bank", Time: 10 * time.Minute, Workers: 1, Clients: 2, Seed: 7,
		Dir: t.TempDir(), Progress: cancelOnWrite{cancel}}
	if backend != "mem" {
		cfg.Nemesis, cfg.WorkerCmd = []string{jepsenlite.FaultPartition}, workerCmd
	}
	sum, err := jepsenlite.Run(ctx, cfg)
	if sum != nil && sum.Dir != "" {
		workerRaces(t, sum.Dir)
	}
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if sum.Verdict != jepsenlite.VerdictIncomplete || !sum.Incomplete || sum.Passed() || !sum.Failed() ||
		!strings.Contains(sum.CutShort, "interrupted") || sum.Elapsed >= cfg.Time {
		t.Fatalf("cut-short run: verdict %s, incomplete %v, passed %v, cut short %q, elapsed %v; want INCOMPLETE, interrupted",
			sum.Verdict, sum.Incomplete, sum.Passed(), sum.CutShort, sum.Elapsed)
	}
	if _, err := os.Stat(filepath.Join(sum.Dir, "INCOMPLETE")); err != nil {
		t.Errorf("the INCOMPLETE mark is gone: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(sum.Dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res["verdict"] != "INCOMPLETE" || res["valid"] == true || !strings.Contains(fmt.Sprint(res["cut_short"]), "interrupted") || strings.Contains(string(b), "PASS") {
		t.Errorf("results.json of a cut-short run:\n%s", b)
	}
	rep, err := os.ReadFile(filepath.Join(sum.Dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rep), "INCOMPLETE") || !strings.Contains(string(rep), "cut short") || strings.Contains(string(rep), "PASS") {
		t.Errorf("report.html of a cut-short run does not say so (or says PASS)")
	}
	if _, err := jepsenlite.Recheck(sum.Dir, 0); !errors.Is(err, jepsenlite.ErrNoRun) || !strings.Contains(err.Error(), "cut short") {
		t.Errorf("Recheck of a cut-short run: %v, want ErrNoRun saying it was cut short", err)
	}
}

// jsonKeys collects the keys of every object in v, but within operation
// values ("value": the workloads' own shapes, as histories store them).
func jsonKeys(v any, keys map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			keys[k] = true
			if k != "value" {
				jsonKeys(x, keys)
			}
		}
	case []any:
		for _, x := range v {
			jsonKeys(x, keys)
		}
	}
}

// TestResultsKeysLowerCase: every key of results.json is lower case
// (words joined by _), the checkers' results and their anomalies'
// witnesses included; Recheck reads it back.
func TestResultsKeysLowerCase(t *testing.T) {
	h := bankHistory(12, false)
	// A read whose balances do not sum to the total: wrong-total, with
	// its witness.
	n := len(h)
	h = append(h,
		check.Op{Index: n, Type: check.Invoke, Process: 3, F: "read", Time: int64(10 * (n + 1))}.WithValue(check.BankValue{}),
		check.Op{Index: n + 1, Type: check.OK, Process: 3, F: "read", Time: int64(10 * (n + 2))}.WithValue(check.BankValue{Balances: map[int]int{0: 1, 1: 2, 2: 3, 3: 4, 4: 5}}))
	sum := recheckHistory(t, jepsenlite.Config{Backend: "mem", Workload: "bank", Time: time.Second}, h)
	if sum.Verdict != check.VerdictFail {
		t.Fatalf("verdict %s, want FAIL (wrong-total)", sum.Verdict)
	}
	b, err := os.ReadFile(filepath.Join(sum.Dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	jsonKeys(v, keys)
	for _, want := range []string{"verdict", "valid", "ops", "ok", "faults_fired", "min_ok", "results", "checker", "anomalies", "name", "explain", "index", "process"} {
		if !keys[want] {
			t.Errorf("results.json lacks %q:\n%s", want, b)
		}
	}
	for k := range keys {
		if k != strings.ToLower(k) || strings.ContainsAny(k, " -") {
			t.Errorf("results.json key %q is not lower case", k)
		}
	}
	re, err := jepsenlite.Recheck(sum.Dir, 0)
	if err != nil || re.Verdict != check.VerdictFail || re.Results[0].OK == 0 {
		t.Fatalf("Recheck: %v, %+v", err, re)
	}
}
