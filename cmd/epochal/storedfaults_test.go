package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
)

// TestRefsLsReportsMalformedRefs: a Redis key of the wrong type, a ref
// hash without its fields or a version entry that does not parse does not
// stop refs ls: it lists every other ref, shows each bad one as a row of
// kind "?" naming it, and exits 1 with one line naming them all.
func TestRefsLsReportsMalformedRefs(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	bin := buildBinary(t)
	ctx := t.Context()
	drv, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: "faults"})
	mustNoErr(t, err, "redis.Open")
	t.Cleanup(func() { drv.Close() })
	s, err := stm.Open(ctx, drv, stm.WithSweepInterval(0))
	mustNoErr(t, err, "stm.Open")
	t.Cleanup(func() { s.Close() })
	for _, n := range []string{"a/one", "c/two"} {
		_, err := refs.New(ctx, s, n, 1)
		mustNoErr(t, err, "refs.New")
	}
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer c.Close()
	p := "{faults}:"
	for _, cmd := range [][]any{
		{"ZADD", p + "refs", 0, "b/wrong-type", 0, "b/no-fields"},
		{"SET", p + "r:b/wrong-type", "x"},
		{"HSET", p + "r:b/no-fields", "min", 0},
	} {
		mustNoErr(t, c.Do(ctx, cmd...).Err(), fmt.Sprint(cmd))
	}
	env := cliEnv(backendRedis, srv.Addr, "faults")

	out, errOut, code := runBinary(t, bin, env, "refs", "ls")
	if code != exitFail || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "b/no-fields") || !strings.Contains(errOut, "b/wrong-type") {
		t.Errorf("refs ls: exit %d, stderr %q; want exit %d and one line naming both bad refs", code, errOut, exitFail)
	}
	for _, want := range []string{"a/one ", "c/two ", "b/no-fields ", "b/wrong-type "} {
		if !strings.Contains(out, want) {
			t.Errorf("refs ls: no row for %s:\n%s", strings.TrimSpace(want), out)
		}
	}
	out, _, code = runBinary(t, bin, env, "refs", "ls", "--json")
	var rows []refOut
	if err := json.Unmarshal([]byte(out), &rows); err != nil || code != exitFail || len(rows) != 4 {
		t.Fatalf("refs ls --json: exit %d, %v:\n%s", code, err, out)
	}
	for _, r := range rows {
		bad := strings.HasPrefix(r.Name, "b/")
		if bad != (r.Error != "") || bad && !strings.Contains(r.Error, "corrupt") {
			t.Errorf("refs ls --json: %+v", r)
		}
	}
	wantExit(t, bin, env, exitFail, "corrupt", "refs", "get", "b/no-fields")
	if out := cli(t, bin, env, "refs", "ls", "a/"); !strings.Contains(out, "a/one") {
		t.Errorf("refs ls a/: %s", out)
	}
}

// allocatedBy runs the command in this process and returns its error and
// the bytes it allocated. (A child's peak RSS cannot be measured from
// here: os/exec starts it with vfork, so the kernel counts this test's
// own memory as the child's high-water mark.)
func allocatedBy(t *testing.T, args ...string) (string, error, uint64) {
	t.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	out, _, err := runCLI(t, args...)
	runtime.ReadMemStats(&after)
	return out, err, after.TotalAlloc - before.TotalAlloc
}

// TestRefsGetOversizedValue: a 100 MB value planted as a ref's newest
// version is not read by refs get, history or ls (the server keeps it);
// get says how large it is and exits 1, all within a modest peak memory.
// Long values are cut in tables, with a note; --full and --json show them
// whole.
func TestRefsGetOversizedValue(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	bin := buildBinary(t)
	ctx := t.Context()
	drv, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: "big"})
	mustNoErr(t, err, "redis.Open")
	t.Cleanup(func() { drv.Close() })
	s, err := stm.Open(ctx, drv, stm.WithSweepInterval(0))
	mustNoErr(t, err, "stm.Open")
	t.Cleanup(func() { s.Close() })
	_, err = refs.New(ctx, s, "big/one", "small", refs.WithMinHistory(2))
	mustNoErr(t, err, "refs.New")
	long := strings.Repeat("0123456789", 500)
	_, err = refs.New(ctx, s, "long/one", long)
	mustNoErr(t, err, "refs.New")

	const size = 100 << 20
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer c.Close()
	val := make([]byte, size)
	n := uint32(size - 5)
	val[0], val[1], val[2], val[3], val[4] = 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	for i := 5; i < size; i++ {
		val[i] = 'x'
	}
	entry := append([]byte(fmt.Sprintf("999999\x00%d\x00planted\x00", time.Now().UnixMilli())), val...)
	mustNoErr(t, c.LPush(ctx, "{big}:v:big/one", entry).Err(), "plant")
	mustNoErr(t, c.Set(ctx, "{big}:clock", 999999, 0).Err(), "clock")
	val, entry = nil, nil
	env := cliEnv(backendRedis, srv.Addr, "big")

	out, errOut, code := runBinary(t, bin, env, "refs", "get", "big/one")
	if code != exitFail || !strings.Contains(errOut, "100.0 MiB") || !strings.Contains(errOut, "--value-limit") || !strings.Contains(out, "999999") {
		t.Errorf("refs get big/one: exit %d, stderr %q; want exit %d saying its size and --value-limit\nstdout:\n%s", code, errOut, exitFail, out)
	}
	for _, k := range []string{envBackend, envAddr, envPrefix, envNow} {
		t.Setenv(k, "")
	}
	flags := []string{"--backend", "redis", "--addr", srv.Addr, "--prefix", "big"}
	for _, c := range []struct {
		args []string
		ok   bool
		want string
	}{
		{[]string{"refs", "get", "big/one"}, false, "--value-limit"},
		{[]string{"refs", "history", "big/one"}, true, "not read"},
		{[]string{"refs", "ls"}, true, "100.0 MiB"},
	} {
		out, err, alloc := allocatedBy(t, append(flags, c.args...)...)
		t.Logf("epochal %v with a %d MiB value: %d KiB allocated (%v)", c.args, size>>20, alloc>>10, err)
		if (err == nil) != c.ok || !strings.Contains(out+fmt.Sprint(err), c.want) {
			t.Errorf("epochal %v: %v, want ok %v and %q:\n%s", c.args, err, c.ok, c.want, out)
		}
		if alloc > 16<<20 {
			t.Errorf("epochal %v allocated %d MiB: the %d MiB value was read", c.args, alloc>>20, size>>20)
		}
	}

	out = cli(t, bin, env, "refs", "get", "long/one")
	if strings.Contains(out, long) || !strings.Contains(out, "--full") {
		t.Errorf("refs get long/one: want the value cut, with a note naming --full:\n%s", out)
	}
	if out := cli(t, bin, env, "refs", "get", "long/one", "--full"); !strings.Contains(out, long) {
		t.Errorf("refs get long/one --full: want the whole value:\n%s", out)
	}
	var got versionOut
	cliJSON(t, bin, env, &got, "refs", "get", "long/one")
	if string(got.Value) != `"`+long+`"` {
		t.Errorf("refs get long/one --json: value cut to %d bytes", len(got.Value))
	}
	if out := cli(t, bin, env, "refs", "history", "long/one", "--full"); !strings.Contains(out, long) {
		t.Errorf("refs history long/one --full: want the whole value:\n%s", out)
	}
}
