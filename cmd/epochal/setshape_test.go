package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

func TestShapeOf(t *testing.T) {
	for _, c := range []struct {
		v    any
		want shape
	}{
		{nil, shape{Type: "nil"}},
		{true, shape{Type: "bool"}},
		{-3, shape{Type: "integer"}},
		{uint64(1 << 63), shape{Type: "integer"}},
		{1.5, shape{Type: "float"}},
		{float32(1.5), shape{Type: "float"}},
		{"x", shape{Type: "string"}},
		{[]byte{1}, shape{Type: "binary"}},
		{[]int{}, shape{Type: "array"}},
		{[]string{"a"}, shape{Type: "array", Elem: "string"}},
		{map[string]int{}, shape{Type: "map"}},
		{map[string]int{"a": 1}, shape{Type: "map", Key: "string"}},
		{map[int]string{1: "a"}, shape{Type: "map", Key: "integer"}},
	} {
		data, err := refs.Msgpack.Marshal(c.v)
		mustNoErr(t, err, "encode")
		if got, ok := shapeOf(data); !ok || got != c.want {
			t.Errorf("shapeOf(%#v) = %+v, %v; want %+v", c.v, got, ok, c.want)
		}
	}
	if _, ok := shapeOf([]byte(`{"a":1}`)); ok {
		t.Errorf("shapeOf(JSON bytes) ok; want not msgpack")
	}
}

// TestRefsSetShape: refs set refuses a value of another shape than the
// stored one, and a ref in another codec, with exit code 2 and nothing
// written, unless --force; --dry-run prints and writes nothing.
func TestRefsSetShape(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := t.Context()
	drv, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: "shape"})
	mustNoErr(t, err, "redis.Open")
	t.Cleanup(func() { drv.Close() })
	s, err := stm.Open(ctx, drv, stm.WithSweepInterval(0))
	mustNoErr(t, err, "stm.Open")
	t.Cleanup(func() { s.Close() })
	for name, v := range map[string]any{
		"int": 1, "str": "a", "map": map[string]int{"a": 1}, "list": []int{1, 2}, "empty": []int{}, "nil": (*account)(nil),
	} {
		_, err := refs.New(ctx, s, name, v)
		mustNoErr(t, err, "new "+name)
	}
	_, err = refs.New(ctx, s, "json", map[string]any{"a": 1}, refs.WithCodec(jsonCodec{}))
	mustNoErr(t, err, "new json")

	// stored is the newest version of a ref, straight from the driver.
	stored := func(name string) backend.Version {
		t.Helper()
		vr, err := drv.Versions(ctx, name)
		mustNoErr(t, err, "versions "+name)
		return vr.Versions[0]
	}
	set := func(args ...string) (string, error) {
		t.Helper()
		out, _, err := runCLI(t, append([]string{"--backend", "redis", "--addr", srv.Addr, "--prefix", "shape", "refs", "set"}, args...)...)
		return out, err
	}

	for _, c := range []struct{ name, value, want string }{
		{"int", "1.5", "the stored value is an integer, the new one a float"},
		{"int", `"7"`, "an integer, the new one a string"},
		{"str", `{"a": 1}`, "a string, the new one a map with string keys"},
		{"map", `[1]`, "a map with string keys, the new one an array of integer"},
		{"list", `{"a": 1}`, "an array of integer, the new one a map"},
		{"list", `["a"]`, "an array of integer, the new one an array of string"},
		{"str", `null`, "the new one nil"},
		{"json", `{"a": 2}`, "not msgpack"},
	} {
		before := stored(c.name)
		for _, extra := range [][]string{{"--yes"}, {"--dry-run"}} {
			_, err := set(append([]string{c.name, c.value}, extra...)...)
			if exitCode(err) != exitUsage || err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "--force") {
				t.Errorf("refs set %s %s %v: exit %d, %v; want exit %d saying %q and --force", c.name, c.value, extra, exitCode(err), err, exitUsage, c.want)
			}
		}
		if after := stored(c.name); after.Point != before.Point || string(after.Value) != string(before.Value) {
			t.Errorf("refused refs set %s %s wrote: point %d -> %d", c.name, c.value, before.Point, after.Point)
		}
	}

	// Same shapes pass: signed into unsigned, any array into an empty one,
	// anything into a nil.
	for _, c := range []struct{ name, value string }{
		{"int", "18446744073709551615"}, {"empty", `["x"]`}, {"nil", `{"owner": "x"}`}, {"map", `{"b": 2, "c": 3}`},
	} {
		if _, err := set(c.name, c.value, "--yes"); err != nil {
			t.Errorf("refs set %s %s --yes: %v", c.name, c.value, err)
		}
	}

	// --dry-run prints old, new and size, writes nothing.
	before := stored("str")
	out, err := set("str", `"hello"`, "--dry-run")
	mustNoErr(t, err, "dry run")
	for _, want := range []string{`OLD      "a" (2 B)`, `NEW      "hello" (6 B)`, "dry run: nothing written"} {
		if !strings.Contains(out, want) {
			t.Errorf("refs set --dry-run: no %q in\n%s", want, out)
		}
	}
	out, err = set("str", `"hello"`, "--dry-run", "--json")
	mustNoErr(t, err, "dry run --json")
	var dr dryRunOut
	if err := json.Unmarshal([]byte(out), &dr); err != nil || !dr.DryRun || string(dr.Old) != `"a"` || string(dr.New) != `"hello"` || dr.NewSize != 6 {
		t.Errorf("refs set --dry-run --json: %+v, %v\n%s", dr, err, out)
	}
	// --dry-run with --yes still writes nothing.
	_, err = set("str", `"hello"`, "--dry-run", "--yes")
	mustNoErr(t, err, "dry run --yes")
	if after := stored("str"); after.Point != before.Point || string(after.Value) != string(before.Value) {
		t.Errorf("refs set --dry-run wrote: point %d -> %d", before.Point, after.Point)
	}

	// --force writes what was refused.
	for _, c := range []struct{ name, value string }{{"int", "1.5"}, {"json", `{"a": 3}`}} {
		if _, err := set(c.name, c.value, "--yes", "--force"); err != nil {
			t.Errorf("refs set %s %s --yes --force: %v", c.name, c.value, err)
		}
		data, _ := encodeValue(mustJSON(t, c.value))
		if got := stored(c.name); string(got.Value) != string(data) {
			t.Errorf("refs set %s %s --force: stored %q, want %q", c.name, c.value, got.Value, data)
		}
	}
}

