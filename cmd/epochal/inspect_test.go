package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ from this run's output")

// The seeded data's wall clock: commits are stamped from seedStart on, and
// the CLI measures relative times from seedNow (EPOCHAL_NOW), so tables are
// the same on every run.
var (
	seedStart = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	seedNow   = seedStart.Add(time.Minute)
)

// pendingID is the id of the transaction the seed leaves pending.
const pendingID = "cli-test-pending"

type account struct {
	Owner   string `msgpack:"owner"`
	Balance int    `msgpack:"balance"`
	Note    string `msgpack:"note,omitempty"`
}

// jsonCodec stores values as JSON: not msgpack, so the CLI shows base64.
type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)   { return json.Marshal(v) }
func (jsonCodec) Unmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func mustNoErr(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// seeded is data a client process wrote through the library.
type seeded struct {
	drv   backend.Driver
	s     *stm.STM
	wall  *clock.Fake
	alice *refs.Ref[account]
}

// seed writes, through stm and refs as any client would:
//
//	point 1 (+10s): a transfer alice -> bob of 20, counter +1
//	point 2 (+20s): alice gets a note
//	point 3 (+30s): blob/raw (a JSON-codec ref) changes
//	point 4 (+40s): a transfer alice -> bob of 20 that clears the note, counter +1
//
// and at +50s leaves transaction pendingID pending, as a committer that died
// after its Lock step would: its record (lease until +1h50s) and intents on
// bank/carol (write) and bank/bob (ensure).
func seed(t *testing.T, drv backend.Driver) *seeded {
	t.Helper()
	ctx := t.Context()
	wall := clock.NewFake(seedStart)
	s, err := stm.Open(ctx, drv, engine.WithWallClock(wall), stm.WithSweepInterval(0))
	mustNoErr(t, err, "stm.Open")
	t.Cleanup(func() { s.Close() })
	alice, err := refs.New(ctx, s, "bank/alice", account{Owner: "alice", Balance: 100}, refs.WithMinHistory(2))
	mustNoErr(t, err, "new alice")
	bob, err := refs.New(ctx, s, "bank/bob", account{Owner: "bob", Balance: 50})
	mustNoErr(t, err, "new bob")
	_, err = refs.New(ctx, s, "bank/carol", account{Owner: "carol"})
	mustNoErr(t, err, "new carol")
	count, err := refs.New(ctx, s, "stats/transfers", 0, refs.WithMinHistory(5))
	mustNoErr(t, err, "new counter")
	blob, err := refs.New(ctx, s, "blob/raw", map[string]any{"a": 1}, refs.WithCodec(jsonCodec{}))
	mustNoErr(t, err, "new blob")

	transfer := func(amount int, clearNote bool) {
		t.Helper()
		mustNoErr(t, s.Dosync(ctx, func(tx *txn.Tx) error {
			alice.Alter(tx, func(a account) account {
				a.Balance -= amount
				if clearNote {
					a.Note = ""
				}
				return a
			})
			bob.Alter(tx, func(a account) account { a.Balance += amount; return a })
			count.Commute(tx, func(n int) int { return n + 1 })
			return nil
		}), "transfer")
	}
	wall.Advance(10 * time.Second)
	transfer(20, false)
	wall.Advance(10 * time.Second)
	mustNoErr(t, s.Dosync(ctx, func(tx *txn.Tx) error {
		alice.Alter(tx, func(a account) account { a.Note = "rent"; return a })
		return nil
	}), "note")
	wall.Advance(10 * time.Second)
	mustNoErr(t, s.Dosync(ctx, func(tx *txn.Tx) error {
		blob.Set(tx, map[string]any{"a": 2, "b": []int{1, 2}})
		return nil
	}), "blob")
	wall.Advance(10 * time.Second)
	transfer(20, true)

	// A committer that died after locking: its record and intents stay
	// until its lease is over (an hour, on the seed's clock).
	wall.Advance(10 * time.Second)
	rp, err := drv.ReadPoint(ctx)
	mustNoErr(t, err, "read point")
	created, err := drv.PutRecord(ctx, backend.Record{ID: pendingID, Status: backend.Pending, RP: rp, Priority: rp,
		Lease: wall.Now().Add(time.Hour), Created: wall.Now(),
		Refs: []backend.RefAddr{{Backend: drv.ID(), Name: "bank/carol"}, {Backend: drv.ID(), Name: "bank/bob"}}})
	if err != nil || !created {
		t.Fatalf("PutRecord: created %v, %v", created, err)
	}
	carol, err := refs.Msgpack.Marshal(account{Owner: "carol", Balance: 5})
	mustNoErr(t, err, "encode")
	res, err := drv.Lock(ctx, backend.LockRequest{Txn: pendingID, Coord: drv.ID(), RP: rp, Items: []backend.LockItem{
		{Name: "bank/carol", Mode: backend.ModeWrite, Value: carol},
		{Name: "bank/bob", Mode: backend.ModeEnsure},
	}})
	if err != nil || len(res.Conflicts) > 0 {
		t.Fatalf("Lock: %+v, %v", res.Conflicts, err)
	}
	return &seeded{drv: drv, s: s, wall: wall, alice: alice}
}

// cliEnv is the environment of the binary: the backend, and the fixed
// time zone and "now" that make tables reproducible.
func cliEnv(backendName, addr, where string) []string {
	env := []string{envBackend + "=" + backendName, envAddr + "=" + addr, envNow + "=" + seedNow.Format(time.RFC3339), "TZ=UTC", envPrefix + "=", envRoot + "="}
	if backendName == backendRedis {
		return append(env, envPrefix+"="+where)
	}
	return append(env, envRoot+"="+where)
}

var (
	backendIDs = regexp.MustCompile(`\b(redis|zk):[0-9a-f]{16}`)
	txnIDs     = regexp.MustCompile(`\b[0-9a-f]{12}-`)
)

// normalize replaces what differs between runs (backend ids, transaction
// ids' random prefixes) with x's of the same width, so columns stay aligned.
func normalize(s string) string {
	s = backendIDs.ReplaceAllStringFunc(s, func(m string) string {
		i := strings.IndexByte(m, ':')
		return m[:i+1] + strings.Repeat("x", len(m)-i-1)
	})
	return txnIDs.ReplaceAllStringFunc(s, func(m string) string { return strings.Repeat("x", len(m)-1) + "-" })
}

// golden compares a command's normalised output with testdata/NAME.golden,
// which starts with the command line.
func golden(t *testing.T, name string, args []string, stdout string) {
	t.Helper()
	got := "$ epochal " + strings.Join(quoteArgs(args), " ") + "\n" + normalize(stdout)
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/epochal -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("epochal %v: output differs from %s (rerun with -update if the change is intended)\n--- got:\n%s\n--- want:\n%s", args, path, got, want)
	}
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, ` "{}*?'`) {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

// cli runs the binary with env and wants exit code 0.
func cli(t *testing.T, bin string, env []string, args ...string) string {
	t.Helper()
	out, errOut, code := runBinary(t, bin, env, args...)
	if code != exitOK {
		t.Fatalf("epochal %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
	}
	return out
}

// cliJSON runs the binary with --json and decodes its output into v.
func cliJSON(t *testing.T, bin string, env []string, v any, args ...string) {
	t.Helper()
	out := cli(t, bin, env, append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("epochal %v --json: %v\n%s", args, err, out)
	}
}

// wantExit runs the binary and wants exit code code and one line on
// stderr saying want.
func wantExit(t *testing.T, bin string, env []string, code int, want string, args ...string) {
	t.Helper()
	start := time.Now()
	out, errOut, got := runBinary(t, bin, env, args...)
	if got != code || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "epochal: ") || !strings.Contains(errOut, want) {
		t.Errorf("epochal %v: exit %d, stderr %q; want exit %d and one line saying %q\nstdout:\n%s", args, got, errOut, code, want, out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("epochal %v took %v", args, d)
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestInspectRedis runs the built binary against a real redis-server
// holding data another process (this test, through the library) wrote.
func TestInspectRedis(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	bin := buildBinary(t)
	drv, err := redis.Open(t.Context(), redis.Config{Addr: srv.Addr, Prefix: "inspect"})
	mustNoErr(t, err, "redis.Open")
	t.Cleanup(func() { drv.Close() })
	sd := seed(t, drv)
	env := cliEnv(backendRedis, srv.Addr, "inspect")

	t.Run("tables", func(t *testing.T) {
		for _, c := range []struct {
			name string
			args []string
		}{
			{"refs_ls", []string{"refs", "ls"}},
			{"refs_ls_glob", []string{"refs", "ls", "b*/?o*"}},
			{"refs_get", []string{"refs", "get", "bank/alice"}},
			{"refs_get_at", []string{"refs", "get", "bank/alice", "--at", "3"}},
			{"refs_get_base64", []string{"refs", "get", "blob/raw"}},
			{"refs_get_intent", []string{"refs", "get", "bank/bob"}},
			{"refs_history", []string{"refs", "history", "bank/alice"}},
			{"refs_history_intent", []string{"refs", "history", "bank/bob"}},
			{"refs_diff", []string{"refs", "diff", "bank/alice", "2", "4"}},
			{"refs_diff_scalar", []string{"refs", "diff", "stats/transfers", "1", "4"}},
			{"refs_diff_same", []string{"refs", "diff", "bank/alice", "2", "3"}},
			{"txn_ls", []string{"txn", "ls", "--pending"}},
			{"txn_show", []string{"txn", "show", pendingID}},
			{"locks_ls", []string{"locks", "ls"}},
			{"clock", []string{"clock"}},
		} {
			golden(t, c.name, c.args, cli(t, bin, env, c.args...))
		}
	})

	t.Run("json", func(t *testing.T) {
		var ls []refOut
		cliJSON(t, bin, env, &ls, "refs", "ls")
		var names []string
		for _, r := range ls {
			names = append(names, r.Name)
			if r.Backend != drv.ID() || r.Kind != "ref" {
				t.Errorf("refs ls: %+v", r)
			}
		}
		if strings.Join(names, " ") != "bank/alice bank/bob bank/carol blob/raw stats/transfers" {
			t.Errorf("refs ls names %v", names)
		}
		if ls[0].Newest != 4 || ls[0].Versions != 3 {
			t.Errorf("refs ls bank/alice: %+v, want newest 4 and 3 versions", ls[0])
		}

		var get struct {
			Ref string `json:"ref"`
			versionOut
		}
		cliJSON(t, bin, env, &get, "refs", "get", "bank/alice")
		var acct map[string]any
		if err := json.Unmarshal(get.Value, &acct); err != nil || acct["balance"] != 60.0 || acct["owner"] != "alice" || get.Point != 4 || get.Encoding != "msgpack" {
			t.Errorf("refs get: %+v (%v), want balance 60 at point 4", get, err)
		}
		if !get.Time.Equal(seedStart.Add(40 * time.Second)) {
			t.Errorf("refs get: time %v, want %v", get.Time, seedStart.Add(40*time.Second))
		}
		cliJSON(t, bin, env, &get, "refs", "get", "bank/alice", "--at", "1")
		if err := json.Unmarshal(get.Value, &acct); err != nil || acct["balance"] != 80.0 || get.Point != 1 {
			t.Errorf("refs get --at 1: %+v, want balance 80 at point 1", get)
		}

		var blob versionOut
		cliJSON(t, bin, env, &blob, "refs", "get", "blob/raw")
		var b64 string
		if err := json.Unmarshal(blob.Value, &b64); err != nil || b64 != "eyJhIjoyLCJiIjpbMSwyXX0=" || blob.Encoding != "base64" || blob.Note != noteBase64 {
			t.Errorf("refs get blob/raw: %+v, want the JSON bytes in base64 with a note", blob)
		}

		var hist struct {
			Versions []versionOut `json:"versions"`
			Intent   *intentOut   `json:"intent"`
			Keep     int          `json:"keep"`
		}
		cliJSON(t, bin, env, &hist, "refs", "history", "bank/alice")
		var points []uint64
		for _, v := range hist.Versions {
			points = append(points, v.Point)
		}
		if fmt.Sprint(points) != "[4 2 1]" || hist.Intent != nil || hist.Keep != 2 {
			t.Errorf("refs history bank/alice: points %v, intent %v, keep %d; want [4 2 1], none, 2", points, hist.Intent, hist.Keep)
		}
		cliJSON(t, bin, env, &hist, "refs", "history", "bank/bob")
		if hist.Intent == nil || hist.Intent.Txn != pendingID || hist.Intent.Mode != "ensure" || hist.Intent.Status != "pending" {
			t.Errorf("refs history bank/bob: intent %+v, want %s's ensure", hist.Intent, pendingID)
		}

		var diff diffOut
		cliJSON(t, bin, env, &diff, "refs", "diff", "bank/alice", "1", "2")
		if !diff.Changed || string(diff.Added["note"]) != `"rent"` || len(diff.Removed) != 0 || len(diff.Modified) != 0 {
			t.Errorf("refs diff 1 2: %+v, want note added", diff)
		}
		cliJSON(t, bin, env, &diff, "refs", "diff", "bank/alice", "2", "4")
		if string(diff.Removed["note"]) != `"rent"` || string(diff.Modified["balance"].Old) != "80" || string(diff.Modified["balance"].New) != "60" {
			t.Errorf("refs diff 2 4: %+v, want note removed and balance 80 -> 60", diff)
		}

		var recs []recordOut
		cliJSON(t, bin, env, &recs, "txn", "ls", "--pending")
		if len(recs) != 1 || recs[0].ID != pendingID || recs[0].Status != "pending" || recs[0].ReadPoint != 4 || len(recs[0].Refs) != 2 ||
			recs[0].LeaseLeftMs == nil || *recs[0].LeaseLeftMs != (time.Hour-10*time.Second).Milliseconds() {
			t.Errorf("txn ls --pending: %+v", recs)
		}
		var rec recordOut
		cliJSON(t, bin, env, &rec, "txn", "show", pendingID)
		if rec.ID != pendingID || len(rec.Refs) != 2 || rec.Refs[0].Held == nil || !*rec.Refs[0].Held || rec.Refs[0].Mode != "write" || rec.Refs[1].Mode != "ensure" {
			t.Errorf("txn show: %+v", rec)
		}

		var locks []lockOut
		cliJSON(t, bin, env, &locks, "locks", "ls")
		if len(locks) != 2 || locks[0].Ref != "bank/bob" || locks[0].Mode != "ensure" || locks[1].Ref != "bank/carol" || locks[1].Mode != "write" ||
			locks[1].Txn != pendingID || locks[1].Status != "pending" || locks[1].Token != nil || locks[1].LeaseLeftMs == nil ||
			locks[0].Kind != kindIntent || locks[1].Kind != kindIntent || locks[1].Staged == nil || !*locks[1].Staged {
			t.Errorf("locks ls: %+v", locks)
		}

		var clk clockOut
		cliJSON(t, bin, env, &clk, "clock")
		if clk.Point != 4 || clk.Backend != drv.ID() {
			t.Errorf("clock: %+v, want point 4 on %s", clk, drv.ID())
		}
	})

	t.Run("exit codes", func(t *testing.T) {
		unreachable := []string{envAddr + "=" + closedAddr(t)}
		for _, c := range []struct {
			env  []string
			code int
			want string
			args []string
		}{
			{nil, exitNotFound, `no ref "bank/nosuch"`, []string{"refs", "get", "bank/nosuch"}},
			{nil, exitNotFound, `no ref "bank/nosuch"`, []string{"refs", "history", "bank/nosuch"}},
			{nil, exitNotFound, `no ref "bank/nosuch"`, []string{"refs", "watch", "bank/nosuch"}},
			{nil, exitNotFound, "trimmed", []string{"refs", "get", "bank/alice", "--at", "0"}},
			{nil, exitNotFound, "trimmed", []string{"refs", "diff", "bank/alice", "0", "4"}},
			{nil, exitNotFound, `no transaction record "nosuch"`, []string{"txn", "show", "nosuch"}},
			{nil, exitNotFound, `no ref "bank/nosuch"`, []string{"refs", "set", "bank/nosuch", "1", "--yes"}},
			{unreachable, exitDown, "--addr", []string{"refs", "ls", "--connect-timeout", "500ms"}},
			{unreachable, exitDown, "--addr", []string{"clock", "--connect-timeout", "500ms"}},
			{nil, exitUsage, "unknown flag: --bogus", []string{"refs", "ls", "--bogus"}},
			{nil, exitUsage, "invalid argument", []string{"refs", "get", "bank/alice", "--at", "-1"}},
			{nil, exitUsage, "after the current point 4", []string{"refs", "get", "bank/alice", "--at", "99"}},
			{nil, exitUsage, `P1 "x"`, []string{"refs", "diff", "bank/alice", "x", "2"}},
			{nil, exitUsage, "takes 1 argument", []string{"refs", "get"}},
			{nil, exitUsage, "ref name", []string{"refs", "get", "bank//x"}},
			{nil, exitUsage, `unknown command "nosuch"`, []string{"refs", "nosuch"}},
			{nil, exitUsage, "--backend mem", []string{"--backend", "mem", "refs", "ls"}},
			{[]string{envBackend + "=mem"}, exitUsage, "--backend mem", []string{"locks", "ls"}},
			{nil, exitUsage, "add --yes", []string{"refs", "set", "bank/alice", `{"balance":1}`}},
			{nil, exitUsage, "JSON", []string{"refs", "set", "bank/alice", `{"balance":`, "--yes"}},
			{nil, exitUsage, envNow, []string{"clock"}},
		} {
			env := append(append([]string(nil), env...), c.env...)
			if c.want == envNow {
				env = append(env, envNow+"=yesterday")
			}
			wantExit(t, bin, env, c.code, c.want, c.args...)
		}
		// Nothing was written by the refusals.
		var get versionOut
		cliJSON(t, bin, env, &get, "refs", "get", "bank/alice")
		if get.Point != 4 {
			t.Errorf("bank/alice changed: now at point %d", get.Point)
		}
	})

	t.Run("completion", func(t *testing.T) {
		out := cli(t, bin, env, "__complete", "refs", "get", "bank/")
		if !strings.HasPrefix(out, "bank/alice\nbank/bob\nbank/carol\n:4\n") {
			t.Errorf("completing refs get bank/: %q", out)
		}
		out = cli(t, bin, env, "__complete", "txn", "show", "")
		if !strings.HasPrefix(out, pendingID+"\tpending\n:4\n") {
			t.Errorf("completing txn show: %q", out)
		}
		out = cli(t, bin, env, "__complete", "--backend", "mem", "refs", "get", "")
		if !strings.HasPrefix(out, ":4\n") {
			t.Errorf("completing on mem: %q, want nothing", out)
		}
		start := time.Now()
		out = cli(t, bin, append(env, envAddr+"="+closedAddr(t)), "__complete", "--connect-timeout", "300ms", "refs", "history", "")
		if !strings.HasPrefix(out, ":4\n") || time.Since(start) > 3*time.Second {
			t.Errorf("completing against no server: %q after %v, want nothing within the timeout", out, time.Since(start))
		}
		for _, sh := range []string{"bash", "zsh", "fish"} {
			if out := cli(t, bin, env, "completion", sh); !strings.Contains(out, "epochal") {
				t.Errorf("completion %s: %q", sh, out)
			}
		}
	})

	t.Run("set", func(t *testing.T) {
		out := cli(t, bin, env, "refs", "set", "bank/alice", `{"owner": "alice", "balance": 65, "tags": ["a", 1.5]}`, "--yes")
		if !strings.HasPrefix(out, `set bank/alice to {"balance":65,"owner":"alice","tags":["a",1.5]} (committed at point 5)`) {
			t.Errorf("refs set: %q", out)
		}
		// Any client reads it through its own type.
		v, err := sd.alice.Deref(t.Context())
		if err != nil || v.Balance != 65 || v.Owner != "alice" {
			t.Errorf("alice after refs set: %+v, %v", v, err)
		}
		var get versionOut
		cliJSON(t, bin, env, &get, "refs", "get", "bank/alice")
		var compact bytes.Buffer
		_ = json.Compact(&compact, get.Value)
		if get.Point != 5 || compact.String() != `{"balance":65,"owner":"alice","tags":["a",1.5]}` {
			t.Errorf("refs get after set: %+v", get)
		}
		var ls []refOut
		cliJSON(t, bin, env, &ls, "refs", "ls", "bank/")
		if len(ls) != 3 {
			t.Errorf("refs ls bank/ after set: %+v (set must not create refs)", ls)
		}
	})

	t.Run("watch", func(t *testing.T) {
		testWatch(t, bin, env, sd)
	})

	t.Run("sessions", func(t *testing.T) {
		sdrv, err := redis.Open(t.Context(), redis.Config{Addr: srv.Addr, Prefix: "sessions"})
		mustNoErr(t, err, "redis.Open")
		t.Cleanup(func() { sdrv.Close() })
		testSessionsRedis(t, bin, srv.Addr, sdrv)
	})
}

// testWatch runs refs watch --json as a subprocess, commits three changes
// from this process and reads them back.
func testWatch(t *testing.T, bin string, env []string, sd *seeded) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "refs", "watch", "bank/alice", "--json")
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	mustNoErr(t, err, "stdout pipe")
	stderr, err := cmd.StderrPipe()
	mustNoErr(t, err, "stderr pipe")
	mustNoErr(t, cmd.Start(), "start watch")
	pid := cmd.Process.Pid
	defer func() {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
		_ = cmd.Wait()
	}()
	lines := func(r io.Reader) <-chan string {
		ch := make(chan string, 16)
		go func() {
			defer close(ch)
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				ch <- sc.Text()
			}
		}()
		return ch
	}
	outLines, errLines := lines(stdout), lines(stderr)
	next := func(ch <-chan string, what string) string {
		t.Helper()
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("watch ended before %s", what)
			}
			return l
		case <-ctx.Done():
			t.Fatalf("no %s before the deadline", what)
		}
		return ""
	}
	if l := next(errLines, "the watching notice"); !strings.Contains(l, "watching bank/alice") {
		t.Fatalf("watch said %q on stderr, want the watching notice", l)
	}
	var want []int
	for i := 1; i <= 3; i++ {
		sd.wall.Advance(time.Second)
		balance := 1000 + i
		want = append(want, balance)
		mustNoErr(t, sd.s.Dosync(t.Context(), func(tx *txn.Tx) error {
			sd.alice.Alter(tx, func(a account) account { a.Balance = balance; return a })
			return nil
		}), "change alice")
	}
	var last uint64
	for i := range 3 {
		l := next(outLines, fmt.Sprintf("change %d", i+1))
		var ch struct {
			Type  string `json:"type"`
			Ref   string `json:"ref"`
			Point uint64 `json:"point"`
			Value struct {
				Balance int `json:"balance"`
			} `json:"value"`
		}
		if err := json.Unmarshal([]byte(l), &ch); err != nil {
			t.Fatalf("watch line %q: %v", l, err)
		}
		if ch.Type != "change" || ch.Ref != "bank/alice" || ch.Value.Balance != want[i] || ch.Point <= last {
			t.Errorf("watch line %d: %q, want balance %d at a point after %d", i+1, l, want[i], last)
		}
		last = ch.Point
	}
}

