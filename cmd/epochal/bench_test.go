package main

import (
	"bytes"
	"context"
	"fmt"
	htmlpkg "html"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/epochal/epochal/internal/bench"
	"github.com/epochal/epochal/internal/testkit/testserver"
)

// benchRun runs `epochal bench` with args into a new directory and
// returns the exit code, stdout, stderr and the run's results (nil when
// none were written).
func benchRun(t *testing.T, ctx context.Context, args ...string) (int, string, string, *bench.Result) {
	t.Helper()
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	code := run(ctx, append(args, "--dir", dir), &out, &errOut)
	runs, _ := filepath.Glob(filepath.Join(dir, "*", "results.json"))
	if len(runs) > 1 {
		t.Fatalf("%d runs written, want one: %v", len(runs), runs)
	}
	var res *bench.Result
	if len(runs) == 1 {
		var err error
		if res, err = bench.ReadResult(runs[0]); err != nil {
			t.Fatal(err)
		}
		html, err := os.ReadFile(filepath.Join(filepath.Dir(runs[0]), "report.html"))
		if err != nil {
			t.Fatal(err)
		}
		md, err := os.ReadFile(filepath.Join(filepath.Dir(runs[0]), "results.md"))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range res.Cells {
			if !strings.Contains(string(html), "<td class=\"l\">"+c.Impl+"</td>") {
				t.Errorf("report.html has no row of %s", c.Impl)
			}
			if row := fmt.Sprintf("| %s | %s | %d | %d | %s |", c.Workload, c.Backend, c.Accounts, c.Workers, c.Impl); !strings.Contains(string(md), row) {
				t.Errorf("results.md has no row %q", row)
			}
		}
		for _, g := range res.Goals {
			if !strings.Contains(string(md), "| "+g.Name+" |") || !strings.Contains(string(html), htmlpkg.EscapeString(g.Name)) {
				t.Errorf("goal %q not in results.md and report.html", g.Name)
			}
		}
	}
	return code, out.String(), errOut.String(), res
}

