package check

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Histories from Elle's own tests (jepsen-io/elle:
// test/elle/list_append_test.clj and histories/*.edn), with the verdicts
// Elle's tests assert, checked against ours.
//
// Elle names cycles without predicates G-single-item and
// G-nonadjacent-item; ours are G-single and G-nonadjacent (elleName maps
// them). Elle's empty-transaction-graph (a graph with no edges: Elle
// makes the verdict unknown) has no counterpart here.
//
// An Elle test asks for anomalies by consistency model, or by name with
// the models Elle would imply; ours reports everything, so a case
// compares the failing anomalies we report, restricted to the names Elle
// was asked about (only), with Elle's. The consistency model becomes a
// configuration: serializable or repeatable-read forbid G2-item
// (Serializable), as does asking for G2; strict-serializable adds
// real-time order, strong-session snapshot isolation process order
// (G2-item allowed).

// Names Elle reports when asked for an anomaly, or when checking a
// consistency model: the anomaly and those that imply it.
var (
	elleAskG0      = []string{"G0"}
	elleAskG1      = []string{"G0", "G1a", "G1b", "G1c", "dirty-update", "future-read", "incompatible-order"}
	elleAskGSingle = []string{"G-single"}
	elleAskG2      = []string{"G-single", "G-nonadjacent", "G2-item", "lost-update"}
	// read-committed forbids G1 and reports the malformed reads too.
	elleRC = append([]string{"duplicate-elements", "garbage", "internal"}, elleAskG1...)
	// repeatable-read forbids G1 and G2-item.
	elleRR = append(slices.Clone(elleRC), elleAskG2...)

	cfgSerializable = ListAppendConfig{Serializable: true}
	cfgStrict       = ListAppendConfig{RealTime: true, Serializable: true}
	cfgSession      = ListAppendConfig{Process: true}
)

type elleCase struct {
	name string // Elle's test, and what it checks
	file string // the history, in testdata/elle (EDN)
	cfg  ListAppendConfig
	only []string // the names Elle was asked about; nil: all
	elle []string // the anomaly types Elle's test asserts, Elle's names
}

// elleName maps an anomaly type of Elle's to our name ("" for none).
func elleName(n string) string {
	switch {
	case n == "empty-transaction-graph":
		return ""
	case strings.HasPrefix(n, "G-single-item"), strings.HasPrefix(n, "G-nonadjacent-item"):
		return strings.Replace(n, "-item", "", 1)
	}
	return n
}

