package jepsenlite

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/epochal/epochal/jepsen-lite/check"
)

const rptMsNs = int64(time.Millisecond)

// rptSynth is a small run: two workers over 3 s (worker 0 is process 0,
// then process 2 after an info), ok, fail and info outcomes and one
// invocation that never completes, a window fault and an instant one,
// and a result with an anomaly whose witness is two ops.
func rptSynth() reportData {
	op := func(typ check.Type, proc int, f string, v string, t int64) check.Op {
		o := check.Op{Type: typ, Process: proc, F: f, Time: t * rptMsNs}
		if v != "" {
			o.Value = json.RawMessage(v)
		}
		return o
	}
	h := []check.Op{
		op(check.Invoke, 0, "write", `{"k":1,"v":1}`, 100),
		op(check.Invoke, 1, "read", `{"k":1}`, 120),
		op(check.OK, 0, "write", `{"k":1,"v":1}`, 150),
		op(check.OK, 1, "read", `{"k":1,"v":1,"found":true}`, 180),
		op(check.Invoke, 1, "cas", `{"k":1,"old":1,"new":2}`, 400),
		op(check.Fail, 1, "cas", `{"k":1,"old":1,"new":2}`, 500),
		op(check.Invoke, 0, "write", `{"k":1,"v":3}`, 1000),
		op(check.Info, 0, "write", `{"k":1,"v":3}`, 2000),
		op(check.Invoke, 2, "read", `{"k":1}`, 2100),
		op(check.OK, 2, "read", `{"k":1,"v":3,"found":true}`, 2200),
		op(check.Invoke, 1, "read", `{"k":1}`, 2500),
		op(check.OK, 1, "read", `{"k":1,"v":1,"found":true}`, 2600),
		op(check.Invoke, 1, "write", `{"k":1,"v":4}`, 2900), // never completes
	}
	for i := range h {
		h[i].Index = i
	}
	h[7].Error = "timeout <ctx>"
	return reportData{
		Title:   "register on <mem>",
		Config:  map[string]string{"workload": "register", "backend": "mem", "nemesis": "partition,kill-client", "note": `a<b & "c"`},
		Verdict: check.VerdictFail,
		History: h,
		Faults: []FaultWindow{
			{Kind: "partition", Target: "n1 | n2,n3", Start: 800 * rptMsNs, End: 1800 * rptMsNs},
			{Kind: "kill-client", Target: "client process 1", Start: 1500 * rptMsNs, End: 1500 * rptMsNs},
		},
		Results: []check.Result{{
			Checker: "linearizable-register",
			Valid:   false,
			OK:      4, Fail: 1, Info: 2,
			Anomalies: []check.Anomaly{
				{Name: "nonlinearizable", Explain: "read of <b>1</b> at op 11 follows the write of 3 (op 9 read it)", Ops: []check.Op{h[7], h[9], h[11]}},
				{Name: "G2-item", Allowed: true, Explain: "write skew: T1 -rw-> T2 -rw-> T1", Ops: []check.Op{h[2]}},
			},
		}},
		Elapsed: 3 * time.Second,
	}
}

func rptRender(t *testing.T, d reportData) string {
	t.Helper()
	var b bytes.Buffer
	if err := writeReport(&b, d); err != nil {
		t.Fatalf("WriteReport: %v", err)
	}
	return b.String()
}

// rptCheckSVG checks the report holds at least two SVG charts, each
// balanced and well-formed XML, and returns them.
func rptCheckSVG(t *testing.T, out string) []string {
	t.Helper()
	if o, c := strings.Count(out, "<svg"), strings.Count(out, "</svg>"); o != c || o < 2 {
		t.Fatalf("%d <svg and %d </svg>, want equal and at least 2", o, c)
	}
	var segs []string
	rest := out
	for {
		i := strings.Index(rest, "<svg")
		if i < 0 {
			break
		}
		j := strings.Index(rest[i:], "</svg>")
		if j < 0 {
			t.Fatal("<svg without </svg>")
		}
		seg := rest[i : i+j+len("</svg>")]
		if strings.Count(seg, "<svg") != 1 {
			t.Fatal("nested or unbalanced <svg>")
		}
		segs = append(segs, seg)
		rest = rest[i+j+len("</svg>"):]
	}
	for n, seg := range segs {
		dec := xml.NewDecoder(strings.NewReader(seg))
		dec.Strict = true
		depth := 0
		for {
			tok, err := dec.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("svg %d is not well-formed XML: %v", n, err)
			}
			switch tok.(type) {
			case xml.StartElement:
				depth++
			case xml.EndElement:
				depth--
			}
		}
		if depth != 0 {
			t.Fatalf("svg %d: unbalanced elements (depth %d)", n, depth)
		}
	}
	if len(segs) < 2 {
		t.Fatalf("%d svg charts, want 2", len(segs))
	}
	return segs
}

