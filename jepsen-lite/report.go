package jepsenlite

import (
	"cmp"
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/epochal/epochal/jepsen-lite/check"
)

// FaultWindow is a fault in effect from Start to End (ns since the run
// began); End == Start for an instant fault (a client killed). A window
// whose End is before its Start is taken as never healed: it lasts to the
// end of the run.
type FaultWindow struct {
	Kind   string `json:"kind"`
	Target string `json:"target,omitempty"`
	Start  int64  `json:"start"`
	End    int64  `json:"end"`
}

// reportData is everything the HTML report shows.
type reportData struct {
	Title string
	// Config is shown as a table, sorted by key.
	Config map[string]string
	// Incomplete marks a run that did not finish: shown as a big red
	// banner, whatever Verdict says.
	Incomplete bool
	// CutShort says why a run was cut short (and so not checked), if it
	// was: shown under the banner.
	CutShort string
	// Verdict is shown as the headline ("" shows as FAIL); Inconclusive
	// says why it is UNKNOWN.
	Verdict      check.Verdict
	Inconclusive []string
	// Nemesis is the fault kinds asked for: the faults section counts
	// each, 0 for one never injected.
	Nemesis []string
	History []check.Op
	Faults  []FaultWindow
	Results []check.Result
	Elapsed time.Duration
}

// WriteCheckReport writes the HTML report of a history checked on its
// own, outside a run (epochal jepsen check --workload FILE): the
// operations' latencies and throughput over the history's times, outcome
// counts, and the checker's result, each anomaly with its witness; title
// heads it, config is shown as a table. There are no faults.
func WriteCheckReport(w io.Writer, title string, config map[string]string, h []check.Op, r check.Result) error {
	var why []string
	for _, a := range r.Anomalies {
		if a.Unknown {
			why = append(why, a.Name+": "+a.Explain)
		}
	}
	return writeReport(w, reportData{Title: title, Config: config, Verdict: r.Verdict(), Inconclusive: why,
		History: h, Results: []check.Result{r}})
}

// rptScatterCap is the most points the latency scatter plot draws; more
// are evenly sampled down to it.
var rptScatterCap = 20000

