package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"
)

// Machine describes where a run ran.
type Machine struct {
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model,omitempty"`
	GoVersion string `json:"go_version"`
	// LoadAvg is /proc/loadavg before the run, LoadAvgAfter after it.
	LoadAvg      string `json:"load_avg,omitempty"`
	LoadAvgAfter string `json:"load_avg_after,omitempty"`
}

// ThisMachine describes the machine this process runs on.
func ThisMachine() Machine {
	m := Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		_ = f.Close()
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.TrimSpace(string(b))
	}
	return m
}

// Versions returns the module versions that matter to a run: Epochal's
// (and its VCS revision), go-redis, go-zookeeper, anacrolix/stm, from
// the build information.
func Versions() map[string]string {
	v := map[string]string{}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v[bi.Main.Path] = bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision", "vcs.modified", "vcs.time":
			v[s.Key] = s.Value
		}
	}
	for _, d := range bi.Deps {
		switch d.Path {
		case "github.com/redis/go-redis/v9", "github.com/go-zookeeper/zk", "github.com/anacrolix/stm":
			v[d.Path] = d.Version
		}
	}
	return v
}

// Result is one run: what `epochal bench` writes to results.json.
type Result struct {
	Run      string            `json:"run"`
	Started  time.Time         `json:"started"`
	Command  []string          `json:"command"`
	Machine  Machine           `json:"machine"`
	Versions map[string]string `json:"versions"`
	// Servers says what the cells ran against ("started by the run,
	// no persistence", an address, "in process").
	Servers string   `json:"servers"`
	Impls   []string `json:"impls"`
	Workers []int    `json:"workers"`
	// Accounts are the numbers of accounts (counters, locks) per regime.
	Accounts []int   `json:"accounts"`
	Seconds  float64 `json:"seconds_per_cell"`
	Cells    []Cell  `json:"cells"`
	Goals    []Goal  `json:"goals"`
	// Complete is false when the run was cut short (^C): the cells not
	// run are missing.
	Complete bool `json:"complete"`
}

// Failed lists the cells that failed.
func (r *Result) Failed() []Cell {
	var f []Cell
	for _, c := range r.Cells {
		if c.Error != "" {
			f = append(f, c)
		}
	}
	return f
}