// checkCells: every cell of workloads x accounts x workers x impls ran,
// passed its check, did some ops, and the table has a row for each.
func checkCells(t *testing.T, res *bench.Result, out string, workloads []string, accounts, workers []int, impls map[string][]string) {
	t.Helper()
	if res == nil {
		t.Fatalf("no results.json; stdout:\n%s", out)
	}
	if !res.Complete || len(res.Failed()) > 0 {
		t.Fatalf("complete %v, failed %v", res.Complete, res.Failed())
	}
	want := 0
	for _, w := range workloads {
		want += len(accounts) * len(workers) * len(impls[w])
	}
	if len(res.Cells) != want {
		t.Fatalf("%d cells, want %d: %+v", len(res.Cells), want, res.Cells)
	}
	for _, c := range res.Cells {
		if !slices.Contains(impls[c.Workload], c.Impl) || !slices.Contains(accounts, c.Accounts) || !slices.Contains(workers, c.Workers) {
			t.Errorf("unexpected cell %+v", c)
		}
		if c.Ops == 0 || c.PerSec <= 0 || c.P50Micros <= 0 && c.Impl != "mutex" || c.P99Micros < c.P50Micros {
			t.Errorf("cell measured nothing: %+v", c)
		}
		if c.Ratio == 0 || c.RatioTo == "" {
			t.Errorf("cell without a ratio to a peer: %+v", c)
		}
	}
	lines := strings.Split(out, "\n")
	if !strings.Contains(lines[0], "ops/s") || !strings.Contains(lines[0], "ratio") {
		t.Errorf("no table header in %q", lines[0])
	}
	for _, c := range res.Cells {
		found := false
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) > 5 && f[0] == c.Workload && f[2] == itoa(c.Accounts) && f[3] == itoa(c.Workers) && f[4] == c.Impl && strings.HasSuffix(l, "ok") {
				found = true
			}
		}
		if !found {
			t.Errorf("no table row for %s %d %d %s in\n%s", c.Workload, c.Accounts, c.Workers, c.Impl, out)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestBenchMem: a short run of every workload on the embedded backend
// runs Epochal, anacrolix/stm and a mutex cell by cell, checks each, and
// writes the table, results.json (with the goals) and report.html.
func TestBenchMem(t *testing.T) {
	code, out, errOut, res := benchRun(t, context.Background(), "bench", "--workload", "bank,swap,lock",
		"--workers", "1,3", "--accounts", "50,3", "--time", "100ms")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	checkCells(t, res, out, []string{"bank", "swap", "lock"}, []int{50, 3}, []int{1, 3}, map[string][]string{
		"bank": {"epochal", "epochal-commute", "go-stm", "mutex"},
		"swap": {"epochal", "epochal-commute", "go-stm", "mutex"},
		"lock": {"epochal", "go-stm", "mutex"},
	})
	if res.Machine.CPUs == 0 || res.Machine.GoVersion == "" || res.Servers != "in process" || len(res.Command) == 0 {
		t.Errorf("run description incomplete: %+v", res)
	}
	// The goals are judged where they apply: mem's against go-stm in
	// every bank regime, and the commute's.
	var names []string
	for _, g := range res.Goals {
		names = append(names, g.Name)
	}
	if !slices.ContainsFunc(names, func(n string) bool {
		return strings.Contains(n, "mem bank, 50 accounts, 3 workers: epochal >= 1.0x go-stm")
	}) ||
		!slices.ContainsFunc(names, func(n string) bool {
			return strings.Contains(n, "swap, 3 accounts, 3 workers: epochal-commute 0 retries")
		}) {
		t.Errorf("goals missing: %q", names)
	}
	// Not a terminal: one plain progress line per cell.
	if n := strings.Count(errOut, "\ncell ") + 1; n != len(res.Cells) || strings.Contains(errOut, "\r") {
		t.Errorf("progress: %d lines for %d cells:\n%s", n, len(res.Cells), errOut)
	}
}

// TestBenchRedis: without --addr the run starts its own redis-server,
// and counts round trips; the hand-written peers run beside Epochal.
func TestBenchRedis(t *testing.T) {
	testserver.RequireRedis(t)
	code, out, errOut, res := benchRun(t, context.Background(), "--backend", "redis", "bench", "--workload", "bank,swap,lock",
		"--workers", "1,4", "--accounts", "20,3", "--time", "150ms", "--quiet")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	checkCells(t, res, out, []string{"bank", "swap", "lock"}, []int{20, 3}, []int{1, 4}, map[string][]string{
		"bank": {"epochal", "epochal-commute", "watch-multi", "lua"},
		"swap": {"epochal", "epochal-commute", "watch-multi", "lua"},
		"lock": {"epochal", "lua"},
	})
	for _, c := range res.Cells {
		if c.CountPerOp == nil || *c.CountPerOp < 1 || c.Unit != "round-trips" {
			t.Errorf("round trips not counted: %+v", c)
		}
	}
	if !strings.HasPrefix(res.Versions["server"], "redis ") {
		t.Errorf("versions %v: no server version", res.Versions)
	}
	if !strings.Contains(res.Servers, "started by the run") || errOut != "" {
		t.Errorf("servers %q, stderr %q", res.Servers, errOut)
	}
}

// TestBenchZK: against a ZooKeeper server named by --addr, writes counted
// from its zxid.
func TestBenchZK(t *testing.T) {
	srv := testserver.StartZK(t)
	code, out, errOut, res := benchRun(t, context.Background(), "--backend", "zk", "--addr", srv.ConnectString(), "bench",
		"--workload", "bank,swap,lock", "--workers", "1,3", "--accounts", "20,3", "--time", "200ms")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	checkCells(t, res, out, []string{"bank", "swap", "lock"}, []int{20, 3}, []int{1, 3}, map[string][]string{
		"bank": {"epochal", "epochal-commute", "zk-multi"},
		"swap": {"epochal", "epochal-commute", "zk-multi"},
		"lock": {"epochal", "zk-multi"},
	})
	if !strings.HasPrefix(res.Versions["server"], "zookeeper ") {
		t.Errorf("versions %v: no server version", res.Versions)
	}
	for _, c := range res.Cells {
		if c.CountPerOp == nil || *c.CountPerOp < 1 || c.Unit != "writes" {
			t.Errorf("writes not counted: %+v", c)
		}
	}
}

// TestBenchUsage: bad flags are exit 2 with one line naming the flag.
func TestBenchUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--workload", "bank,queue"}, "--workload"},
		{[]string{"bench", "--impls", "epochal,nope"}, "nope"},
		{[]string{"bench", "--impls", "watch-multi"}, "does not run on --backend mem"},
		{[]string{"bench", "--workers", "0"}, "--workers"},
		{[]string{"bench", "--workers", "1,x"}, "--workers"},
		{[]string{"bench", "--accounts", "1"}, "at least 2 accounts"},
		{[]string{"bench", "--time", "0s"}, "--time"},
		{[]string{"bench", "--workers", "100000000"}, "--workers"},
		{[]string{"bench", "--accounts", "99999999999"}, "--accounts"},
		{[]string{"bench", "extra"}, "no arguments"},
		{[]string{"bench", "--time", "10ms", "--dir", "/proc/no/such/dir"}, "--dir"},
		{[]string{"bench", "--impls", "mutex", "--workload", "lock,bank", "--accounts", "5", "--workers", "1", "--time", "10ms", "--backend", "nope"}, "unknown backend"},
	} {
		var out, errOut bytes.Buffer
		args := tc.args
		if !slices.Contains(args, "--dir") {
			args = append(args, "--dir", t.TempDir())
		}
		code := run(context.Background(), args, &out, &errOut)
		if code != exitUsage || !strings.Contains(errOut.String(), tc.want) || strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0 {
			t.Errorf("%q: exit %d, stderr %q; want %d naming %q", tc.args, code, errOut.String(), exitUsage, tc.want)
		}
	}
}

