package jepsenlite_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/epochal/epochal/internal/testkit/testserver"
	jepsenlite "github.com/epochal/epochal/jepsen-lite"
	"github.com/epochal/epochal/jepsen-lite/check"
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

// TestRecheckRefusesUnfinishedRun: a run directory still marked
// INCOMPLETE without results.json is a run that died before its history
// was written whole: Recheck refuses it (ErrNoRun, a usage error for the
// command) and leaves the mark, instead of checking what is there and
// taking the mark away.
func TestRecheckRefusesUnfinishedRun(t *testing.T) {
	dir := t.TempDir()
	cfg, err := json.Marshal(jepsenlite.Config{Backend: "mem", Workload: "register", Time: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var h []check.Op
	for p := range 3 {
		h = append(h, check.Op{Index: len(h), Type: check.Invoke, Process: p, F: "write", Time: int64(10 * (len(h) + 1))}.WithValue(check.RegisterValue{K: 0, V: p}))
		h = append(h, check.Op{Index: len(h), Type: check.OK, Process: p, F: "write", Time: int64(10 * (len(h) + 1))}.WithValue(check.RegisterValue{K: 0, V: p}))
	}
	var b bytes.Buffer
	if err := check.WriteJSONL(&b, h); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"config.json": cfg, "history.jsonl": b.Bytes(), "INCOMPLETE": []byte("this run has not finished\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := jepsenlite.Recheck(dir, 0)
	if !errors.Is(err, jepsenlite.ErrNoRun) || !strings.Contains(fmt.Sprint(err), "INCOMPLETE") {
		t.Errorf("Recheck of an unfinished run = %v (summary %+v), want ErrNoRun saying it is INCOMPLETE", err, sum)
	}
	if _, err := os.Stat(filepath.Join(dir, "INCOMPLETE")); err != nil {
		t.Errorf("the INCOMPLETE mark is gone: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "results.json")); err == nil {
		t.Errorf("results.json was written for an unfinished run")
	}
}

// recheckHistory writes a run directory of workload with history h (and
// results.json, as a finished run has) and checks it again.
func recheckHistory(t *testing.T, cfg jepsenlite.Config, h []check.Op) *jepsenlite.Summary {
	t.Helper()
	dir := t.TempDir()
	cj, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := check.WriteJSONL(&b, h); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"config.json": cj, "history.jsonl": b.Bytes()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := jepsenlite.Recheck(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// bankHistory is n transfers of 1 between two accounts of 5 (100 each),
// every one ok, then a final read; reads alone adds n snapshot reads
// instead of the transfers.
func bankHistory(n int, readsOnly bool) []check.Op {
	var h []check.Op
	add := func(typ check.Type, p int, f string, v any, final bool) {
		h = append(h, check.Op{Index: len(h), Type: typ, Process: p, F: f, Time: int64(10 * (len(h) + 1)), Final: final}.WithValue(v))
	}
	bal := map[int]int{0: 100, 1: 100, 2: 100, 3: 100, 4: 100}
	for i := range n {
		if readsOnly {
			add(check.Invoke, 1, "read", check.BankValue{}, false)
			add(check.OK, 1, "read", check.BankValue{Balances: bal}, false)
			continue
		}
		from, to := i%2, 1-i%2
		tr := check.BankValue{From: from, To: to, Amount: 1}
		add(check.Invoke, 2, "transfer", tr, false)
		bal[from]--
		bal[to]++
		add(check.OK, 2, "transfer", tr, false)
	}
	add(check.Invoke, 9, "read", check.BankValue{}, true)
	add(check.OK, 9, "read", check.BankValue{Balances: bal}, true)
	return h
}

// TestTooLittleTested: a run with fewer successful operations of a kind
// that changes state than MinOK (DefaultMinOK by default) is UNKNOWN, "too
// little was tested", not PASS: one transfer (or none, only reads, as a
// mixed run whose only client reads) checks next to nothing. Final reads
// do not count. At the floor it passes.
func TestTooLittleTested(t *testing.T) {
	cfg := jepsenlite.Config{Backend: "mem", Workload: "bank", Time: time.Second}
	for _, tc := range []struct {
		n         int
		readsOnly bool
		minOK     int
		pass      bool
	}{
		{1, false, 0, false},
		{jepsenlite.DefaultMinOK - 1, false, 0, false},
		{jepsenlite.DefaultMinOK, false, 0, true},
		{50, true, 0, false},
		{3, false, 3, true},
		{3, false, 4, false},
	} {
		cfg.MinOK = tc.minOK
		sum := recheckHistory(t, cfg, bankHistory(tc.n, tc.readsOnly))
		if tc.pass {
			if !sum.Passed() {
				t.Errorf("%d transfers, min %d: %s %v, want PASS", tc.n, tc.minOK, sum.Verdict, sum.Inconclusive)
			}
			continue
		}
		if sum.Verdict != check.VerdictUnknown || sum.Passed() || sum.Failed() ||
			len(sum.Inconclusive) != 1 || !strings.Contains(sum.Inconclusive[0], "too little was tested") || !strings.Contains(sum.Inconclusive[0], "transfer") {
			t.Errorf("%d transfers (reads only %v), min %d: %s %v, want UNKNOWN: too little was tested", tc.n, tc.readsOnly, tc.minOK, sum.Verdict, sum.Inconclusive)
		}
	}
	if err := jepsenlite.CheckConfig(jepsenlite.Config{Backend: "mem", Workload: "bank", Time: time.Second, MinOK: -1}); err == nil || !strings.Contains(err.Error(), "--min-ok -1") {
		t.Errorf("MinOK -1: %v", err)
	}
}

// TestEveryWorkloadHasTestedKinds: each workload names the kinds of
// operation that must succeed often enough (TestedKinds).
func TestEveryWorkloadHasTestedKinds(t *testing.T) {
	for _, w := range jepsenlite.Workloads {
		if len(jepsenlite.TestedKinds(w)) == 0 {
			t.Errorf("workload %s has no tested kinds", w)
		}
	}
}

// TestClientDeathEndsRun: a client process that dies on its own (here,
// at once) ends the run with its error, long before --time (10 minutes)
// is up; the run is not checked, and the error names the process.
func TestClientDeathEndsRun(t *testing.T) {
	testserver.RequireRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := jepsenlite.Config{Backend: "redis", Workload: "bank", Time: 10 * time.Minute, Workers: 2, Clients: 1, Dir: t.TempDir(),
		WorkerCmd: func([]string) *exec.Cmd { return exec.Command("sh", "-c", "echo 'worker: boom' >&2; exit 3") }}
	sum, err := jepsenlite.Run(ctx, cfg)
	if ctx.Err() != nil {
		t.Fatalf("the run went on after its client processes died (until the test's deadline): %v", err)
	}
	if err == nil || !strings.Contains(err.Error(), "client process") || !strings.Contains(err.Error(), "worker: boom") {
		t.Fatalf("Run = %v, want the client process's error", err)
	}
	if sum == nil || sum.Verdict != "" {
		t.Fatalf("a run that failed has a verdict: %+v", sum)
	}
}