// TestInspectZK runs the binary against a real ZooKeeper: points are zxids,
// so JSON is checked rather than golden tables.
func TestInspectZK(t *testing.T) {
	srv := testserver.StartZK(t)
	bin := buildBinary(t)
	drv, err := zk.Open(t.Context(), zk.Config{Servers: srv.Servers, Root: "/inspect"})
	mustNoErr(t, err, "zk.Open")
	t.Cleanup(func() { drv.Close() })
	sd := seed(t, drv)
	env := cliEnv(backendZK, srv.ConnectString(), "/inspect")

	var ls []refOut
	cliJSON(t, bin, env, &ls, "refs", "ls", "bank/")
	if len(ls) != 3 || ls[0].Name != "bank/alice" || ls[0].Backend != drv.ID() || ls[0].Versions != 3 {
		t.Errorf("refs ls bank/: %+v", ls)
	}
	var hist struct {
		Versions []versionOut `json:"versions"`
	}
	cliJSON(t, bin, env, &hist, "refs", "history", "bank/alice")
	if len(hist.Versions) != 3 || !hist.Versions[0].Time.Equal(seedStart.Add(40*time.Second)) ||
		hist.Versions[0].Point <= hist.Versions[1].Point || hist.Versions[1].Point <= hist.Versions[2].Point {
		t.Fatalf("refs history bank/alice: %+v", hist.Versions)
	}
	p1 := fmt.Sprint(hist.Versions[2].Point)
	var get versionOut
	cliJSON(t, bin, env, &get, "refs", "get", "bank/alice", "--at", p1)
	var compact bytes.Buffer
	_ = json.Compact(&compact, get.Value)
	if !strings.Contains(compact.String(), `"balance":80`) {
		t.Errorf("refs get --at %s: %s, want balance 80", p1, get.Value)
	}
	var recs []recordOut
	cliJSON(t, bin, env, &recs, "txn", "ls", "--pending")
	if len(recs) != 1 || recs[0].ID != pendingID {
		t.Errorf("txn ls --pending: %+v", recs)
	}
	var locks []lockOut
	cliJSON(t, bin, env, &locks, "locks", "ls")
	if len(locks) != 2 || locks[1].Ref != "bank/carol" || locks[1].Txn != pendingID || locks[1].Status != "pending" {
		t.Errorf("locks ls: %+v", locks)
	}
	var clk clockOut
	cliJSON(t, bin, env, &clk, "clock")
	if clk.Point < hist.Versions[0].Point || clk.Backend != drv.ID() {
		t.Errorf("clock: %+v, want at least %d", clk, hist.Versions[0].Point)
	}
	out := cli(t, bin, env, "locks", "ls")
	if !strings.Contains(out, "bank/carol  "+pendingID) || !strings.Contains(out, "59m50s") {
		t.Errorf("locks ls table:\n%s", out)
	}
	out = cli(t, bin, env, "refs", "get", "blob/raw")
	if !strings.Contains(out, noteBase64) {
		t.Errorf("refs get blob/raw:\n%s", out)
	}
	wantExit(t, bin, env, exitNotFound, `no ref "bank/nosuch"`, "refs", "get", "bank/nosuch")
	wantExit(t, bin, append(env, envAddr+"="+closedAddr(t)), exitDown, "--addr", "--connect-timeout", "500ms", "refs", "ls")

	out = cli(t, bin, env, "refs", "set", "bank/alice", `{"owner":"alice","balance":7}`, "--yes")
	if v, err := sd.alice.Deref(t.Context()); err != nil || v.Balance != 7 || !strings.Contains(out, "set bank/alice") {
		t.Errorf("refs set: %q; alice %+v, %v", out, v, err)
	}
	testWatch(t, bin, env, sd)

	t.Run("sessions", func(t *testing.T) {
		testSessionsZK(t, bin, env, drv)
	})
}

