package jepsenlite

import (
	"encoding/json"
	"html"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/epochal/epochal/jepsen-lite/check"
)

// rptLongReadsHistory is 300 transactions appending 1..300 to key 0, then
// two reads of it that agree on the first 199 elements and then differ:
// the real list-append checker finds them incompatible.
func rptLongReadsHistory() []check.Op {
	var h []check.Op
	add := func(typ check.Type, p int, v string) {
		h = append(h, check.Op{Index: len(h), Type: typ, Process: p, F: "txn", Time: int64(len(h)+1) * rptMsNs, Value: json.RawMessage(v)})
	}
	list := func(vs []int) string {
		b, _ := json.Marshal(vs)
		return string(b)
	}
	var all, other []int
	for v := 1; v <= 300; v++ {
		add(check.Invoke, 0, `[["append",0,`+itoa(v)+`]]`)
		add(check.OK, 0, `[["append",0,`+itoa(v)+`]]`)
		all = append(all, v)
	}
	other = append(append(append(other, all[:199]...), 300), all[199:299]...)
	add(check.Invoke, 1, `[["r",0,null]]`)
	add(check.OK, 1, `[["r",0,`+list(all)+`]]`)
	add(check.Invoke, 2, `[["r",0,null]]`)
	add(check.OK, 2, `[["r",0,`+list(other)+`]]`)
	return h
}

func itoa(v int) string { b, _ := json.Marshal(v); return string(b) }

// TestReportExplains: the report says what ok, fail and info mean and
// what each anomaly found means; a witness of two long reads shows where
// they first differ and their tails, shortened, never hundreds of
// numbers; failing anomalies are marked on the charts, linked to their
// witness.
func TestReportExplains(t *testing.T) {
	h := rptLongReadsHistory()
	res := check.NewListAppendChecker().Check(h)
	var names []string
	for _, a := range res.Anomalies {
		names = append(names, a.Name)
	}
	if !strings.Contains(strings.Join(names, " "), "incompatible-order") {
		t.Fatalf("the checker found %v, want incompatible-order", names)
	}
	out := rptRender(t, reportData{Title: "list-append", Verdict: res.Verdict(), History: h, Results: []check.Result{res}, Elapsed: 700 * time.Millisecond})
	rptCheckSVG(t, out)
	for _, typ := range []check.Type{check.OK, check.Fail, check.Info} {
		if !strings.Contains(out, html.EscapeString(check.OutcomeMeanings[typ])) {
			t.Errorf("the report does not say what %s means", typ)
		}
	}
	for _, n := range names {
		if m := check.AnomalyMeaning(n); m == "" || !strings.Contains(out, html.EscapeString(m)) {
			t.Errorf("the report does not say what %s means (%q)", n, m)
		}
	}
	checkers := out[strings.Index(out, "<h2>Checkers</h2>"):]
	if !strings.Contains(checkers, "key 0: T1 (op 601) read 300 elements, T2 (op 603) 300; they agree on the first 199 (… 197 198 199); then T1 has [200 201 202 203 204 205 206 207 … (+93 more)], T2 has [300 200 201 202 203 204 205 206 … (+93 more)]") {
		t.Errorf("the witness does not show where the reads first differ:\n%s", checkers)
	}
	if m := regexp.MustCompile(`(?:\d+[ ,]){30}`).FindString(checkers); m != "" {
		t.Errorf("the checkers' section shows a run of 30 numbers: %s…", m)
	}
	if !strings.Contains(checkers, "(300 elements)") {
		t.Errorf("a long list is not shortened to its ends and length")
	}
	for i, a := range res.Anomalies {
		if a.Allowed || a.Unknown {
			continue
		}
		id := rptAnomalyID(0, i)
		if !strings.Contains(out, `<a href="#`+id+`" class="mark">`) || !strings.Contains(out, `id="`+id+`"`) {
			t.Errorf("anomaly #%d %s is not marked on the charts, linked to its witness", i+1, a.Name)
		}
	}
}