// writeReport writes d as a single self-contained HTML file: inline CSS,
// charts as inline SVG, no scripts. The output is a function of d alone.
func writeReport(w io.Writer, d reportData) error {
	a := rptAnalyze(d.History)
	a.tEnd = max(a.tEnd, d.Elapsed.Nanoseconds())
	faults := rptNormFaults(d.Faults, &a.tEnd)
	a.marks = rptMarks(d.Results)

	var b strings.Builder
	title := d.Title
	if title == "" {
		title = "jepsen-lite report"
	}
	verdict, vclass := "FAIL", "fail"
	switch {
	case d.Incomplete:
		verdict, vclass = "INCOMPLETE", "fail"
	case d.Verdict == check.VerdictPass:
		verdict, vclass = "PASS", "pass"
	case d.Verdict == check.VerdictUnknown:
		verdict, vclass = "UNKNOWN", "unknown"
	}

	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
	fmt.Fprintf(&b, "<title>%s — %s</title>\n", rptEsc(title), verdict)
	b.WriteString(rptCSS)
	b.WriteString("</head>\n<body>\n")

	// 1. Header: title, verdict, config.
	fmt.Fprintf(&b, "<header>\n<h1>%s</h1>\n", rptEsc(title))
	fmt.Fprintf(&b, "<div class=\"verdict %s\">%s</div>\n", vclass, verdict)
	if d.Incomplete {
		b.WriteString("<div class=\"banner\">INCOMPLETE RUN — not a pass</div>\n")
		if d.CutShort != "" {
			fmt.Fprintf(&b, "<p class=\"cutshort\">This run was cut short: %s. What the clients did until then is shown below; the history lacks the rest of the run and its final reads, so it was not checked.</p>\n", rptEsc(d.CutShort))
		}
	}
	if !d.Incomplete && d.Verdict == check.VerdictUnknown {
		b.WriteString("<p class=\"unknown\">UNKNOWN: no anomaly that fails the run was found, but not everything was checked, so this is not a pass:</p>\n<ul class=\"unknown\">\n")
		for _, why := range d.Inconclusive {
			fmt.Fprintf(&b, "<li>%s</li>\n", rptEsc(why))
		}
		b.WriteString("</ul>\n")
	}
	fmt.Fprintf(&b, "<p class=\"meta\">elapsed %s · %d events · %d operations (%d ok, %d fail, %d info) · %d faults</p>\n",
		rptEsc(d.Elapsed.Round(time.Millisecond).String()), len(d.History), a.total[0]+a.total[1]+a.total[2],
		a.total[0], a.total[1], a.total[2], len(d.Faults))
	b.WriteString("</header>\n")

	b.WriteString("<h2>Configuration</h2>\n")
	if len(d.Config) == 0 {
		b.WriteString("<p class=\"note\">no configuration given</p>\n")
	} else {
		keys := make([]string, 0, len(d.Config))
		for k := range d.Config {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteString("<table class=\"kv\">\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "<tr><th>%s</th><td>%s</td></tr>\n", rptEsc(k), rptEsc(d.Config[k]))
		}
		b.WriteString("</table>\n")
	}

	b.WriteString("<h2>Faults</h2>\n")
	if fired := rptFired(d.Nemesis, d.Faults); fired != "" {
		fmt.Fprintf(&b, "<p class=\"fired\">injected per kind: %s</p>\n", rptEsc(fired))
	}
	if len(faults) == 0 {
		b.WriteString("<p class=\"note\">no faults injected</p>\n")
	} else {
		b.WriteString("<table class=\"faults\">\n<tr><th>kind</th><th>target</th><th>start (s)</th><th>end (s)</th><th>duration</th></tr>\n")
		for _, f := range faults {
			dur := "instant"
			if f.End != f.Start {
				dur = time.Duration(f.End - f.Start).Round(time.Millisecond).String()
			}
			if f.unhealed {
				dur += " (never healed)"
			}
			fmt.Fprintf(&b, "<tr><td><span class=\"swatch\" style=\"background:%s\"></span>%s</td><td>%s</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td class=\"n\">%s</td></tr>\n",
				f.color, rptEsc(f.Kind), rptEsc(f.Target), rptSecs(f.Start), rptSecs(f.End), rptEsc(dur))
		}
		b.WriteString("</table>\n")
	}

	// 2. Outcomes by f.
	b.WriteString("<h2>Outcomes</h2>\n")
	if len(a.fs) == 0 {
		b.WriteString("<p class=\"note\">no operations</p>\n")
	} else {
		b.WriteString("<table class=\"outcomes\">\n<tr><th>f</th><th class=\"ok\">ok</th><th class=\"fail\">fail</th><th class=\"info\">info</th><th>total</th><th>ok latency p50 (ms)</th><th>p99 (ms)</th><th>max (ms)</th></tr>\n")
		for _, f := range a.fs {
			c := a.byF[f]
			p50, p99, pmax := rptQuantiles(c.okLats)
			fmt.Fprintf(&b, "<tr><td>%s</td><td class=\"n\">%d</td><td class=\"n\">%d</td><td class=\"n\">%d</td><td class=\"n\">%d</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td class=\"n\">%s</td></tr>\n",
				rptEsc(f), c.n[0], c.n[1], c.n[2], c.n[0]+c.n[1]+c.n[2], p50, p99, pmax)
		}
		fmt.Fprintf(&b, "<tr class=\"total\"><td>all</td><td class=\"n\">%d</td><td class=\"n\">%d</td><td class=\"n\">%d</td><td class=\"n\">%d</td><td></td><td></td><td></td></tr>\n",
			a.total[0], a.total[1], a.total[2], a.total[0]+a.total[1]+a.total[2])
		b.WriteString("</table>\n")
		var notes []string
		if a.unmatched > 0 {
			notes = append(notes, fmt.Sprintf("%d invocations never completed and are counted as info", a.unmatched))
		}
		if a.orphans > 0 {
			notes = append(notes, fmt.Sprintf("%d completions had no matching invocation (no latency known)", a.orphans))
		}
		if len(notes) > 0 {
			fmt.Fprintf(&b, "<p class=\"note\">%s.</p>\n", rptEsc(strings.Join(notes, "; ")))
		}
	}
	b.WriteString("<dl class=\"legend\">\n")
	for _, typ := range []check.Type{check.OK, check.Fail, check.Info} {
		fmt.Fprintf(&b, "<dt class=\"%s\">%s</dt><dd>%s</dd>\n", rptTypeClass(typ), rptEsc(string(typ)), rptEsc(check.OutcomeMeanings[typ]))
	}
	b.WriteString("</dl>\n")

	// 3. Latency scatter.
	b.WriteString("<h2>Latency over time</h2>\n")
	caption := rptLatencyChart(&b, a, faults)
	fmt.Fprintf(&b, "<p class=\"note\">%s</p>\n", rptEsc(caption))

	// 4. Throughput.
	b.WriteString("<h2>Throughput over time</h2>\n")
	caption = rptThroughputChart(&b, a, faults)
	fmt.Fprintf(&b, "<p class=\"note\">%s</p>\n", rptEsc(caption))

	// 5. Checkers.
	b.WriteString("<h2>Checkers</h2>\n")
	switch {
	case len(d.Results) == 0 && d.CutShort != "":
		b.WriteString("<p class=\"note\">not checked: the run was cut short</p>\n")
	case len(d.Results) == 0:
		b.WriteString("<p class=\"note\">no checker results</p>\n")
	}
	for ci, r := range d.Results {
		rptResult(&b, ci, r)
	}
	b.WriteString("</body>\n</html>\n")

	_, err := io.WriteString(w, b.String())
	return err
}

const rptCSS = `<style>
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1000px;color:#222;padding:0 12px}
h1{margin:0 0 8px 0;font-size:24px}
h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px;font-size:19px}
h3{font-size:16px;margin:8px 0}
h4{font-size:14px;margin:14px 0 6px 0}
.verdict{display:inline-block;font-size:28px;font-weight:bold;color:#fff;padding:4px 18px;border-radius:6px}
.verdict.pass{background:#2a9d3a}
.verdict.fail{background:#d62828}
.verdict.unknown{background:#d9730d}
.unknown{color:#a15300}
.banner{margin:12px 0;padding:16px;font-size:26px;font-weight:bold;color:#fff;background:#d62828;text-align:center;border-radius:6px}
.meta,.note{color:#555;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{font-weight:bold}
th.ok,td.ok{color:#1e7b2e}
th.fail,td.fail{color:#c0392b}
th.info,td.info{color:#d9730d}
td.v{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all;max-width:520px}
.swatch{display:inline-block;width:10px;height:10px;margin-right:6px;border:1px solid #999}
.badge{font-size:12px;padding:2px 8px;border-radius:4px;color:#fff;margin-left:8px}
.badge.valid{background:#2a9d3a}
.badge.invalid{background:#d62828}
.badge.allowed{background:#6c757d}
.badge.unknown{background:#d9730d}
.checker{border:1px solid #ddd;border-radius:6px;padding:8px 14px;margin:12px 0}
.anomaly{border-left:4px solid #d62828;padding-left:10px;margin:12px 0}
.anomaly.allowed{border-left-color:#6c757d}
.anomaly.unknown{border-left-color:#d9730d}
pre.explain{white-space:pre-wrap;background:#fafafa;border:1px solid #eee;padding:6px;font-size:12px;margin:4px 0}
ul.diff{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;margin:4px 0}
dl.legend{font-size:13px;display:grid;grid-template-columns:max-content auto;gap:2px 10px;margin:6px 0}
dl.legend dt{font-weight:bold}
dl.legend dd{margin:0;color:#444}
svg{display:block;background:#fff}
</style>
`

// rptEsc escapes text from the data for HTML and SVG (XML) alike.
func rptEsc(s string) string { return html.EscapeString(s) }

// rptSecs formats ns as seconds with ms precision.
func rptSecs(ns int64) string { return strconv.FormatFloat(float64(ns)/1e9, 'f', 3, 64) }

// rptTypeIdx maps a completion type to 0 (ok), 1 (fail), 2 (info).
func rptTypeIdx(t check.Type) int {
	switch t {
	case check.OK:
		return 0
	case check.Fail:
		return 1
	}
	return 2
}

var (
	rptTypeNames  = [3]string{"ok", "fail", "info"}
	rptTypeColors = [3]string{"#2a9d3a", "#d62828", "#f08c00"}
	rptFaultColor = []string{"#5b4fc7", "#1f77b4", "#8c564b", "#d63384", "#17a2b8", "#6c757d", "#7b6d00"}
)

type rptPoint struct {
	t   int64 // completion time, ns
	lat int64 // ns
	typ int   // rptTypeIdx
}

type rptFCounts struct {
	n      [3]int
	okLats []int64
}

type rptAnalysis struct {
	points      []rptPoint
	completions []rptPoint // lat unused
	byF         map[string]*rptFCounts
	fs          []string
	total       [3]int
	unmatched   int // invokes never completed
	orphans     int // completions with no invoke
	tEnd        int64
	marks       []rptMark // failing anomalies, marked on the charts
}

// rptAnalyze pairs invokes with completions by process and counts
// outcomes.
func rptAnalyze(h []check.Op) *rptAnalysis {
	a := &rptAnalysis{byF: map[string]*rptFCounts{}}
	count := func(f string, typ int) *rptFCounts {
		c := a.byF[f]
		if c == nil {
			c = &rptFCounts{}
			a.byF[f] = c
			a.fs = append(a.fs, f)
		}
		c.n[typ]++
		a.total[typ]++
		return c
	}
	pending := map[int]check.Op{}
	for _, o := range h {
		a.tEnd = max(a.tEnd, o.Time)
		switch o.Type {
		case check.Invoke:
			if prev, ok := pending[o.Process]; ok {
				count(prev.F, 2)
				a.unmatched++
			}
			pending[o.Process] = o
		case check.OK, check.Fail, check.Info:
			typ := rptTypeIdx(o.Type)
			f := o.F
			inv, ok := pending[o.Process]
			if ok {
				delete(pending, o.Process)
				if f == "" {
					f = inv.F
				}
			} else {
				a.orphans++
			}
			c := count(f, typ)
			a.completions = append(a.completions, rptPoint{t: o.Time, typ: typ})
			if ok {
				lat := o.Time - inv.Time
				a.points = append(a.points, rptPoint{t: o.Time, lat: lat, typ: typ})
				if typ == 0 {
					c.okLats = append(c.okLats, lat)
				}
			}
		}
	}
	for _, inv := range pending {
		count(inv.F, 2)
		a.unmatched++
	}
	slices.Sort(a.fs)
	return a
}

// rptQuantiles returns p50, p99 and max of lats in ms, formatted.
func rptQuantiles(lats []int64) (string, string, string) {
	if len(lats) == 0 {
		return "", "", ""
	}
	s := slices.Clone(lats)
	slices.Sort(s)
	q := func(p float64) string {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		i = min(max(i, 0), len(s)-1)
		return rptMs(s[i])
	}
	return q(0.50), q(0.99), rptMs(s[len(s)-1])
}

func rptMs(ns int64) string { return strconv.FormatFloat(float64(ns)/1e6, 'f', 2, 64) }

type rptFault struct {
	FaultWindow
	color    string
	unhealed bool
}

// rptNormFaults orders faults by start, colours them by kind, ends the
// unhealed ones at the end of the run, and extends *tEnd to cover them.
func rptNormFaults(in []FaultWindow, tEnd *int64) []rptFault {
	var kinds []string
	for _, f := range in {
		if !slices.Contains(kinds, f.Kind) {
			kinds = append(kinds, f.Kind)
		}
		*tEnd = max(*tEnd, f.Start, f.End)
	}
	slices.Sort(kinds)
	out := make([]rptFault, len(in))
	for i, f := range in {
		k := slices.Index(kinds, f.Kind)
		out[i] = rptFault{FaultWindow: f, color: rptFaultColor[k%len(rptFaultColor)]}
		if f.End < f.Start {
			out[i].End = *tEnd
			out[i].unhealed = true
		}
	}
	slices.SortStableFunc(out, func(x, y rptFault) int {
		if x.Start != y.Start {
			return cmp.Compare(x.Start, y.Start)
		}
		return cmp.Compare(x.End, y.End)
	})
	return out
}

// rptFrame is a chart's geometry.
type rptFrame struct {
	w, h, ml, mr, mt, mb float64
	xMax                 float64 // seconds
}

func rptNewFrame(tEnd int64) rptFrame {
	xMax := float64(tEnd) / 1e9
	if xMax <= 0 {
		xMax = 1
	}
	return rptFrame{w: 960, h: 340, ml: 70, mr: 16, mt: 30, mb: 46, xMax: xMax}
}

func (f rptFrame) left() float64   { return f.ml }
func (f rptFrame) right() float64  { return f.w - f.mr }
func (f rptFrame) top() float64    { return f.mt }
func (f rptFrame) bottom() float64 { return f.h - f.mb }

// x maps seconds to pixels.
func (f rptFrame) x(s float64) float64 {
	s = min(max(s, 0), f.xMax)
	return f.left() + (f.right()-f.left())*s/f.xMax
}

func rptF(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// rptNiceStep returns a step of 1, 2 or 5 times a power of ten that cuts
// span into about n pieces.
func rptNiceStep(span float64, n int) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / float64(n)
	mag := math.Pow10(int(math.Floor(math.Log10(raw))))
	switch norm := raw / mag; {
	case norm <= 1:
		return mag
	case norm <= 2:
		return 2 * mag
	case norm <= 5:
		return 5 * mag
	}
	return 10 * mag
}

// rptTickLabel formats v to the precision step needs.
func rptTickLabel(v, step float64) string {
	dec := 0
	if step < 1 {
		dec = int(math.Ceil(-math.Log10(step) - 1e-9))
	}
	return strconv.FormatFloat(v, 'f', dec, 64)
}

// rptOpen starts an SVG: frame, x axis with ticks and label, and the
// fault shading (under the data).
func rptOpen(b *strings.Builder, f rptFrame, label string, faults []rptFault) {
	fmt.Fprintf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%s\" height=\"%s\" viewBox=\"0 0 %s %s\" font-family=\"sans-serif\" font-size=\"11\" role=\"img\" aria-label=\"%s\">\n",
		rptF(f.w), rptF(f.h), rptF(f.w), rptF(f.h), rptEsc(label))
	fmt.Fprintf(b, "<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"#fcfcfc\" stroke=\"none\"/>\n",
		rptF(f.left()), rptF(f.top()), rptF(f.right()-f.left()), rptF(f.bottom()-f.top()))
	// Fault shading.
	for _, ft := range faults {
		x0, x1 := f.x(float64(ft.Start)/1e9), f.x(float64(ft.End)/1e9)
		tip := fmt.Sprintf("%s %s: %s s – %s s", ft.Kind, ft.Target, rptSecs(ft.Start), rptSecs(ft.End))
		if ft.End == ft.Start {
			fmt.Fprintf(b, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"%s\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\"><title>%s</title></line>\n",
				rptF(x0), rptF(f.top()), rptF(x0), rptF(f.bottom()), ft.color, rptEsc(tip))
		} else {
			fmt.Fprintf(b, "<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"%s\" fill-opacity=\"0.14\"><title>%s</title></rect>\n",
				rptF(x0), rptF(f.top()), rptF(max(x1-x0, 1)), rptF(f.bottom()-f.top()), ft.color, rptEsc(tip))
		}
	}
	// X axis.
	step := rptNiceStep(f.xMax, 10)
	for i := 0; ; i++ {
		v := float64(i) * step
		if v > f.xMax*(1+1e-9) {
			break
		}
		x := f.x(v)
		fmt.Fprintf(b, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"#e6e6e6\"/>\n", rptF(x), rptF(f.top()), rptF(x), rptF(f.bottom()))
		fmt.Fprintf(b, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"#333\"/>\n", rptF(x), rptF(f.bottom()), rptF(x), rptF(f.bottom()+4))
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s</text>\n", rptF(x), rptF(f.bottom()+16), rptTickLabel(v, step))
	}
	fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">time since start (s)</text>\n",
		rptF((f.left()+f.right())/2), rptF(f.h-8))
}