// TestInspectRefusesMem: the embedded backend has nothing to inspect from
// another process.
func TestInspectRefusesMem(t *testing.T) {
	t.Setenv(envBackend, "")
	for _, args := range [][]string{
		{"refs", "ls"}, {"refs", "get", "a"}, {"refs", "history", "a"}, {"refs", "watch", "a"},
		{"refs", "diff", "a", "1", "2"}, {"refs", "set", "a", "1", "--yes"},
		{"txn", "ls"}, {"txn", "show", "x"}, {"locks", "ls"}, {"group", "ls", "x"}, {"clock"},
	} {
		_, _, err := runCLI(t, args...)
		if exitCode(err) != exitUsage || err == nil || !strings.Contains(err.Error(), "lives inside one process") {
			t.Errorf("epochal %v on mem: %v (exit %d), want a usage error saying why", args, err, exitCode(err))
		}
	}
}

// TestShowValues: values that are msgpack are shown as JSON, anything else
// as base64 with a note, never a crash.
func TestShowValues(t *testing.T) {
	enc := func(v any) []byte {
		b, err := refs.Msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, c := range []struct {
		in   []byte
		want string
		b64  bool
	}{
		{enc(map[string]any{"b": 1, "a": []any{"x", true, nil}}), `{"a":["x",true,null],"b":1}`, false},
		{enc(map[int]string{1: "one"}), `{"1":"one"}`, false},
		{enc([]byte{1, 2}), `"AQI="`, false},
		{enc(3.5), `3.5`, false},
		{[]byte(`{"a":1}`), `"eyJhIjoxfQ=="`, true}, // JSON: trailing bytes after a fixint
		{[]byte{0xc1}, `"wQ=="`, true},              // never used
		{[]byte{0x82, 0x91, 0x01, 0x02}, "", true},  // a map with an array key, truncated
		{[]byte{}, `""`, true},
		{append(enc(1), 0x01), `"AQE="`, true},
	} {
		s := show(c.in)
		if (s.Encoding == "base64") != c.b64 || (c.want != "" && string(s.JSON) != c.want) || (c.b64 && s.Note != noteBase64) {
			t.Errorf("show(%x) = %s %s %q, want %s (base64 %v)", c.in, s.JSON, s.Encoding, s.Note, c.want, c.b64)
		}
	}
	// A map whose key is an array: shown, not a panic.
	s := show([]byte{0x81, 0x92, 0x01, 0x02, 0x03})
	if s.Encoding != "msgpack" || string(s.JSON) != `{"[1 2]":3}` {
		t.Errorf("array key: %s %s", s.JSON, s.Encoding)
	}
}

// TestCLIDocsUpToDate: docs/cli.md is what the generator makes of the
// commands now.
func TestCLIDocsUpToDate(t *testing.T) {
	want, err := cliMarkdown(newRootCmd(io.Discard, io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "docs", cliDocFile)
	got, err := os.ReadFile(path)
	if err != nil || string(got) != string(want) {
		t.Errorf("%s is stale or missing (%v): regenerate it with 'go run ./cmd/epochal gen-docs docs'", path, err)
	}
	// The hidden generator writes the same.
	dir := t.TempDir()
	if _, _, err := runCLI(t, "gen-docs", dir); err != nil {
		t.Fatal(err)
	}
	if gen, err := os.ReadFile(filepath.Join(dir, cliDocFile)); err != nil || string(gen) != string(want) {
		t.Errorf("gen-docs wrote something else than cliMarkdown (%v)", err)
	}
}

// noFeed hides a driver's change stream: a watcher then only polls.
type noFeed struct{ backend.Driver }

func (noFeed) Subscribe(context.Context, string) (backend.Subscription, error) {
	return nil, errors.New("no change stream")
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWatchAnnouncesGap: changes trimmed from a history that keeps only the
// newest version, before watch read them, are announced as a gap, never
// skipped silently.
func TestWatchAnnouncesGap(t *testing.T) {
	ctx := t.Context()
	drv := mem.New()
	s, err := stm.Open(ctx, drv, stm.WithSweepInterval(0))
	mustNoErr(t, err, "stm.Open")
	defer s.Close()
	r, err := refs.New(ctx, s, "r", 0)
	mustNoErr(t, err, "refs.New")
	var out, errOut syncBuffer
	in := &inspect{g: &globals{connect: 5 * time.Second}, json: true, now: time.Now(), drv: noFeed{drv}, out: &out, errOut: &errOut}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- in.watch(wctx, "r") }()
	waitFor(t, 5*time.Second, "the watching notice", func() bool { return strings.Contains(errOut.String(), "watching r") })
	for i := 1; i <= 3; i++ {
		mustNoErr(t, s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, i); return nil }), "set")
	}
	waitFor(t, 5*time.Second, "the last change", func() bool { return strings.Contains(out.String(), `"value":3`) })
	stop()
	if err := <-done; err != nil {
		t.Fatalf("watch: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	gaps := 0
	for _, l := range lines {
		if strings.HasPrefix(l, `{"type":"gap","ref":"r","after":`) {
			gaps++
		}
	}
	if gaps == 0 || !strings.Contains(lines[len(lines)-1], `"type":"change"`) {
		t.Errorf("watch output, want a gap notice before the newest value:\n%s", out.String())
	}
}

// TestUnresolvedCommitShown: a transaction that committed but died before
// rolling its intent forward is already what readers see; the CLI shows
// its value as the newest, marked.
func TestUnresolvedCommitShown(t *testing.T) {
	ctx := t.Context()
	drv := mem.New()
	s, err := stm.Open(ctx, drv, stm.WithSweepInterval(0))
	mustNoErr(t, err, "stm.Open")
	defer s.Close()
	_, err = refs.New(ctx, s, "r", 1)
	mustNoErr(t, err, "refs.New")
	rp, _ := drv.ReadPoint(ctx)
	now := time.Now()
	_, err = drv.PutRecord(ctx, backend.Record{ID: "t1", Status: backend.Pending, RP: rp, Priority: rp, Lease: now.Add(time.Hour), Created: now,
		Refs: []backend.RefAddr{{Backend: drv.ID(), Name: "r"}}})
	mustNoErr(t, err, "PutRecord")
	two, _ := refs.Msgpack.Marshal(2)
	_, err = drv.Lock(ctx, backend.LockRequest{Txn: "t1", Coord: drv.ID(), RP: rp, Items: []backend.LockItem{{Name: "r", Mode: backend.ModeWrite, Value: two}}})
	mustNoErr(t, err, "Lock")
	rec, err := drv.CommitRecord(ctx, "t1")
	if err != nil || rec.Status != backend.Committed {
		t.Fatalf("CommitRecord: %+v, %v", rec, err)
	}
	in := &inspect{g: &globals{connect: 5 * time.Second}, now: now, drv: drv}
	h, err := in.history(ctx, "r")
	mustNoErr(t, err, "history")
	if h.unresolved != rec.CP || h.versions[0].Point != rec.CP || string(show(h.versions[0].Value).JSON) != "2" || len(h.versions) != 2 {
		t.Errorf("history: unresolved %d, versions %+v; want the committed value 2 at %d first", h.unresolved, h.versions, rec.CP)
	}
	if v := versionJSON(h.vr.Kind, h.versions[0], h.unresolved); !v.Unresolved {
		t.Errorf("versionJSON: %+v, want unresolved", v)
	}
}

// TestTimes: times for people, local or UTC, and relative to EPOCHAL_NOW.
func TestTimes(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	in := &inspect{utc: true, now: now}
	for _, c := range []struct{ got, want string }{
		{in.when(now.Add(-3 * time.Second)), "2030-01-01 11:59:57 UTC"},
		{in.ago(now.Add(-3 * time.Second)), "3s ago"},
		{in.ago(now.Add(-400 * time.Millisecond)), "<1s ago"},
		{in.ago(now.Add(-75 * time.Second)), "1m15s ago"},
		{in.ago(now.Add(-26*time.Hour - 5*time.Minute)), "1d2h ago"},
		{in.ago(now.Add(2 * time.Hour)), "in 2h0m"},
		{in.leaseLeft(now.Add(59*time.Minute + 50*time.Second)), "59m50s"},
		{in.leaseLeft(now.Add(-5 * time.Second)), "expired 5s ago"},
		{in.whenAgo(time.Time{}), "-"},
		{bytesSize(2560), "2.5 KiB"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	t.Setenv(envNow, "2030-01-01T12:00:00+02:00")
	if got, err := nowFromEnv(); err != nil || !got.Equal(now.Add(-2*time.Hour)) {
		t.Errorf("%s: %v, %v", envNow, got, err)
	}
	t.Setenv(envNow, "noon")
	if _, err := nowFromEnv(); exitCode(err) != exitUsage {
		t.Errorf("%s=noon: %v, want a usage error", envNow, err)
	}
}
