package jepsenlite_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	var h []jepsenlite.Op
	for p := range 3 {
		h = append(h, jepsenlite.Op{Index: len(h), Type: jepsenlite.Invoke, Process: p, F: "write", Time: int64(10 * (len(h) + 1))}.WithValue(jepsenlite.RegisterValue{K: 0, V: p}))
		h = append(h, jepsenlite.Op{Index: len(h), Type: jepsenlite.OK, Process: p, F: "write", Time: int64(10 * (len(h) + 1))}.WithValue(jepsenlite.RegisterValue{K: 0, V: p}))
	}
	var b bytes.Buffer
	if err := jepsenlite.WriteJSONL(&b, h); err != nil {
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