// rptClose draws the axes lines, the fault labels (over the data), the
// legend and ends the SVG.
func rptClose(b *strings.Builder, f rptFrame, ylabel string, faults []rptFault, marks []rptMark, legend [3]string, shown [3]bool) {
	fmt.Fprintf(b, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"#333\"/>\n", rptF(f.left()), rptF(f.bottom()), rptF(f.right()), rptF(f.bottom()))
	fmt.Fprintf(b, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"#333\"/>\n", rptF(f.left()), rptF(f.top()), rptF(f.left()), rptF(f.bottom()))
	cy := (f.top() + f.bottom()) / 2
	fmt.Fprintf(b, "<text x=\"14\" y=\"%s\" text-anchor=\"middle\" transform=\"rotate(-90 14 %s)\">%s</text>\n", rptF(cy), rptF(cy), rptEsc(ylabel))
	for i, ft := range faults {
		x := f.x(float64(ft.Start)/1e9) + 3
		y := f.top() + 12 + 12*float64(i%4)
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" fill=\"%s\" font-size=\"10\" stroke=\"#fff\" stroke-width=\"3\" paint-order=\"stroke\">%s</text>\n",
			rptF(x), rptF(y), ft.color, rptEsc(ft.Kind))
	}
	// Failing anomalies: a red triangle on the top edge at the time of
	// each one's witness, linked to it.
	for _, m := range marks {
		x := f.x(float64(m.t) / 1e9)
		fmt.Fprintf(b, "<a href=\"#%s\" class=\"mark\"><path d=\"M%s %sl-5 -8h10z\" fill=\"#d62828\"><title>%s</title></path></a>\n",
			m.id, rptF(x), rptF(f.top()), rptEsc(m.label))
	}
	// Legend, in the top margin, right-aligned.
	x := f.right() - 3*110
	for i := range 3 {
		if shown[i] {
			fmt.Fprintf(b, "<circle cx=\"%s\" cy=\"14\" r=\"4\" fill=\"%s\"/>\n", rptF(x+5), rptTypeColors[i])
		} else {
			fmt.Fprintf(b, "<line x1=\"%s\" y1=\"14\" x2=\"%s\" y2=\"14\" stroke=\"%s\" stroke-width=\"2\"/>\n", rptF(x), rptF(x+12), rptTypeColors[i])
		}
		fmt.Fprintf(b, "<text x=\"%s\" y=\"18\">%s</text>\n", rptF(x+16), rptEsc(legend[i]))
		x += 110
	}
	b.WriteString("</svg>\n")
}