// TestBenchInterrupted: a run whose ctx ends (^C) writes what it has,
// marked cut short, and exits 1.
func TestBenchInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	code, out, errOut, res := benchRun(t, ctx, "bench", "--accounts", "5", "--workers", "1", "--time", "50ms")
	if code != exitFail || !strings.Contains(errOut, "cut short") {
		t.Fatalf("exit %d, stderr %q; want %d and \"cut short\"\n%s", code, errOut, exitFail, out)
	}
	if res == nil || res.Complete {
		t.Fatalf("results %+v: want written and marked incomplete", res)
	}
}

// TestBenchUnreachable: a server --addr names that does not answer is
// exit 3 within --connect-timeout, before any cell runs, on Redis and on
// ZooKeeper.
func TestBenchUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	for _, be := range []string{"redis", "zk"} {
		dir := t.TempDir()
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"--backend", be, "--addr", addr, "--connect-timeout", "2s", "bench", "--time", "50ms", "--dir", dir}, &out, &errOut)
		if code != exitDown || !strings.Contains(errOut.String(), "--addr") {
			t.Errorf("%s: exit %d, stderr %q; want %d naming --addr", be, code, errOut.String(), exitDown)
		}
		if runs, _ := filepath.Glob(filepath.Join(dir, "*")); len(runs) != 0 {
			t.Errorf("%s: a run was written: %v", be, runs)
		}
	}
}

// TestBenchRedisWait: --redis-wait 1 starts a replica beside the server
// and the Epochal cells commit with WAIT 1; refused without Redis.
func TestBenchRedisWait(t *testing.T) {
	testserver.RequireRedis(t)
	code, out, errOut, res := benchRun(t, context.Background(), "--backend", "redis", "bench", "--workload", "bank",
		"--impls", "epochal", "--workers", "2", "--accounts", "20", "--time", "150ms", "--quiet", "--redis-wait", "1")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(res.Servers, "with 1 replica(s)") || !strings.Contains(res.Servers, "WAIT for 1") {
		t.Errorf("servers %q: no replica, no WAIT", res.Servers)
	}
	if len(res.Cells) != 1 || res.Cells[0].Ops == 0 {
		t.Errorf("cells %+v: want one that ran", res.Cells)
	}
	if code, _, errOut, _ := benchRun(t, context.Background(), "--backend", "mem", "bench", "--redis-wait", "1", "--time", "50ms"); code == exitOK || !strings.Contains(errOut, "--redis-wait") {
		t.Errorf("--redis-wait with mem: exit %d, stderr %q; want refused", code, errOut)
	}
}
