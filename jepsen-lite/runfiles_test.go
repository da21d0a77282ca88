package jepsenlite_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	jepsenlite "github.com/epochal/epochal/jepsen-lite"
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
	re, err := jepsenlite.Recheck(sum.Dir, 0)
	if err != nil {
		t.Fatalf("Recheck: %v", err)
	}
	if re.Config.Seed != cfg.Seed || re.Config.Workload != "bank" || re.Verdict != sum.Verdict {
		t.Fatalf("Recheck read seed %d, workload %q, verdict %s; want %d, bank, %s", re.Config.Seed, re.Config.Workload, re.Verdict, cfg.Seed, sum.Verdict)
	}
}