// rptSample evenly samples pts down to limit; it keeps every fail and
// info point if they take at most half the budget.
func rptSample(pts []rptPoint, limit int) ([]rptPoint, bool) {
	if len(pts) <= limit {
		return pts, false
	}
	even := func(s []rptPoint, k int) []rptPoint {
		if len(s) <= k {
			return s
		}
		out := make([]rptPoint, k)
		for i := range k {
			out[i] = s[int(int64(i)*int64(len(s))/int64(k))]
		}
		return out
	}
	var ok, rare []rptPoint
	for _, p := range pts {
		if p.typ == 0 {
			ok = append(ok, p)
		} else {
			rare = append(rare, p)
		}
	}
	if len(rare) <= limit/2 {
		return append(even(ok, limit-len(rare)), rare...), true
	}
	return even(pts, limit), false
}

// rptLatencyChart draws the latency scatter and returns its caption.
func rptLatencyChart(b *strings.Builder, a *rptAnalysis, faults []rptFault) string {
	f := rptNewFrame(a.tEnd)
	pts, rareKept := rptSample(a.points, rptScatterCap)
	var n [3]int
	for _, p := range a.points {
		n[p.typ]++
	}
	rptOpen(b, f, "latency over time", faults)

	// Log-scale y, in ms, whole decades.
	const floorMs = 1e-3 // 1 µs: latencies at or under it are drawn at it
	lo, hi := 0, 3
	if len(pts) > 0 {
		mn, mx := math.Inf(1), 0.0
		for _, p := range pts {
			v := max(float64(p.lat)/1e6, floorMs)
			mn, mx = min(mn, v), max(mx, v)
		}
		lo, hi = int(math.Floor(math.Log10(mn)+1e-9)), int(math.Ceil(math.Log10(mx)-1e-9))
		if hi <= lo {
			hi = lo + 1
		}
	}
	y := func(ms float64) float64 {
		l := math.Log10(max(ms, floorMs))
		return f.bottom() - (f.bottom()-f.top())*(l-float64(lo))/float64(hi-lo)
	}
	for k := lo; k <= hi; k++ {
		mults := []float64{1}
		if hi-lo <= 2 && k < hi {
			mults = []float64{1, 2, 5}
		}
		for _, m := range mults {
			v := m * math.Pow10(k)
			yy := y(v)
			grid := "#e6e6e6"
			if m != 1 {
				grid = "#f0f0f0"
			}
			fmt.Fprintf(b, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"%s\"/>\n", rptF(f.left()), rptF(yy), rptF(f.right()), rptF(yy), grid)
			fmt.Fprintf(b, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"#333\"/>\n", rptF(f.left()-4), rptF(yy), rptF(f.left()), rptF(yy))
			fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"end\">%s</text>\n", rptF(f.left()-6), rptF(yy+4), strconv.FormatFloat(v, 'f', -1, 64))
		}
	}

	if len(pts) == 0 {
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\" fill=\"#888\" font-size=\"14\">no operations</text>\n",
			rptF((f.left()+f.right())/2), rptF((f.top()+f.bottom())/2))
	}
	for typ := range 3 {
		fmt.Fprintf(b, "<g fill=\"%s\" fill-opacity=\"0.7\">\n", rptTypeColors[typ])
		for _, p := range pts {
			if p.typ != typ {
				continue
			}
			fmt.Fprintf(b, "<circle cx=\"%s\" cy=\"%s\" r=\"2\"/>\n", rptF(f.x(float64(p.t)/1e9)), rptF(y(float64(p.lat)/1e6)))
		}
		b.WriteString("</g>\n")
	}
	var legend [3]string
	for i := range 3 {
		legend[i] = fmt.Sprintf("%s (%d)", rptTypeNames[i], n[i])
	}
	rptClose(b, f, "latency (ms, log scale)", faults, a.marks, legend, [3]bool{true, true, true})

	caption := fmt.Sprintf("Each point is an operation: x its completion, y its latency (completion time minus invocation time); log scale, latencies under %g ms drawn at %g ms.", floorMs, floorMs)
	if len(pts) < len(a.points) {
		caption += fmt.Sprintf(" Showing %d of %d points, evenly sampled", len(pts), len(a.points))
		if rareKept {
			caption += " (every fail and info point kept)"
		}
		caption += "."
	}
	if a.unmatched > 0 {
		caption += fmt.Sprintf(" %d operations never completed and are not plotted.", a.unmatched)
	}
	caption += rptMarksCaption(a.marks)
	return caption
}

