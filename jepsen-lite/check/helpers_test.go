package check

import (
	"slices"
	"strings"
	"testing"
)

// ckHist builds a history by hand: each event gets the next index and a
// time 10ns after the previous one.
type ckHist struct {
	h []Op
	t int64
}

func (b *ckHist) ev(typ Type, p int, f string, v any) *ckHist {
	b.t += 10
	o := Op{Index: len(b.h), Type: typ, Process: p, F: f, Time: b.t}
	if v != nil {
		o = o.WithValue(v)
	}
	b.h = append(b.h, o)
	return b
}

func (b *ckHist) inv(p int, f string, v any) *ckHist { return b.ev(Invoke, p, f, v) }

func (b *ckHist) done(typ Type, p int, f string, v any) *ckHist { return b.ev(typ, p, f, v) }

// tInv invokes a transaction (reads unknown); tDone completes it.
func (b *ckHist) tInv(p int, mops ...Mop) *ckHist { return b.inv(p, "txn", ckStrip(mops)) }

func (b *ckHist) tDone(typ Type, p int, mops ...Mop) *ckHist {
	if typ != OK {
		mops = ckStrip(mops)
	}
	return b.done(typ, p, "txn", mops)
}

// txn runs a transaction with nothing concurrent.
func (b *ckHist) txn(p int, typ Type, mops ...Mop) *ckHist {
	return b.tInv(p, mops...).tDone(typ, p, mops...)
}

func ckStrip(mops []Mop) []Mop {
	out := make([]Mop, len(mops))
	for i, m := range mops {
		out[i] = m
		out[i].R = nil
	}
	return out
}

func ckAp(k, v int) Mop { return Mop{F: "append", K: k, V: v} }

func ckRd(k int, vs ...int) Mop {
	if vs == nil {
		vs = []int{}
	}
	return Mop{F: "r", K: k, R: vs}
}

// names lists a result's anomaly names.
func ckNames(r Result) []string {
	var out []string
	for _, a := range r.Anomalies {
		out = append(out, a.Name)
	}
	return out
}

func ckFind(r Result, name string) (Anomaly, bool) {
	for _, a := range r.Anomalies {
		if a.Name == name {
			return a, true
		}
	}
	return Anomaly{}, false
}

// expect checks that r has an anomaly named name, and that r.Valid is
// valid; it returns the anomaly.
func ckExpect(t *testing.T, r Result, name string, valid bool) Anomaly {
	t.Helper()
	t.Log(ckDump(r))
	a, ok := ckFind(r, name)
	if !ok {
		t.Fatalf("want anomaly %s, got %v", name, ckDump(r))
	}
	if r.Valid != valid {
		t.Fatalf("want valid=%v, got %v", valid, ckDump(r))
	}
	if a.Explain == "" || len(a.Ops) == 0 {
		t.Fatalf("anomaly %s without explanation or witness: %+v", name, a)
	}
	return a
}

func ckClean(t *testing.T, r Result) {
	t.Helper()
	if !r.Valid || len(r.Anomalies) > 0 {
		t.Fatalf("want no anomaly, got %v", ckDump(r))
	}
}

func ckDump(r Result) string {
	var b strings.Builder
	b.WriteString("verdict=")
	b.WriteString(string(r.Verdict()))
	for _, a := range r.Anomalies {
		b.WriteString("\n  ")
		b.WriteString(a.Name)
		if a.Allowed {
			b.WriteString(" (allowed)")
		}
		if a.Unknown {
			b.WriteString(" (unknown)")
		}
		b.WriteString(": ")
		b.WriteString(a.Explain)
	}
	return b.String()
}

func ckOpIndexes(ops []Op) []int {
	var out []int
	for _, o := range ops {
		out = append(out, o.Index)
	}
	return out
}

// elleKeys are the keys of Elle's test notation.
var elleKeys = map[byte]int{'x': 1, 'y': 2, 'z': 3, 't': 4, 'u': 5, 'w': 6}

// el parses a transaction in the notation of Elle's list-append tests:
// "ax1" appends 1 to x, "rx12" reads x = [1 2], "ry" reads y = [] (the
// empty list: an ok read of nil), "ax1ax2ry1" is three micro-ops; values
// are single digits; keys x, y, z, t, u, w are 1 to 6.
func el(s string) []Mop {
	var out []Mop
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 'a' || c == 'r':
			if i+1 >= len(s) {
				panic("el: " + s + ": micro-op without a key")
			}
			k, ok := elleKeys[s[i+1]]
			if !ok {
				panic("el: " + s + ": bad key")
			}
			i++
			if c == 'a' {
				out = append(out, Mop{F: "append", K: k})
			} else {
				out = append(out, Mop{F: "r", K: k, R: []int{}})
			}
		case c >= '0' && c <= '9' && len(out) > 0:
			m := &out[len(out)-1]
			if m.F == "append" {
				m.V = int(c - '0')
			} else {
				m.R = append(m.R, int(c-'0'))
			}
		default:
			panic("el: " + s + ": unexpected " + string(c))
		}
	}
	return out
}

// elTxns records each transaction of Elle's notation run alone, one
// after another, each by its own process (0, 1, ...).
func elTxns(specs ...string) []Op {
	var b ckHist
	for i, s := range specs {
		b.txn(i, OK, el(s)...)
	}
	return b.h
}

// ckNameSet lists a result's anomaly names, each once, sorted; with
// failing set, only those that fail the check (not allowed, not
// unknown).
func ckNameSet(r Result, failing bool) []string {
	var out []string
	for _, a := range r.Anomalies {
		if failing && (a.Allowed || a.Unknown) {
			continue
		}
		if !slices.Contains(out, a.Name) {
			out = append(out, a.Name)
		}
	}
	slices.Sort(out)
	return out
}
