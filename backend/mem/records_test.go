package mem

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
)

func TestGenerationsKeepAtLeastAPeriod(t *testing.T) {
	var g generations[string, int]
	g.init(time.Minute)
	t0 := time.Unix(1000, 0)
	g.put("a", 1, t0)
	g.put("b", 2, t0.Add(59*time.Second)) // just before the first rotation
	for _, c := range []struct {
		at   time.Duration
		id   string
		want bool
	}{
		{59 * time.Second, "a", true},
		{61 * time.Second, "a", true}, // rotated into old
		{61 * time.Second, "b", true},
		{119 * time.Second, "b", true}, // b has lived a full minute
		{122 * time.Second, "a", false},
		{122 * time.Second, "b", false},
	} {
		if _, ok := g.get(c.id, t0.Add(c.at)); ok != c.want {
			t.Fatalf("at +%v, %s present = %v, want %v", c.at, c.id, ok, c.want)
		}
	}
	// Idle for two periods: all gone at once.
	g.put("c", 3, t0.Add(130*time.Second))
	if _, ok := g.get("c", t0.Add(10*time.Minute)); ok {
		t.Fatal("an entry survived ten idle minutes")
	}
}

// TestOnePhaseRecordsOfEngineIDs: one-phase commit records of ids of the
// engine's form, kept in chunks of consecutive ids (onePhaseSeq), are
// found by their own id only, make a repeated commit idempotent, and a
// tombstone among them refuses its commit.
func TestOnePhaseRecordsOfEngineIDs(t *testing.T) {
	ctx := context.Background()
	b := New()
	if _, err := b.Create(ctx, backend.CreateRequest{Name: "x", Kind: backend.KindRef, Value: []byte{0}}); err != nil {
		t.Fatal(err)
	}
	commit := func(id string) backend.OnePhaseResult {
		t.Helper()
		rp, _ := b.ReadPoint(ctx)
		res, err := b.CommitOnePhase(ctx, backend.OnePhaseRequest{Txn: id, RP: rp, Time: time.Now(),
			Items: []backend.OnePhaseItem{{Name: "x", Mode: backend.ModeWrite, Value: []byte(id)}}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	cps := map[string]clock.Point{}
	for seq := 1; seq <= 50; seq += 3 { // holes: ids that never commit
		id := "p0-" + strconv.FormatUint(uint64(seq), 36)
		res := commit(id)
		if res.Status != backend.Committed {
			t.Fatalf("%s: %+v", id, res)
		}
		cps[id] = res.CP
	}
	var ids []string
	for seq := 1; seq <= 60; seq++ {
		ids = append(ids, "p0-"+strconv.FormatUint(uint64(seq), 36), "p1-"+strconv.FormatUint(uint64(seq), 36))
	}
	ids = append(ids, "p0-01", "p0-04", "p0-A", "p0-", "p0")
	recs, err := b.Records(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		cp, committed := cps[ids[i]]
		switch {
		case committed && (r.Status != backend.Committed || r.CP != cp):
			t.Fatalf("%s: %+v, want committed at %d", ids[i], r, cp)
		case !committed && r.Status != backend.Missing:
			t.Fatalf("%s never committed: %+v", ids[i], r)
		}
	}
	newest := func() clock.Point {
		vr, err := b.Versions(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		return vr.Versions[0].Point
	}
	before := newest()
	if res := commit("p0-7"); res.Status != backend.Committed || res.CP != cps["p0-7"] || newest() != before {
		t.Fatalf("repeated commit of p0-7: %+v (first at %d), newest %d -> %d", res, cps["p0-7"], before, newest())
	}
	if r, _ := b.AbortRecord(ctx, "p0-a"); r.Status != backend.Committed || r.CP != cps["p0-a"] {
		t.Fatalf("abort of committed p0-a: %+v", r)
	}
	if r, _ := b.AbortRecord(ctx, "p0-9"); r.Status != backend.Aborted {
		t.Fatalf("abort of p0-9, which never committed: %+v", r)
	}
	if res := commit("p0-9"); res.Status != backend.Aborted || newest() != before {
		t.Fatalf("commit of tombstoned p0-9: %+v", res)
	}
}

func TestSeqIDIsOneToOne(t *testing.T) {
	for _, c := range []struct {
		id     string
		prefix string
		seq    uint64
		ok     bool
	}{
		{"ab12-1", "ab12", 1, true},
		{"ab12-z", "ab12", 35, true},
		{"ab12-10", "ab12", 36, true},
		{"a-b-c", "a-b", 12, true},
		{"ab12-01", "", 0, false}, // not canonical: would be ab12-1's
		{"ab12-0", "", 0, false},
		{"ab12-A", "", 0, false},
		{"ab12-", "", 0, false},
		{"ab12", "", 0, false},
		{"ab12-1234567890123", "", 0, false}, // too long to hold
	} {
		p, seq, ok := seqID(c.id)
		if p != c.prefix || seq != c.seq || ok != c.ok {
			t.Errorf("seqID(%q) = %q, %d, %v; want %q, %d, %v", c.id, p, seq, ok, c.prefix, c.seq, c.ok)
		}
		if ok && c.prefix+"-"+strconv.FormatUint(seq, 36) != c.id {
			t.Errorf("%q does not round-trip", c.id)
		}
	}
}

func TestSeqChunksKeepAtLeastAPeriod(t *testing.T) {
	var s recStripe
	s.init()
	t0 := time.Unix(1000, 0)
	k, _ := toSeqKey("p", 0)
	s.putSeq(k, 1, onePhaseRec{cp: 1}, t0)
	s.putSeq(k, 2, onePhaseRec{cp: 2}, t0.Add(onePhaseKeep+time.Second)) // after a rotation: a new chunk in young
	for _, c := range []struct {
		at   time.Duration
		i    uint64
		want bool
	}{
		{onePhaseKeep + time.Second, 1, true}, // in the old chunk
		{onePhaseKeep + time.Second, 2, true},
		{onePhaseKeep + time.Second, 3, false},
		{2*onePhaseKeep + 2*time.Second, 1, false},
		{2*onePhaseKeep + 2*time.Second, 2, true},
	} {
		if _, ok := s.getSeq(k, c.i, t0.Add(c.at)); ok != c.want {
			t.Fatalf("at +%v, slot %d present = %v, want %v", c.at, c.i, ok, c.want)
		}
	}
}

// TestReadIntoReusesBuffer: ReadInto puts items in the caller's buffer,
// and a ref not found there is not found, whatever the buffer held.
func TestReadIntoReusesBuffer(t *testing.T) {
	ctx := context.Background()
	b := New()
	if _, err := b.Create(ctx, backend.CreateRequest{Name: "x", Kind: backend.KindRef, Value: []byte{7}}); err != nil {
		t.Fatal(err)
	}
	var buf [1]backend.ReadItem
	res, err := b.ReadInto(ctx, backend.ReadRequest{Current: true, Names: []string{"x"}}, buf[:0])
	if err != nil || !res.Items[0].Found || &res.Items[0] != &buf[0] {
		t.Fatalf("read of x: %+v, %v (in the buffer: %v)", res, err, len(res.Items) > 0 && &res.Items[0] == &buf[0])
	}
	res, err = b.ReadInto(ctx, backend.ReadRequest{Current: true, Names: []string{"missing"}}, buf[:0])
	if err != nil || res.Items[0].Found || res.Items[0].Version.Value != nil {
		t.Fatalf("read of a missing ref into a used buffer: %+v, %v", res.Items[0], err)
	}
	res, err = b.ReadInto(ctx, backend.ReadRequest{Current: true, Names: []string{"x", "missing"}}, buf[:0])
	if err != nil || len(res.Items) != 2 || !res.Items[0].Found || res.Items[1].Found {
		t.Fatalf("read of two refs with room for one: %+v, %v", res.Items, err)
	}
}