// WriteJSON writes r as indented JSON to path.
func (r *Result) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadResult reads a results.json.
func ReadResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// fmtMicros prints a latency in µs, with a decimal below 10.
func fmtMicros(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtCount(c Cell) string {
	if c.CountPerOp == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f %s", *c.CountPerOp, c.Unit)
}

func fmtRecomputes(c Cell) string {
	if c.RecomputesPerOp == nil {
		return "-"
	}
	return fmt.Sprintf("%.3f", *c.RecomputesPerOp)
}

func fmtRatio(c Cell) string {
	if c.Ratio == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx %s", c.Ratio, c.RatioTo)
}

// Table writes the cells as an aligned text table, then the goals.
func (r *Result) Table(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tbackend\taccounts\tworkers\timpl\tops/s\tratio\tretries/op\trecomputes/op\tp50 µs\tp99 µs\tper op\tcheck\t")
	for _, c := range r.Cells {
		check := "ok"
		if c.Error != "" {
			check = "FAILED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%.0f\t%s\t%.3f\t%s\t%s\t%s\t%s\t%s\t\n",
			c.Workload, c.Backend, c.Accounts, c.Workers, c.Impl, c.PerSec, fmtRatio(c), c.RetriesPerOp, fmtRecomputes(c), fmtMicros(c.P50Micros), fmtMicros(c.P99Micros), fmtCount(c), check)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range r.Failed() {
		fmt.Fprintf(w, "FAILED %s %s %d accounts %d workers %s: %s\n", c.Workload, c.Backend, c.Accounts, c.Workers, c.Impl, c.Error)
	}
	if len(r.Goals) > 0 {
		fmt.Fprintln(w, "\ngoals:")
		for _, g := range r.Goals {
			mark := "met    "
			if g.Status != Met {
				mark = "NOT MET"
			}
			fmt.Fprintf(w, "  %s  %s: %s\n", mark, g.Name, g.Measured)
		}
	}
	return nil
}

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"f0":     func(v float64) string { return fmt.Sprintf("%.0f", v) },
	"f3":     func(v float64) string { return fmt.Sprintf("%.3f", v) },
	"us":     fmtMicros,
	"count":  fmtCount,
	"recomp": fmtRecomputes,
	"ratio":  fmtRatio,
	"bar": func(c Cell, cells []Cell) float64 {
		// width in percent of the fastest cell of the same regime
		best := 0.0
		for _, o := range cells {
			if o.Workload == c.Workload && o.Backend == c.Backend && o.Workers == c.Workers && o.Accounts == c.Accounts {
				best = max(best, o.PerSec)
			}
		}
		if best == 0 {
			return 0
		}
		return 100 * c.PerSec / best
	},
}).Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>epochal bench {{.Run}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}
td.l{text-align:left}
.bar{background:#4a7fd0;height:12px}
.epochal .bar{background:#d0742a}
.met{background:#dff5df}.notmet{background:#f9dede}
.fail{background:#f9dede}
</style></head><body>
<h1>epochal bench: {{.Run}}</h1>
<p>{{.Started.Format "2006-01-02 15:04:05 MST"}} &middot; {{.Machine.CPUs}} CPUs ({{.Machine.CPUModel}}), {{.Machine.OS}}/{{.Machine.Arch}}, {{.Machine.GoVersion}}, load before: {{.Machine.LoadAvg}}, after: {{.Machine.LoadAvgAfter}}<br>
servers: {{.Servers}} &middot; {{.Seconds}} s per cell{{if not .Complete}} &middot; <b>cut short: not every cell ran</b>{{end}}</p>
<p><code>{{range .Command}}{{.}} {{end}}</code></p>
<p>ops/s counts committed ops (and declined transfers); the ratio is to the first peer that ran in the same regime; retries are attempts beyond the first per op (recomputes: Epochal's commute values computed again on a stale base, a commit round rather than a retry); p50/p99 are the latency of one op, retries included; "per op" counts round trips (Redis, a hook on each client) or server writes (ZooKeeper, the zxid) per op.</p>
{{if .Goals}}<h2>Goals</h2>
<table><tr><th>goal</th><th>status</th><th>measured</th></tr>
{{range .Goals}}<tr class="{{if eq .Status "met"}}met{{else}}notmet{{end}}"><td class="l">{{.Name}}</td><td class="l">{{.Status}}</td><td class="l">{{.Measured}}</td></tr>
{{end}}</table>{{end}}
<h2>Cells</h2>
<table><tr><th>workload</th><th>backend</th><th>accounts</th><th>workers</th><th>impl</th><th>ops/s</th><th></th><th>ratio</th><th>retries/op</th><th>recomputes/op</th><th>p50 µs</th><th>p99 µs</th><th>per op</th><th>check</th></tr>
{{$cells := .Cells}}{{range .Cells}}<tr class="{{if .Error}}fail{{end}}"><td class="l">{{.Workload}}</td><td class="l">{{.Backend}}</td><td>{{.Accounts}}</td><td>{{.Workers}}</td><td class="l">{{.Impl}}</td><td>{{f0 .PerSec}}</td>
<td class="l" style="width:220px"><div class="{{if or (eq .Impl "epochal") (eq .Impl "epochal-commute")}}epochal{{end}}"><div class="bar" style="width:{{bar . $cells}}%"></div></div></td>
<td>{{ratio .}}</td><td>{{f3 .RetriesPerOp}}</td><td>{{recomp .}}</td><td>{{us .P50Micros}}</td><td>{{us .P99Micros}}</td><td>{{count .}}</td><td class="l">{{if .Error}}FAILED: {{.Error}}{{else}}ok{{end}}</td></tr>
{{end}}</table>
<h2>Implementations</h2><ul>
{{range .Impls}}<li>{{.}}</li>{{end}}</ul>
</body></html>
`))

// WriteHTML writes r as a self-contained HTML page to path.
func (r *Result) WriteHTML(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	view := *r
	view.Impls = nil
	for _, n := range r.Impls {
		if im, ok := Lookup(n); ok {
			view.Impls = append(view.Impls, n+": "+im.Doc)
		}
	}
	if err := reportTmpl.Execute(f, &view); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// Markdown writes the run as Markdown: the machine, the command, a table
// of the cells and the goals, for docs/benchmarks.md.
func (r *Result) Markdown(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "- machine: %d CPUs (%s), %s/%s, %s; /proc/loadavg before: %s, after: %s\n", r.Machine.CPUs, r.Machine.CPUModel, r.Machine.OS, r.Machine.Arch, r.Machine.GoVersion, r.Machine.LoadAvg, r.Machine.LoadAvgAfter)
	fmt.Fprintf(bw, "- servers: %s", r.Servers)
	if v := r.Versions["server"]; v != "" {
		fmt.Fprintf(bw, " (%s)", v)
	}
	rev := r.Versions["vcs.revision"]
	if rev == "" {
		rev = "unknown (the binary carries no VCS stamp)"
	}
	fmt.Fprintf(bw, "\n- tree: %s", rev)
	if r.Versions["vcs.modified"] == "true" {
		fmt.Fprint(bw, " (with uncommitted changes)")
	}
	fmt.Fprintf(bw, "\n- run %s, %g s per cell", r.Run, r.Seconds)
	if !r.Complete {
		fmt.Fprint(bw, ", **cut short**")
	}
	fmt.Fprintf(bw, "\n\n```sh\n%s\n```\n\n", strings.Join(r.Command, " "))
	fmt.Fprintln(bw, "| workload | backend | accounts | workers | impl | ops/s | ratio | retries/op | recomputes/op | p50 µs | p99 µs | per op | check |")
	fmt.Fprintln(bw, "|---|---|---:|---:|---|---:|---|---:|---:|---:|---:|---|---|")
	for _, c := range r.Cells {
		check := "ok"
		if c.Error != "" {
			check = "FAILED: " + c.Error
		}
		fmt.Fprintf(bw, "| %s | %s | %d | %d | %s | %.0f | %s | %.3f | %s | %s | %s | %s | %s |\n",
			c.Workload, c.Backend, c.Accounts, c.Workers, c.Impl, c.PerSec, fmtRatio(c), c.RetriesPerOp, fmtRecomputes(c), fmtMicros(c.P50Micros), fmtMicros(c.P99Micros), fmtCount(c), check)
	}
	if len(r.Goals) > 0 {
		fmt.Fprintln(bw, "\n| goal | measured | met? |\n|---|---|---|")
		for _, g := range r.Goals {
			st := "met"
			if g.Status != Met {
				st = "**not met**"
			}
			fmt.Fprintf(bw, "| %s | %s | %s |\n", g.Name, g.Measured, st)
		}
	}
	return bw.Flush()
}

// Write writes results.json, report.html and results.md (see Markdown)
// into dir (created if needed).
func (r *Result) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := r.WriteJSON(filepath.Join(dir, "results.json")); err != nil {
		return err
	}
	var md strings.Builder
	if err := r.Markdown(&md); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	return r.WriteHTML(filepath.Join(dir, "report.html"))
}