// rptThroughputChart draws completions per second and returns its
// caption.
func rptThroughputChart(b *strings.Builder, a *rptAnalysis, faults []rptFault) string {
	f := rptNewFrame(a.tEnd)
	span := float64(a.tEnd) / 1e9
	var width int64 // bucket width, ns
	switch {
	case span >= 10:
		width = int64(time.Second)
	case span >= 1:
		width = int64(100 * time.Millisecond)
	default:
		width = int64(10 * time.Millisecond)
	}
	const maxBuckets = 5000
	if a.tEnd/width >= maxBuckets {
		width = int64(rptNiceStep(span/maxBuckets, 1) * 1e9)
	}
	nb := int(a.tEnd/width) + 1
	if a.tEnd > 0 && a.tEnd%width == 0 {
		nb--
	}
	counts := make([][3]int, nb)
	var n [3]int
	for _, c := range a.completions {
		i := int(max(c.t, 0) / width)
		i = min(i, nb-1)
		counts[i][c.typ]++
		n[c.typ]++
	}
	perSec := 1e9 / float64(width)
	maxRate := 0.0
	for _, c := range counts {
		for _, v := range c {
			maxRate = max(maxRate, float64(v)*perSec)
		}
	}
	step := rptNiceStep(maxRate, 5)
	yMax := math.Ceil(maxRate/step-1e-9) * step
	if maxRate == 0 {
		yMax, step = 1, 0.2
	}
	y := func(v float64) float64 { return f.bottom() - (f.bottom()-f.top())*v/yMax }

	rptOpen(b, f, "throughput over time", faults)
	for i := 0; ; i++ {
		v := float64(i) * step
		if v > yMax*(1+1e-9) {
			break
		}
		yy := y(v)
		fmt.Fprintf(b, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"#e6e6e6\"/>\n", rptF(f.left()), rptF(yy), rptF(f.right()), rptF(yy))
		fmt.Fprintf(b, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"#333\"/>\n", rptF(f.left()-4), rptF(yy), rptF(f.left()), rptF(yy))
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"end\">%s</text>\n", rptF(f.left()-6), rptF(yy+4), rptTickLabel(v, step))
	}
	if len(a.completions) == 0 {
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\" fill=\"#888\" font-size=\"14\">no operations</text>\n",
			rptF((f.left()+f.right())/2), rptF((f.top()+f.bottom())/2))
	}
	for typ := range 3 {
		if n[typ] == 0 {
			continue
		}
		fmt.Fprintf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" stroke-linejoin=\"round\" points=\"", rptTypeColors[typ])
		for i, c := range counts {
			t0 := float64(int64(i)*width) / 1e9
			t1 := float64(int64(i+1)*width) / 1e9
			yy := rptF(y(float64(c[typ]) * perSec))
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(b, "%s,%s %s,%s", rptF(f.x(t0)), yy, rptF(f.x(t1)), yy)
		}
		b.WriteString("\"/>\n")
	}
	var legend [3]string
	for i := range 3 {
		legend[i] = fmt.Sprintf("%s (%d)", rptTypeNames[i], n[i])
	}
	rptClose(b, f, "completions per second", faults, a.marks, legend, [3]bool{})
	return fmt.Sprintf("Completions per second by outcome, in %s buckets (a step per bucket).", time.Duration(width)) + rptMarksCaption(a.marks)
}

