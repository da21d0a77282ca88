// Package snapshot takes pictures of what a server stores, for tests that
// check that something wrote nothing: every znode under a ZooKeeper root
// with the stat fields any write changes, every Redis key matching a
// pattern with its type and a digest of its value. Two pictures are
// compared with Diff.
package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"
	goredis "github.com/redis/go-redis/v9"
)

// Picture maps a znode's path or a key's name to what was stored there.
type Picture map[string]string

// ZK returns every znode under root, root included, each with its data
// version, child version, ACL version, Mzxid, Pzxid and number of
// children: a write to a znode (SetData, even of the same bytes) changes
// its version and Mzxid; a child created or deleted changes its parent's
// child version and Pzxid; an ACL set changes its ACL version.
func ZK(t testing.TB, conn *gozk.Conn, root string) Picture {
	t.Helper()
	p := Picture{}
	var walk func(path string)
	walk = func(path string) {
		kids, st, err := conn.Children(path)
		if errors.Is(err, gozk.ErrNoNode) {
			return // deleted meanwhile
		}
		if err != nil {
			t.Fatalf("snapshot: children of %s: %v", path, err)
		}
		p[path] = fmt.Sprintf("version %d cversion %d aversion %d mzxid %d pzxid %d children %d",
			st.Version, st.Cversion, st.Aversion, st.Mzxid, st.Pzxid, st.NumChildren)
		slices.Sort(kids)
		for _, k := range kids {
			walk(strings.TrimSuffix(path, "/") + "/" + k)
		}
	}
	walk(root)
	return p
}

// Mask replaces the values of the named fields ("version", "mzxid", ...)
// of a ZK picture's entry for path with "*", so that Diff overlooks their
// changes (those a test expects: a znode another client wrote meanwhile).
func (p Picture) Mask(path string, fields ...string) {
	v, ok := p[path]
	if !ok {
		return
	}
	f := strings.Fields(v)
	for i := 0; i+1 < len(f); i += 2 {
		if slices.Contains(fields, f[i]) {
			f[i+1] = "*"
		}
	}
	p[path] = strings.Join(f, " ")
}

// Redis returns every key of c's database that matches pattern (SCAN's
// MATCH), each with its type, whether it expires, and the SHA-256 of its
// value in a canonical form: a string's bytes, a list's items in order, a
// sorted set's members and scores in order, a hash's fields and a set's
// members sorted (DUMP would not do: a hash or set stored as a hash table
// is dumped in the table's order, which rehashing changes on reads).
func Redis(t testing.TB, c *goredis.Client, pattern string) Picture {
	t.Helper()
	ctx := context.Background()
	p := Picture{}
	iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		typ, err := c.Type(ctx, k).Result()
		if err != nil {
			t.Fatalf("snapshot: TYPE %s: %v", k, err)
		}
		var items []string
		switch typ {
		case "none":
			continue // expired meanwhile
		case "string":
			var v string
			v, err = c.Get(ctx, k).Result()
			items = []string{v}
		case "list":
			items, err = c.LRange(ctx, k, 0, -1).Result()
		case "set":
			items, err = c.SMembers(ctx, k).Result()
			slices.Sort(items)
		case "zset":
			var zs []goredis.Z
			zs, err = c.ZRangeWithScores(ctx, k, 0, -1).Result()
			for _, z := range zs {
				items = append(items, fmt.Sprintf("%v %v", z.Member, z.Score))
			}
		case "hash":
			var h map[string]string
			h, err = c.HGetAll(ctx, k).Result()
			for f, v := range h {
				items = append(items, f+"\x00"+v)
			}
			slices.Sort(items)
		default:
			t.Fatalf("snapshot: %s is a %s, which it cannot read", k, typ)
		}
		if errors.Is(err, goredis.Nil) {
			continue // expired meanwhile
		}
		if err != nil {
			t.Fatalf("snapshot: read %s: %v", k, err)
		}
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatalf("snapshot: PTTL %s: %v", k, err)
		}
		h := sha256.New()
		for _, it := range items {
			fmt.Fprintf(h, "%d:%s", len(it), it)
		}
		p[k] = fmt.Sprintf("%s expires %v sha256 %s", typ, ttl >= 0, hex.EncodeToString(h.Sum(nil)[:8]))
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("snapshot: SCAN %s: %v", pattern, err)
	}
	return p
}

// Diff lists what differs between two pictures, one line each, sorted:
// "+ name: ..." for what only after holds, "- name: ..." for what only
// before holds, "~ name: before -> after" for what changed. Names for
// which skip returns true are left out (skip may be nil).
func Diff(before, after Picture, skip func(name string) bool) []string {
	var out []string
	for k, b := range before {
		if skip != nil && skip(k) {
			continue
		}
		a, ok := after[k]
		switch {
		case !ok:
			out = append(out, "- "+k+": "+b)
		case a != b:
			out = append(out, "~ "+k+": "+b+" -> "+a)
		}
	}
	for k, a := range after {
		if skip != nil && skip(k) {
			continue
		}
		if _, ok := before[k]; !ok {
			out = append(out, "+ "+k+": "+a)
		}
	}
	slices.Sort(out)
	return out
}

// AwaitSet waits (polling, up to 20 s) until the znode at path has been
// set since its data version was version: a writing backend's sweep of
// root/o sets o first, so that the picture taken after it does not catch
// it half-way. The writer must have nothing to delete (records younger
// than its OnePhaseKeep): nothing tells when its deletes are over.
func AwaitSet(t testing.TB, conn *gozk.Conn, path string, version int32) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, st, err := conn.Get(path)
		if err != nil {
			t.Fatalf("snapshot: get %s: %v", path, err)
		}
		if st.Version > version {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot: %s not set within 20s", path)
		}
	}
}