// elleCases are Elle's histories, each checked as one of Elle's tests
// does, and the anomalies Elle's test asserts.
func elleCases() []elleCase {
	return []elleCase{
		{"checker-test G0, asked for G0", "g0", cfgNone, elleAskG0, []string{"G0"}},
		{"checker-test G0, asked for G1", "g0", cfgNone, elleAskG1, []string{"G0"}},
		{"checker-test G0, asked for G2", "g0", cfgSerializable, elleAskG2, nil},
		{"checker-test G1a, read-committed", "g1a", cfgNone, elleRC, []string{"G1a", "empty-transaction-graph"}},
		{"checker-test G1a, asked for G2", "g1a", cfgSerializable, elleAskG2, []string{"empty-transaction-graph"}},
		{"checker-test G1a, repeatable-read", "g1a", cfgSerializable, elleRR, []string{"G1a", "empty-transaction-graph"}},
		{"checker-test G1b, asked for G0", "g1b", cfgNone, elleAskG0, nil},
		{"checker-test G1b, asked for G1", "g1b", cfgNone, elleAskG1, []string{"G1b"}},
		{"checker-test G1b, asked for G2", "g1b", cfgSerializable, elleAskG2, []string{"G-single-item"}},
		{"checker-test G1b, strict-serializable", "g1b", cfgStrict, nil, []string{"G-single-item", "G1b"}},
		{"checker-test G1c, asked for G0", "g1c", cfgNone, elleAskG0, nil},
		{"checker-test G1c, asked for G1", "g1c", cfgNone, elleAskG1, []string{"G1c"}},
		{"checker-test G1c, asked for G2", "g1c", cfgSerializable, elleAskG2, nil},
		{"checker-test G-single, asked for G0", "g-single", cfgNone, elleAskG0, nil},
		{"checker-test G-single, asked for G1", "g-single", cfgNone, elleAskG1, nil},
		{"checker-test G-single, asked for G-single", "g-single", cfgNone, elleAskGSingle, []string{"G-single-item"}},
		{"checker-test G-single, asked for G2", "g-single", cfgSerializable, elleAskG2, []string{"G-single-item"}},
		{"checker-test G2, asked for G0", "g2", cfgNone, elleAskG0, nil},
		{"checker-test G2, asked for G1", "g2", cfgNone, elleAskG1, nil},
		{"checker-test G2, read-committed", "g2", cfgNone, elleRC, nil},
		{"checker-test G2, asked for G2", "g2", cfgSerializable, elleAskG2, []string{"G2-item"}},
		{"checker-test G2, serializable", "g2", cfgSerializable, nil, []string{"G2-item"}},
		{"checker-test G2, repeatable-read", "g2", cfgSerializable, elleRR, []string{"G2-item"}},
		{"checker-test strong SI violation, asked for G2", "strong-si-violation", cfgSerializable, elleAskG2, nil},
		{"checker-test strong SI violation, serializable", "strong-si-violation", cfgSerializable, nil, nil},
		{"checker-test strong SI violation, strict-serializable", "strong-si-violation", cfgStrict, nil, []string{"G-single-item-realtime"}},
		{"checker-test strong session SI violation, serializable", "strong-session-si-violation", cfgSerializable, nil, nil},
		{"checker-test strong session SI violation, strong-session-snapshot-isolation", "strong-session-si-violation", cfgSession, nil, []string{"G-single-item-process"}},
		{"checker-test G-nonadjacent-process (Elle issue 17), serializable", "g-nonadjacent-process", cfgSerializable, nil, nil},
		{"checker-test G-nonadjacent-process (Elle issue 17), strong-session-snapshot-isolation", "g-nonadjacent-process", cfgSession, nil, []string{"G-nonadjacent-item-process"}},
		{"checker-test contradictory read orders, asked for G1", "contradictory-read-orders", cfgNone, elleAskG1, []string{"G1c", "incompatible-order"}},
		{"checker-test dirty update none", "dirty-update-none", cfgNone, []string{"dirty-update"}, []string{"empty-transaction-graph"}},
		{"checker-test dirty update direct", "dirty-update-direct", cfgNone, []string{"dirty-update"}, []string{"dirty-update"}},
		{"checker-test dirty update indirect", "dirty-update-indirect", cfgNone, []string{"dirty-update"}, []string{"dirty-update"}},
		{"checker-test duplicated elements, read-committed", "duplicated-elements", cfgNone, elleRC, []string{"G1c", "duplicate-elements"}},
		{"checker-test internal consistency violation, asked for internal", "internal", cfgNone, []string{"internal"}, []string{"internal"}},
		{"unobserved-write-test, serializable", "unobserved-write", cfgSerializable, nil, []string{"G-single-item", "G0"}},
		{"repeatable-read-test, read-committed", "repeatable-read", cfgNone, elleRC, nil},
		{"repeatable-read-test, repeatable-read", "repeatable-read", cfgSerializable, elleRR, []string{"G2-item"}},
		{"G-nonadjacent-test, strict-serializable", "g-nonadjacent", cfgStrict, nil, []string{"G-nonadjacent-item"}},
		{"G-nonadjacent-test adjacent rw edges, snapshot-isolation", "g-nonadjacent-adjacent-rw", cfgNone, nil, nil},
		{"lost-update-test, strict-serializable", "lost-update", cfgStrict, nil, []string{"G2-item", "lost-update"}},
		{"lost-update-test one txn, double write, strict-serializable", "lost-update-one-txn", cfgStrict, nil, nil},
		{"wr-process-test (Elle issue 21), strong-session-snapshot-isolation", "wr-process", cfgSession, nil, []string{"G1c-process"}},
		{"rr-g-single-item-test, repeatable-read", "rr-g-single-item", cfgSerializable, elleRR, []string{"G-single-item"}},
		{"rr-g-nonadjacent-item-test, repeatable-read", "rr-g-nonadjacent-item", cfgSerializable, elleRR, []string{"G-nonadjacent-item"}},
		{"future-read-test, read-committed", "future-read", cfgNone, elleRC, []string{"empty-transaction-graph", "future-read"}},
		{"intermediate-sequential-extension-test (histories/si-without-g-single.edn), snapshot-isolation and repeatable-read",
			"si-without-g-single", cfgSerializable, elleRR, []string{"G2-item"}},
	}
}

// elleFile is the path of one of Elle's histories in testdata.
func elleFile(name string) string { return filepath.Join("testdata", "elle", name+".edn") }