func mustJSON(t *testing.T, s string) any {
	t.Helper()
	v, err := parseJSONValue(s)
	mustNoErr(t, err, "parse "+s)
	return v
}

// TestRefsSetShapeRecheckedInTxn: a value of another shape committed
// between refs set's first check and its transaction is not overwritten:
// the transaction checks again.
func TestRefsSetShapeRecheckedInTxn(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := t.Context()
	drv, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: "race"})
	mustNoErr(t, err, "redis.Open")
	t.Cleanup(func() { drv.Close() })
	s, err := stm.Open(ctx, drv, stm.WithSweepInterval(0))
	mustNoErr(t, err, "stm.Open")
	t.Cleanup(func() { s.Close() })
	r, err := refs.New[any](ctx, s, "v", 1)
	mustNoErr(t, err, "new")
	beforeSetCommit = func() {
		mustNoErr(t, s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, "now a string"); return nil }), "set a string")
	}
	t.Cleanup(func() { beforeSetCommit = nil })
	_, _, err = runCLI(t, "--backend", "redis", "--addr", srv.Addr, "--prefix", "race", "refs", "set", "v", "2", "--yes")
	if exitCode(err) != exitUsage || err == nil || !strings.Contains(err.Error(), "the stored value is a string, the new one an integer") {
		t.Errorf("refs set over a value whose shape changed after its check: exit %d, %v; want exit 2, refused", exitCode(err), err)
	}
	if v, err := r.Deref(ctx); err != nil || v != "now a string" {
		t.Errorf("after the refused set: %v, %v; want the string kept", v, err)
	}
}
