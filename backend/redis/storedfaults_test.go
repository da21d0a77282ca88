package redis_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// plantMalformed writes, beside the refs a client made, keys that no
// driver writes: a ref whose hash is a string, one whose version list is
// a string, a hash without its fields, a name indexed with no hash, and a
// version entry that does not parse. It returns their names.
func plantMalformed(t *testing.T, c *goredis.Client, prefix string) []string {
	t.Helper()
	ctx := t.Context()
	p := "{" + prefix + "}:"
	bad := []string{"bad/hash-is-string", "bad/list-is-string", "bad/no-fields", "bad/ghost", "bad/garbled-version"}
	for _, n := range bad {
		if err := c.ZAdd(ctx, p+"refs", goredis.Z{Member: n}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	hash := func(n string) {
		must(c.HSet(ctx, p+"r:"+n, "kind", "ref", "min", 0, "max", 10, "keep", 0, "trimmed", 0, "ensured", 0, "newest", 0, "metaver", 0).Err())
	}
	must(c.Set(ctx, p+"r:bad/hash-is-string", "x", 0).Err())
	hash("bad/list-is-string")
	must(c.Set(ctx, p+"v:bad/list-is-string", "x", 0).Err())
	must(c.HSet(ctx, p+"r:bad/no-fields", "min", 0).Err())
	must(c.RPush(ctx, p+"v:bad/no-fields", "0\x000\x00\x00\x01").Err())
	hash("bad/garbled-version")
	must(c.RPush(ctx, p+"v:bad/garbled-version", "garbage").Err())
	return bad
}

// TestMalformedKeysAreNamed: a key of the wrong type, a ref hash missing
// its fields, an indexed name without a hash and a version entry that does
// not parse are backend.ErrCorrupt naming the ref; List lists every other
// ref and reports each bad one in its own RefInfo.Err.
func TestMalformedKeysAreNamed(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	prefix := newPrefix("malformed")
	b := open(t, srv, prefix)
	s := openSTM(t, b, stm.WithSweepInterval(0))
	ctx := t.Context()
	for _, n := range []string{"a/one", "a/two", "c/three"} {
		if _, err := refs.New(ctx, s, n, 1); err != nil {
			t.Fatal(err)
		}
	}
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer c.Close()
	bad := plantMalformed(t, c, prefix)
	if _, err := b.List(ctx, ""); err != nil {
		t.Fatal(err)
	}
	// List's script is gone (a restart, SCRIPT FLUSH): it is loaded again.
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	infos, err := b.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v, want the good refs listed and the bad ones reported each in its RefInfo", err)
	}
	var good, reported []string
	for _, in := range infos {
		if in.Err == nil {
			good = append(good, in.Name)
			continue
		}
		reported = append(reported, in.Name)
		if !errors.Is(in.Err, backend.ErrCorrupt) || !strings.Contains(in.Err.Error(), fmt.Sprintf("%q", in.Name)) {
			t.Errorf("List: %s: %v, want backend.ErrCorrupt naming it", in.Name, in.Err)
		}
	}
	if strings.Join(good, " ") != "a/one a/two c/three" {
		t.Errorf("List: good refs %v, want a/one a/two c/three", good)
	}
	if strings.Join(reported, " ") != "bad/garbled-version bad/ghost bad/hash-is-string bad/list-is-string bad/no-fields" {
		t.Errorf("List: reported %v, want every planted name", reported)
	}
	if infos, err := b.List(ctx, "a/"); err != nil || len(infos) != 2 {
		t.Errorf("List(a/): %+v, %v", infos, err)
	}

	for _, n := range bad {
		if n == "bad/ghost" {
			continue // no hash: a read finds no ref
		}
		if _, err := b.Versions(ctx, n); !errors.Is(err, backend.ErrCorrupt) || !strings.Contains(err.Error(), n) {
			t.Errorf("Versions(%s): %v, want backend.ErrCorrupt naming it", n, err)
		}
		r, err := refs.New(ctx, s, n, 0)
		if err == nil {
			_, err = r.Deref(ctx)
		}
		if !errors.Is(err, refs.ErrCorrupt) || !strings.Contains(err.Error(), n) {
			t.Errorf("refs on %s: %v, want refs.ErrCorrupt naming it", n, err)
		}
	}
	// A transaction that reads a bad ref beside a good one ends with the
	// error and writes nothing.
	one, _ := refs.New(ctx, s, "a/one", 0)
	bad0, _ := refs.New(ctx, s, "bad/garbled-version", 0)
	err = s.Dosync(ctx, func(tx *txn.Tx) error {
		one.Set(tx, 7)
		_ = bad0.Get(tx)
		return nil
	})
	if !errors.Is(err, refs.ErrCorrupt) {
		t.Errorf("Dosync over a bad ref: %v, want refs.ErrCorrupt", err)
	}
	if v, err := one.Deref(ctx); err != nil || v != 1 {
		t.Errorf("a/one: %d, %v; want 1, unwritten", v, err)
	}
}

// plantLarge pushes a version of size bytes (a msgpack string) onto the
// history of ref name, as a process without a size limit could have.
func plantLarge(t *testing.T, c *goredis.Client, prefix, name string, size int) {
	t.Helper()
	p := "{" + prefix + "}:"
	val := make([]byte, size)
	n := uint32(size - 5)
	val[0], val[1], val[2], val[3], val[4] = 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	for i := 5; i < size; i++ {
		val[i] = 'x'
	}
	entry := append([]byte("999999\x00"+fmt.Sprint(time.Now().UnixMilli())+"\x00planted\x00"), val...)
	if err := c.LPush(t.Context(), p+"v:"+name, entry).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(t.Context(), p+"clock", 999999, 0).Err(); err != nil { // the planted point is drawn
		t.Fatal(err)
	}
}

// TestOversizedValueNotTransferred: a 32 MiB value planted in a ref's
// history (the CLI's test plants 100 MiB, the size) is refused by refs (ErrTooLarge naming the ref, its size and the
// limit), and neither History nor List makes the client hold it: the
// process allocates far less than the value.
func TestOversizedValueNotTransferred(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	prefix := newPrefix("large")
	b := open(t, srv, prefix)
	s := openSTM(t, b, stm.WithSweepInterval(0))
	ctx := t.Context()
	r, err := refs.New(ctx, s, "big/one", "small", refs.WithMinHistory(2))
	if err != nil {
		t.Fatal(err)
	}
	const size = 32 << 20
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer c.Close()
	plantLarge(t, c, prefix, "big/one", size)
	runtime.GC()

	allocated := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	var hist []refs.Version[string]
	histAlloc := allocated(func() { hist, err = r.History(ctx) })
	if !errors.Is(err, refs.ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprint(size)) || !strings.Contains(err.Error(), "big/one") {
		t.Errorf("History: %v, want refs.ErrTooLarge naming big/one and %d bytes", err, size)
	}
	if len(hist) != 1 || hist[0].Value != "small" {
		t.Errorf("History kept %d versions, want the small one", len(hist))
	}
	var derefErr error
	derefAlloc := allocated(func() { _, derefErr = r.Deref(ctx) })
	if !errors.Is(derefErr, refs.ErrTooLarge) {
		t.Errorf("Deref: %v, want refs.ErrTooLarge", derefErr)
	}
	var infos []backend.RefInfo
	listAlloc := allocated(func() { infos, err = b.List(ctx, "big/") })
	if err != nil || len(infos) != 1 || infos[0].Size != size || infos[0].Versions != 2 {
		t.Errorf("List: %+v, %v; want big/one, %d bytes, 2 versions", infos, err, size)
	}
	t.Logf("allocated reading a history holding a %d MiB value: History %d KiB, List %d KiB; Deref in a transaction %d MiB",
		size>>20, histAlloc>>10, listAlloc>>10, derefAlloc>>20)
	if histAlloc > 4<<20 || listAlloc > 4<<20 {
		t.Errorf("History allocated %d MiB, List %d MiB: the value was transferred", histAlloc>>20, listAlloc>>20)
	}
}