func TestListAppendElleHistories(t *testing.T) {
	for _, c := range elleCases() {
		t.Run(c.name, func(t *testing.T) {
			var want []string
			for _, n := range c.elle {
				if n = elleName(n); n != "" {
					want = append(want, n)
				}
			}
			slices.Sort(want)
			cfg := c.cfg
			r, err := File(elleFile(c.file), "list-append", Options{ListAppend: &cfg})
			if err != nil {
				t.Fatal(err)
			}
			t.Log(ckDump(r))
			var got []string
			for _, n := range ckNameSet(r, true) {
				if c.only == nil || slices.Contains(c.only, n) {
					got = append(got, n)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s: failing anomalies %v (of those Elle was asked about), Elle's %v", c.file, got, want)
			}
		})
	}
}

// Elle's histories/paper-example.edn, the history of the Elle paper's
// example: elle-cli's tests have it invalid under strict
// serializability (exit 1) without naming the anomaly. By Elle's rules:
// T3 reads key 255 up to T2's 8 (wr); T3 appended 4 to key 256, the last
// element a read shows, so precedes T4's unobserved append of 3 (ww);
// T4 read key 255 without T2's 8 (rw): G-single.
func TestListAppendElleExampleFromThePaper(t *testing.T) {
	r, err := File(elleFile("paper-example"), "list-append", Options{ListAppend: &cfgStrict})
	if err != nil {
		t.Fatal(err)
	}
	a := ckExpect(t, r, "G-single", false)
	if got := ckNameSet(r, false); !slices.Equal(got, []string{"G-single"}) {
		t.Fatal(ckDump(r))
	}
	if len(a.Ops) != 3 || !strings.Contains(a.Explain, "no read of key 256 shows 3") {
		t.Fatal(a.Explain)
	}
}

// laEdges builds the dependency graph of h (data edges only) and returns
// it by transaction position (invoke order): each one's successors.
func laEdges(h []Op) map[int][]int {
	a := newElleAnalysis(h, ListAppendConfig{})
	a.indexAppends()
	a.checkReads()
	a.inferOrders()
	a.buildGraph()
	out := map[int][]int{}
	for from, es := range a.adj {
		for _, e := range es {
			out[from] = append(out[from], e.to)
		}
	}
	return out
}

// The dependency graphs of Elle's graph-test, edge for edge.
func TestListAppendElleGraphs(t *testing.T) {
	for _, c := range []struct {
		name string
		h    []Op
		want map[int][]int
	}{
		{"one append one read", elTxns("ax1", "rx1"), map[int][]int{0: {1}}},
		{"read empty, append, read", elTxns("rx", "ax1", "rx1"), map[int][]int{0: {1}, 1: {2}}},
		{"append, append, read", elTxns("ax2", "ax1", "rx12"), map[int][]int{1: {0}, 0: {2}}},
		{"serializable figure 3 from Adya, Liskov, O'Neil", elTxns("az1ax1ay1", "rx1ay2", "ry12az3", "rz13"),
			map[int][]int{0: {1, 2}, 1: {2}, 2: {3}}},
		{"G0: write cycle", elTxns("ax1ay1", "ax2ay2", "rx12ry21"), map[int][]int{0: {1, 2}, 1: {0, 2}}},
		{"G1c: circular information flow", elTxns("ax1ry1", "ax2ay1", "rx12"), map[int][]int{0: {1}, 1: {0, 2}}},
		{"G2: anti-dependency cycle", elTxns("rxay1", "ryax1", "rx1ry1"), map[int][]int{0: {1, 2}, 1: {0, 2}}},
		{"info reads", func() []Op {
			var b ckHist
			b.txn(0, Info, el("ax2ry")...).txn(1, OK, el("ax1ay1")...).txn(2, OK, el("rx12ry1")...)
			return b.h
		}(), map[int][]int{0: {2}, 1: {0, 2}}},
		{"single appends without reads", elTxns("rx", "ax1"), map[int][]int{0: {1}}},
		{"multiple appends without reads", elTxns("rx", "ax1", "ax2"), map[int][]int{0: {1, 2}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := laEdges(c.h)
			if len(got) != len(c.want) {
				t.Fatalf("edges %v, want %v", got, c.want)
			}
			for from, tos := range c.want {
				slices.Sort(tos)
				if !slices.Equal(got[from], tos) {
					t.Fatalf("edges %v, want %v", got, c.want)
				}
			}
		})
	}
}