func TestReportContent(t *testing.T) {
	d := rptSynth()
	out := rptRender(t, d)
	svgs := rptCheckSVG(t, out)

	for _, want := range []string{
		"<!DOCTYPE html>",
		`<div class="verdict fail">FAIL</div>`,
		"Latency over time", "Throughput over time",
		"nonlinearizable", "G2-item", "allowed under snapshot isolation",
		"read of &lt;b&gt;1&lt;/b&gt; at op 11", // Explain escaped
		"register on &lt;mem&gt;",               // title escaped
		"a&lt;b &amp; &#34;c&#34;",              // config value escaped
		"timeout &lt;ctx&gt;",                   // witness error escaped
		"linearizable-register", "INVALID",
		"1 invocations never completed and are counted as info",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, bad := range []string{"<b>1</b>", "<mem>", "<ctx>", "<script", "INCOMPLETE RUN", "sampled"} {
		if strings.Contains(out, bad) {
			t.Errorf("report contains %q", bad)
		}
	}

	// Config sorted by key.
	keys := regexp.MustCompile(`<tr><th>([a-z]+)</th><td>`).FindAllStringSubmatch(out, -1)
	var got []string
	for _, k := range keys {
		got = append(got, k[1])
	}
	if strings.Join(got, ",") != "backend,nemesis,note,workload" {
		t.Errorf("config keys in order %v", got)
	}

	// Outcome counts: f, ok, fail, info, total. write: one ok, one info
	// (completed) — the never-completed write is info too.
	for _, row := range []struct {
		f             string
		ok, fail, inf string
	}{
		{"cas", "0", "1", "0"},
		{"read", "3", "0", "0"},
		{"write", "1", "0", "2"},
		{"all", "4", "1", "2"},
	} {
		re := regexp.MustCompile(`<td>` + row.f + `</td><td class="n">` + row.ok + `</td><td class="n">` + row.fail + `</td><td class="n">` + row.inf + `</td>`)
		if !re.MatchString(out) {
			t.Errorf("no outcome row %s ok=%s fail=%s info=%s", row.f, row.ok, row.fail, row.inf)
		}
	}

	// Both charts carry both fault labels; the window is a band, the
	// instant fault a line.
	for i, svg := range svgs[:2] {
		for _, lbl := range []string{">partition</text>", ">kill-client</text>"} {
			if !strings.Contains(svg, lbl) {
				t.Errorf("svg %d lacks fault label %q", i, lbl)
			}
		}
		if !strings.Contains(svg, `fill-opacity="0.14"><title>partition n1 | n2,n3`) {
			t.Errorf("svg %d lacks the partition band", i)
		}
		if !strings.Contains(svg, `stroke-dasharray="4 3"><title>kill-client`) {
			t.Errorf("svg %d lacks the kill line", i)
		}
	}
	// Scatter: one point per completed invocation (6), legend with counts.
	if n := strings.Count(svgs[0], "<circle cx=") - 3; n != 6 { // 3 legend dots
		t.Errorf("scatter has %d points, want 6", n)
	}
	for _, want := range []string{"ok (4)", "fail (1)", "info (1)", "latency (ms"} {
		if !strings.Contains(svgs[0], want) {
			t.Errorf("scatter lacks %q", want)
		}
	}
	// Throughput: a run under 10 s gets 100 ms buckets; three lines.
	if !strings.Contains(out, "in 100ms buckets") {
		t.Error("throughput caption lacks bucket width 100ms")
	}
	if n := strings.Count(svgs[1], "<polyline"); n != 3 {
		t.Errorf("throughput has %d lines, want 3", n)
	}
	// Witness table: a row for op 11.
	if !regexp.MustCompile(`<tr><td class="n">11</td><td class="n">1</td><td class="ok">ok</td><td>read</td><td class="v">\{&#34;k&#34;:1,&#34;v&#34;:1,&#34;found&#34;:true\}</td><td class="n">2.600000</td>`).MatchString(out) {
		t.Error("witness row for op 11 missing or malformed")
	}
}

func TestReportPassAndDeterministic(t *testing.T) {
	d := rptSynth()
	d.Verdict = check.VerdictPass
	d.Results[0].Valid = true
	d.Results[0].Anomalies = d.Results[0].Anomalies[1:]
	a := rptRender(t, d)
	if !strings.Contains(a, `<div class="verdict pass">PASS</div>`) {
		t.Error("valid run does not show PASS")
	}
	for range 5 {
		// A fresh map each time: iteration order differs, output must not.
		d.Config = map[string]string{"workload": "register", "backend": "mem", "nemesis": "partition,kill-client", "note": `a<b & "c"`}
		if b := rptRender(t, d); b != a {
			t.Fatal("same input rendered to different bytes")
		}
	}
}

func TestReportIncomplete(t *testing.T) {
	d := rptSynth()
	d.Incomplete = true
	d.Verdict = check.VerdictPass
	out := rptRender(t, d)
	if !strings.Contains(out, `<div class="banner">INCOMPLETE RUN — not a pass</div>`) {
		t.Error("incomplete run lacks the banner")
	}
	if !strings.Contains(out, `<div class="verdict fail">INCOMPLETE</div>`) {
		t.Error("incomplete run lacks the INCOMPLETE verdict")
	}
	if strings.Contains(out, ">PASS<") {
		t.Error("incomplete run shows PASS")
	}
	rptCheckSVG(t, out)
}

func TestReportEmpty(t *testing.T) {
	out := rptRender(t, reportData{})
	rptCheckSVG(t, out)
	for _, want := range []string{"jepsen-lite report", "no operations", "no checker results", "no faults injected", "no configuration given"} {
		if !strings.Contains(out, want) {
			t.Errorf("empty report lacks %q", want)
		}
	}
	// Faults but no ops, and a never-healed fault.
	out = rptRender(t, reportData{Faults: []FaultWindow{{Kind: "pause", Start: 5e8, End: -1}}, Elapsed: 2 * time.Second})
	rptCheckSVG(t, out)
	if !strings.Contains(out, "(never healed)") || !strings.Contains(out, ">pause</text>") {
		t.Error("never-healed fault not shown")
	}
}

func TestReportLargeSampled(t *testing.T) {
	// 30000 operations over 60 s from 8 processes: more points than the
	// scatter draws.
	const n = 30000
	h := make([]check.Op, 0, 2*n)
	for i := range n {
		p := i % 8
		t0 := int64(i) * 2 * rptMsNs
		typ := check.OK
		switch {
		case i%97 == 0:
			typ = check.Fail
		case i%211 == 0:
			typ = check.Info
		}
		h = append(h,
			check.Op{Index: len(h), Type: check.Invoke, Process: p, F: "txn", Time: t0},
			check.Op{Index: len(h) + 1, Type: typ, Process: p, F: "txn", Time: t0 + int64(1+i%50)*rptMsNs/10})
	}
	out := rptRender(t, reportData{Verdict: check.VerdictPass, History: h, Elapsed: time.Minute})
	svgs := rptCheckSVG(t, out)
	if pts := strings.Count(svgs[0], "<circle cx=") - 3; pts != rptScatterCap {
		t.Errorf("scatter has %d points, want %d", pts, rptScatterCap)
	}
	if !strings.Contains(out, "Showing 20000 of 30000 points, evenly sampled (every fail and info point kept).") {
		t.Error("sampling is not reported")
	}
	if !strings.Contains(out, "in 1s buckets") {
		t.Error("a 60 s run should use 1 s buckets")
	}
	if !regexp.MustCompile(`<td>txn</td><td class="n">29549</td><td class="n">310</td><td class="n">141</td>`).MatchString(out) {
		t.Error("large-run outcome counts wrong")
	}
}

func TestReportFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "report.html")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeReport(f, rptSynth()); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() < 8<<10 {
		t.Errorf("report is %d bytes, want a non-trivial file", st.Size())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("<!DOCTYPE html>")) || !bytes.HasSuffix(b, []byte("</html>\n")) {
		t.Error("report file is not a whole HTML document")
	}
	if bytes.Contains(b, []byte("<script")) || bytes.Contains(b, []byte("<link")) || bytes.Contains(b, []byte(" src=")) {
		t.Error("report is not self-contained")
	}
}
