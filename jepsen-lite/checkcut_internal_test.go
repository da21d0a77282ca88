package jepsenlite

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/epochal/epochal/jepsen-lite/check"
)

// blockingChecker's Check says it started, then waits to be released (or,
// if nothing cuts it short, a minute: the test then fails, not hangs).
type blockingChecker struct{ started, release chan struct{} }

func (b *blockingChecker) Name() string { return "blocking" }

func (b *blockingChecker) Check([]check.Op) check.Result {
	close(b.started)
	select {
	case <-b.release:
	case <-time.After(time.Minute):
	}
	return check.Result{Checker: "blocking"}
}

// failingChecker finds an anomaly in any history.
type failingChecker struct{}

func (failingChecker) Name() string { return "failing" }

func (failingChecker) Check([]check.Op) check.Result {
	return check.Result{Checker: "failing", Anomalies: []check.Anomaly{{Name: "wrong-total", Explain: "seeded"}}}
}

// TestCheckCutShort: a run whose ctx ends while its history is being
// checked (^C after the clients finished) is INCOMPLETE with its history
// whole (results.json says check_cut_short), and Recheck then checks it;
// a Recheck cut short writes nothing.
func TestCheckCutShort(t *testing.T) {
	sum, err := Run(context.Background(), Config{Backend: "mem", Workload: "counter", Time: time.Second, Dir: t.TempDir()})
	if err != nil || !sum.Passed() {
		t.Fatalf("run: %v, %+v", err, sum)
	}
	dir := sum.Dir
	histPath := filepath.Join(dir, "history.jsonl")
	hist, err := os.ReadFile(histPath)
	if err != nil {
		t.Fatal(err)
	}
	h, err := check.ReadJSONLFile(histPath)
	if err != nil {
		t.Fatal(err)
	}
	cutWhileChecking := func(r *run, before ...check.Checker) (*Summary, error) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		b := &blockingChecker{started: make(chan struct{}), release: make(chan struct{})}
		defer close(b.release)
		go func() { <-b.started; cancel() }()
		s := &Summary{Config: sum.Config, Dir: dir}
		return s, r.checkWith(ctx, append(before, b), h, s)
	}

	// A checker that finished before the cut and found an anomaly fails
	// the run: its result is kept, and the run is not INCOMPLETE.
	s, err := cutWhileChecking(&run{cfg: sum.Config, dir: dir, start: time.Now()}, failingChecker{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Verdict != check.VerdictFail || len(s.Results) != 1 || !s.CheckCutShort || s.Fired == nil {
		t.Fatalf("cut short after a failing checker: verdict %s, %d results, check cut short %v, fired %v", s.Verdict, len(s.Results), s.CheckCutShort, s.Fired)
	}
	if _, err := os.Stat(filepath.Join(dir, "INCOMPLETE")); !os.IsNotExist(err) {
		t.Fatalf("the INCOMPLETE mark after a FAIL: %v", err)
	}

	s, err = cutWhileChecking(&run{cfg: sum.Config, dir: dir, start: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if s.Verdict != VerdictIncomplete || !s.CheckCutShort || !strings.Contains(s.CutShort, "interrupted while checking") || len(s.Results) != 0 {
		t.Fatalf("cut short while checking: verdict %s, check cut short %v, %q, %d results", s.Verdict, s.CheckCutShort, s.CutShort, len(s.Results))
	}
	res, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil || !bytes.Contains(res, []byte(`"verdict": "INCOMPLETE"`)) || !bytes.Contains(res, []byte(`"check_cut_short": true`)) ||
		bytes.Contains(res, []byte("null")) {
		t.Fatalf("results.json: %v\n%s", err, res)
	}
	if _, err := os.Stat(filepath.Join(dir, "INCOMPLETE")); err != nil {
		t.Fatalf("the INCOMPLETE mark: %v", err)
	}
	if now, err := os.ReadFile(histPath); err != nil || !bytes.Equal(now, hist) {
		t.Fatalf("history.jsonl changed: %v", err)
	}

	again, err := Recheck(dir, 0)
	if err != nil || !again.Passed() {
		t.Fatalf("Recheck of a run cut short while checking: %v, %+v", err, again)
	}
	if _, err := os.Stat(filepath.Join(dir, "INCOMPLETE")); !os.IsNotExist(err) {
		t.Fatalf("the INCOMPLETE mark after Recheck: %v", err)
	}

	before, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cutWhileChecking(&run{cfg: sum.Config, dir: dir, start: time.Now(), recheck: true}); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("a Recheck cut short: %v, want an error", err)
	}
	if after, err := os.ReadFile(filepath.Join(dir, "results.json")); err != nil || !bytes.Equal(after, before) {
		t.Fatalf("results.json changed by a Recheck cut short: %v", err)
	}

	// A results.json that cannot be read is refused, not taken for one
	// that says nothing (it could say the run was cut short).
	if err := os.WriteFile(filepath.Join(dir, "results.json"), []byte(`{"verdict": "INCOMPLETE", `), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Recheck(dir, 0); !errors.Is(err, ErrNoRun) || !strings.Contains(err.Error(), "results.json") {
		t.Fatalf("Recheck with a malformed results.json: %v", err)
	}
}