// rptFired counts the faults per kind: the kinds asked for first, in
// their order (0 for one never injected: "leader x0 (never injected)"),
// then any other kind injected.
func rptFired(asked []string, faults []FaultWindow) string {
	n := map[string]int{}
	var kinds []string
	for _, k := range asked {
		if _, ok := n[k]; !ok {
			n[k] = 0
			kinds = append(kinds, k)
		}
	}
	for _, f := range faults {
		if _, ok := n[f.Kind]; !ok {
			kinds = append(kinds, f.Kind)
		}
		n[f.Kind]++
	}
	var parts []string
	for _, k := range kinds {
		p := fmt.Sprintf("%s x%d", k, n[k])
		if n[k] == 0 {
			p += " (never injected)"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// rptResult writes one checker's result.
func rptResult(b *strings.Builder, ci int, r check.Result) {
	badge, bclass := "valid", "valid"
	switch r.Verdict() {
	case check.VerdictFail:
		badge, bclass = "INVALID", "invalid"
	case check.VerdictUnknown:
		badge, bclass = "UNKNOWN", "unknown"
	}
	allowed, unknown := 0, 0
	for _, an := range r.Anomalies {
		switch {
		case an.Unknown:
			unknown++
		case an.Allowed:
			allowed++
		}
	}
	fmt.Fprintf(b, "<section class=\"checker\">\n<h3>%s<span class=\"badge %s\">%s</span></h3>\n", rptEsc(r.Checker), bclass, badge)
	fmt.Fprintf(b, "<p>ok %d · fail %d · info %d · %d anomalies (%d allowed, %d not checked)</p>\n", r.OK, r.Fail, r.Info, len(r.Anomalies), allowed, unknown)
	if len(r.Anomalies) == 0 {
		b.WriteString("<p class=\"note\">no anomalies</p>\n</section>\n")
		return
	}
	// Summary by name, in order of first appearance.
	var names []string
	byName := map[string]int{}
	for _, an := range r.Anomalies {
		if _, ok := byName[an.Name]; !ok {
			names = append(names, an.Name)
		}
		byName[an.Name]++
	}
	b.WriteString("<table class=\"summary\">\n<tr><th>anomaly</th><th>count</th><th>what it means</th></tr>\n")
	for _, nm := range names {
		fmt.Fprintf(b, "<tr><td>%s</td><td class=\"n\">%d</td><td>%s</td></tr>\n", rptEsc(nm), byName[nm], rptEsc(check.AnomalyMeaning(nm)))
	}
	b.WriteString("</table>\n")
	shortened := false
	for i, an := range r.Anomalies {
		cls := "anomaly"
		switch {
		case an.Unknown:
			cls += " unknown"
		case an.Allowed:
			cls += " allowed"
		}
		fmt.Fprintf(b, "<div class=\"%s\" id=\"%s\">\n<h4>#%d %s", cls, rptAnomalyID(ci, i), i+1, rptEsc(an.Name))
		switch {
		case an.Unknown:
			b.WriteString("<span class=\"badge unknown\">not checked: the verdict is UNKNOWN</span>")
		case an.Allowed:
			fmt.Fprintf(b, "<span class=\"badge allowed\">%s</span>", rptEsc(check.AllowedWhy(an.Name)))
		}
		b.WriteString("</h4>\n")
		if an.Explain != "" {
			ex := rptShortLists(an.Explain, " ")
			shortened = shortened || ex != an.Explain
			fmt.Fprintf(b, "<pre class=\"explain\">%s</pre>\n", rptEsc(ex))
		}
		if diffs := rptReadDiffs(an.Ops); len(diffs) > 0 {
			b.WriteString("<ul class=\"diff\">\n")
			for _, d := range diffs {
				fmt.Fprintf(b, "<li>%s</li>\n", rptEsc(d))
			}
			b.WriteString("</ul>\n")
		}
		if len(an.Ops) > 0 {
			b.WriteString("<table class=\"ops\">\n<tr><th>index</th><th>process</th><th>type</th><th>f</th><th>value</th><th>time (s)</th><th>error</th></tr>\n")
			for _, o := range an.Ops {
				v := rptShortValue(o.Value)
				shortened = shortened || v != string(o.Value)
				fmt.Fprintf(b, "<tr><td class=\"n\">%d</td><td class=\"n\">%d</td><td class=\"%s\">%s</td><td>%s</td><td class=\"v\">%s</td><td class=\"n\">%s</td><td>%s</td></tr>\n",
					o.Index, o.Process, rptTypeClass(o.Type), rptEsc(string(o.Type)), rptEsc(o.F), rptEsc(v),
					strconv.FormatFloat(float64(o.Time)/1e9, 'f', 6, 64), rptEsc(o.Error))
			}
			b.WriteString("</table>\n")
		}
		b.WriteString("</div>\n")
	}
	if shortened {
		b.WriteString("<p class=\"note\">Long lists are shortened here (the first and last elements, and how many); results.json and history.jsonl hold them whole.</p>\n")
	}
	b.WriteString("</section>\n")
}

func rptTypeClass(t check.Type) string {
	switch t {
	case check.OK:
		return "ok"
	case check.Fail:
		return "fail"
	case check.Info:
		return "info"
	}
	return "inv"
}
