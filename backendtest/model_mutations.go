package backendtest

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
)

// testModelMutations shows that each of checkModel's checks can fail: it
// records a real history of a fixed plan (a commit with a commute, a
// read-modify-write made to retry by a nested commit, an aborted write, a
// reader), checks that it is clean, then breaks one fact of a copy at a
// time, as a faulty engine or backend would, and asserts that the checker
// reports the right kind of violation.
func testModelMutations(t *testing.T, newDriver NewDriver) {
	p := modelPlan{Refs: 2, Clients: [][]planTxn{{
		{Ops: []planOp{{Kind: opWrite, Ref: 0}, {Kind: opCommute, Delta: 1}}},                                                  // c0-t0
		{Ops: []planOp{{Kind: opRead, Ref: 0}, {Kind: opNested, Ref: 0}, {Kind: opWrite, Ref: 0}}},                             // c0-t1, retried
		{Ops: []planOp{{Kind: opWrite, Ref: 1}}, Abort: true},                                                                  // c0-t2
		{Ops: []planOp{{Kind: opRead, Ref: 0}, {Kind: opRead, Ref: 1}, {Kind: opEnsure, Ref: 1}, {Kind: opCommute, Delta: 2}}}, // c0-t3
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), modelTimeout)
	defer cancel()
	h, err := runPlanOnce(ctx, newDriver(t), newDriver(t), p)
	if err != nil {
		t.Fatal(err)
	}
	if vs := checkModel(h); len(vs) > 0 {
		t.Fatalf("the unmutated history has %d violation(s):\n%s\nhistory:\n%s", len(vs), strings.Join(vs, "\n"), h.dump())
	}
	if n := len(modelTxn(t, h, "c0-t1").Attempts); n != 2 {
		t.Fatalf("c0-t1 ran %d attempts, want 2 (the nested commit must make it retry):\n%s", n, h.dump())
	}

	cases := []struct {
		name   string
		want   string // a violation must start with this
		mutate func(t *testing.T, h *modelHistory)
	}{
		{"VersionOfAbortedTxn", "I1:", func(t *testing.T, h *modelHistory) {
			newestOf(h, 0).Txn = modelTxn(t, h, "c0-t2").last().ID
		}},
		{"VersionOfRetriedAttempt", "I1:", func(t *testing.T, h *modelHistory) {
			newestOf(h, 0).Txn = modelTxn(t, h, "c0-t1").Attempts[0].ID
		}},
		{"WriteMissing", "I1:", func(t *testing.T, h *modelHistory) {
			// c0-t0's counter version vanishes: the counter now holds
			// only c0-t3's increment on top of the initial value.
			vs := h.Counter.Versions
			h.Counter.Versions = []modelVersion{vs[0], vs[2]}
		}},
		{"WritesAtTwoPoints", "I1:", func(t *testing.T, h *modelHistory) {
			oldest := h.Counter.Versions[len(h.Counter.Versions)-2] // c0-t0's
			for i, v := range h.Refs[0].Versions {
				if v.Txn == oldest.Txn {
					h.Refs[0].Versions[i].Point++ // off the point of its counter version
				}
			}
		}},
		{"StaleRead", "I2:", func(t *testing.T, h *modelHistory) {
			modelTxn(t, h, "c0-t3").last().Reads[0].Value = h.Refs[0].Initial
		}},
		{"AbortedValueRead", "I2:", func(t *testing.T, h *modelHistory) {
			modelTxn(t, h, "c0-t3").last().Reads[1].Value = modelTxn(t, h, "c0-t2").last().Writes[1]
		}},
		{"OwnWriteNotRead", "I2:", func(t *testing.T, h *modelHistory) {
			a := modelTxn(t, h, "c0-t3").last()
			a.Reads[1].Own = "something it set"
		}},
		{"LostUpdate", "I3 first committer wins", func(t *testing.T, h *modelHistory) {
			// c0-t1 commits as if its first attempt, which read before
			// the nested write, had not been made to retry.
			t1 := modelTxn(t, h, "c0-t1")
			t1.last().RP = t1.Attempts[0].RP
			t1.last().Reads = nil
		}},
		{"EnsureIgnored", "I3 ensure", func(t *testing.T, h *modelHistory) {
			// c0-t2 commits its write of x1 just after c0-t3, which
			// ensured x1, committed inside c0-t2's window.
			t2, cp3 := modelTxn(t, h, "c0-t2"), h.Counter.Versions[0].Point
			t2.Status = txnCommitted
			t2.last().RP = cp3 - 1
			v := modelVersion{Point: cp3 + 1, Txn: t2.last().ID, Value: t2.last().Writes[1]}
			h.Refs[1].Versions = append([]modelVersion{v}, h.Refs[1].Versions...)
		}},
		{"CommuteLost", "commute:", func(t *testing.T, h *modelHistory) {
			h.Counter.Versions[0].N--
		}},
		{"ReadPointGoesBack", "I5:", func(t *testing.T, h *modelHistory) {
			t0 := modelTxn(t, h, "c0-t0")
			t3 := modelTxn(t, h, "c0-t3")
			t3.Attempts[0].RP = t0.last().RP
			t3.Attempts[0].Reads = nil
		}},
		{"PointsOutOfOrder", "x0: History points", func(t *testing.T, h *modelHistory) {
			vs := h.Refs[0].Versions
			vs[0].Point, vs[1].Point = vs[1].Point, vs[0].Point
		}},
		{"InitialValueChanged", "x1: the oldest version", func(t *testing.T, h *modelHistory) {
			h.Refs[1].Versions[len(h.Refs[1].Versions)-1].Value = "garbage"
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := h.clone()
			tc.mutate(t, m)
			vs := checkModel(m)
			for _, v := range vs {
				if strings.HasPrefix(v, tc.want) {
					t.Logf("caught: %s", v)
					return
				}
			}
			t.Fatalf("the checker did not report %q; it reported %d violation(s):\n%s\nmutated history:\n%s",
				tc.want, len(vs), strings.Join(vs, "\n"), m.dump())
		})
	}
}

// modelTxn returns the Dosync of that name.
func modelTxn(t *testing.T, h *modelHistory, name string) *modelTxnRec {
	t.Helper()
	for _, r := range h.Txns {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no transaction %s in the history", name)
	return nil
}

// newestOf returns ref i's newest version, for changing in place.
func newestOf(h *modelHistory, i int) *modelVersion { return &h.Refs[i].Versions[0] }

// clone deep-copies a history, so a mutation leaves the original alone.
func (h *modelHistory) clone() *modelHistory {
	c := *h
	c.Refs = nil
	for _, r := range h.Refs {
		r.Versions = slices.Clone(r.Versions)
		c.Refs = append(c.Refs, r)
	}
	c.Counter.Versions = slices.Clone(h.Counter.Versions)
	c.Txns = nil
	for _, t := range h.Txns {
		nt := *t
		nt.Attempts = nil
		for _, a := range t.Attempts {
			na := *a
			na.Reads = slices.Clone(a.Reads)
			na.Writes = maps.Clone(a.Writes)
			na.Wrote = slices.Clone(a.Wrote)
			na.Ensured = maps.Clone(a.Ensured)
			nt.Attempts = append(nt.Attempts, &na)
		}
		c.Txns = append(c.Txns, &nt)
	}
	return &c
}
