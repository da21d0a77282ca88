package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	jepsenlite "github.com/epochal/epochal/jepsen-lite"
	"github.com/epochal/epochal/jepsen-lite/check"
)

// fileCheck is `epochal jepsen check --workload W FILE`: a history file
// checked as a history of workload W.
type fileCheck struct {
	workload, path string
	timeout        time.Duration
	realtime       bool
	serializable   bool
	out            string
	keys           []string // the history's keys as written, if not integers
}

// maxFileShown is how many failing anomalies a file check prints in
// full, each with its witness; --out writes them all.
const maxFileShown = 20

func (c *fileCheck) run(ctx context.Context, w, progress io.Writer) error {
	if !slices.Contains(check.FileWorkloads, c.workload) {
		return usagef("--workload %q: want one of %s", c.workload, strings.Join(check.FileWorkloads, ", "))
	}
	if c.workload != "list-append" && (c.realtime || c.serializable) {
		flag := "--realtime"
		if !c.realtime {
			flag = "--serializable"
		}
		return usagef("%s is for the list-append workload (a %s history is checked as its checker does)", flag, c.workload)
	}
	if c.timeout < 0 {
		return usagef("--check-timeout %v: want a positive bound (or 0: 30s)", c.timeout)
	}
	cfg := check.DefaultListAppendConfig()
	cfg.RealTime, cfg.Serializable = c.realtime, c.serializable
	opts := check.Options{ListAppend: &cfg, Timeout: c.timeout}
	f, err := os.Open(c.path)
	if err != nil {
		return usagef("%v", err)
	}
	defer f.Close()
	switch strings.ToLower(filepath.Ext(c.path)) {
	case ".edn":
		opts.Format = "edn"
	case ".jsonl":
		opts.Format = "jsonl"
	}
	h, err := check.ReadHistory(f, c.path, c.workload, opts)
	if err != nil {
		return &usageError{err: fmt.Errorf("jepsen check: %s is not a %s history: %w", c.path, c.workload, err)}
	}
	if h.Format == "jsonl" {
		if err := checkJSONLValues(c.path, c.workload, h.Ops); err != nil {
			return &usageError{err: fmt.Errorf("jepsen check: %s is not a %s history: %w", c.path, c.workload, err)}
		}
	}
	fmt.Fprintf(progress, "jepsen check: checking %s (%d operations; ^C stops)\n", c.path, len(h.Ops))
	res, err := h.CheckContext(ctx, opts)
	if err != nil {
		return &incompleteError{err: fmt.Errorf("jepsen check: INCOMPLETE, interrupted while checking %s (%w): not checked, not a pass", c.path, err)}
	}
	c.keys = h.Keys

	fmt.Fprintf(w, "jepsen check: %s, a %s history (%s)\n", c.path, c.workload, h.Format)
	fmt.Fprintf(w, "  operations %d: ok %d, fail %d, info %d\n", res.OK+res.Fail+res.Info, res.OK, res.Fail, res.Info)
	if c.workload == "list-append" {
		fmt.Fprintf(w, "  model: %s\n", laModel(cfg))
	}
	c.print(w, res)
	if c.out != "" {
		if err := c.write(h, res, cfg); err != nil {
			return err
		}
		fmt.Fprintf(w, "  report: %s\n", filepath.Join(c.out, "report.html"))
	}
	switch res.Verdict() {
	case check.VerdictPass:
		fmt.Fprintln(w, "verdict: PASS")
		return nil
	case check.VerdictFail:
		fmt.Fprintln(w, "verdict: FAIL")
		return fmt.Errorf("jepsen check: anomalies found in %s", c.path)
	}
	fmt.Fprintln(w, "verdict: UNKNOWN (no anomaly found, but not everything was checked: not a pass)")
	return &unknownError{err: fmt.Errorf("jepsen check: inconclusive (UNKNOWN): %s", c.path)}
}

// laModel names the consistency model a list-append configuration checks.
func laModel(cfg check.ListAppendConfig) string {
	var edges []string
	if cfg.Process {
		edges = append(edges, "process order")
	}
	if cfg.RealTime {
		edges = append(edges, "real-time order")
	}
	model := "snapshot isolation: G2-item allowed"
	if cfg.Serializable {
		model = "serializability: G2-item fails"
	}
	return strings.Join(append(edges, model), "; ")
}

// print lists the anomalies: those that fail the check by name, each
// with its explanation and witness (the first maxFileShown); what was
// not checked; and, counted, the allowed ones, with the first's
// explanation.
func (c *fileCheck) print(w io.Writer, r check.Result) {
	fmt.Fprintf(w, "  checker %s: %s\n", r.Checker, checkerVerdict(r))
	allowed := map[string][]check.Anomaly{}
	shown := 0
	for _, a := range r.Anomalies {
		switch {
		case a.Allowed:
			allowed[a.Name] = append(allowed[a.Name], a)
		case shown < maxFileShown:
			shown++
			name := a.Name
			if a.Unknown {
				name += " (not checked)"
			}
			fmt.Fprintf(w, "    %s: %s\n", name, indent(jepsenlite.ShortLists(a.Explain), "      "))
			printWitness(w, a.Ops, c.keys)
		default:
			shown++
		}
	}
	if shown > maxFileShown {
		more := "--out DIR writes them all"
		if c.out != "" {
			more = "report.html lists them all"
		}
		fmt.Fprintf(w, "    ... and %d more (%s)\n", shown-maxFileShown, more)
	}
	names := make([]string, 0, len(allowed))
	for n := range allowed {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		as := allowed[n]
		fmt.Fprintf(w, "    %s: %d found, %s; the first: %s\n", n, len(as), check.AllowedWhy(n), indent(as[0].Explain, "      "))
		printWitness(w, as[0].Ops, c.keys)
	}
}

// printWitness prints a witness's operations as EDN, one a line; a
// transaction's keys as the history wrote them.
func printWitness(w io.Writer, ops []check.Op, keys []string) {
	for _, o := range ops {
		var b bytes.Buffer
		if err := check.WriteEDN(&b, []check.Op{o}); err != nil {
			continue
		}
		line := strings.TrimSpace(b.String())
		var mops []check.Mop
		if o.F == "txn" && keys != nil && o.Decode(&mops) == nil {
			line = fmt.Sprintf("{:index %d, :type :%s, :process %d, :f :txn, :value %s, :time %d}",
				o.Index, o.Type, o.Process, ednTxn(mops, keys), o.Time)
		}
		fmt.Fprintf(w, "      %s\n", jepsenlite.ShortLists(line))
	}
}

// ednTxn renders a transaction with its keys as written.
func ednTxn(mops []check.Mop, keys []string) string {
	key := func(k int) string {
		if k >= 0 && k < len(keys) {
			return keys[k]
		}
		return strconv.Itoa(k)
	}
	parts := make([]string, len(mops))
	for i, m := range mops {
		switch {
		case m.F == "append":
			parts[i] = fmt.Sprintf("[:append %s %d]", key(m.K), m.V)
		case m.R == nil:
			parts[i] = fmt.Sprintf("[:r %s nil]", key(m.K))
		default:
			vs := make([]string, len(m.R))
			for j, v := range m.R {
				vs[j] = strconv.Itoa(v)
			}
			parts[i] = fmt.Sprintf("[:r %s [%s]]", key(m.K), strings.Join(vs, " "))
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func indent(s, by string) string { return strings.ReplaceAll(s, "\n", "\n"+by) }

// write writes report.html and results.json to c.out.
func (c *fileCheck) write(h *check.History, r check.Result, cfg check.ListAppendConfig) error {
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	config := map[string]string{"file": c.path, "workload": c.workload, "format": h.Format}
	if c.workload == "list-append" {
		config["model"] = laModel(cfg)
	}
	if c.workload == "register" && c.timeout > 0 {
		config["check timeout"] = c.timeout.String()
	}
	var b bytes.Buffer
	title := fmt.Sprintf("jepsen check: %s (%s)", filepath.Base(c.path), c.workload)
	if err := jepsenlite.WriteCheckReport(&b, title, config, h.Ops, r); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.out, "report.html"), b.Bytes(), 0o644); err != nil {
		return err
	}
	res, err := json.MarshalIndent(struct {
		File     string         `json:"file"`
		Workload string         `json:"workload"`
		Format   string         `json:"format"`
		Valid    any            `json:"valid"`
		Results  []check.Result `json:"results"`
	}{c.path, c.workload, h.Format, r.Verdict().JepsenValid(), []check.Result{r}}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.out, "results.json"), append(res, '\n'), 0o644)
}

// jsonlValues are the operations of each workload and what their values
// decode to, in the runner's JSON lines.
var jsonlValues = map[string]map[string]func() any{
	"list-append": {"txn": func() any { return &[]check.Mop{} }},
	"register": {"read": func() any { return &check.RegisterValue{} }, "write": func() any { return &check.RegisterValue{} },
		"cas": func() any { return &check.RegisterValue{} }},
	"bank":    {"transfer": func() any { return &check.BankValue{} }, "read": func() any { return &check.BankValue{} }},
	"counter": {"add": func() any { return &check.CounterValue{} }, "read": func() any { return &check.CounterValue{} }},
}

// checkJSONLValues checks that the invokes and ok completions of a JSON
// lines history (ops, one a non-empty line of path, in order) have values
// of the workload's shape, naming the line of the first that does not.
func checkJSONLValues(path, workload string, ops []check.Op) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var lines []int // the line of each op
	for n, l := range strings.Split(string(src), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, n+1)
		}
	}
	fs := jsonlValues[workload]
	for i, o := range ops {
		if o.Type != check.Invoke && o.Type != check.OK {
			continue
		}
		line := i + 1
		if i < len(lines) {
			line = lines[i]
		}
		mk, ok := fs[o.F]
		if !ok {
			if workload == "list-append" {
				continue // not a transaction: the checker leaves it out
			}
			names := make([]string, 0, len(fs))
			for f := range fs {
				names = append(names, strconv.Quote(f))
			}
			sort.Strings(names)
			return fmt.Errorf("%s:%d: want \"f\" %s (the %s workload), got %q", path, line, strings.Join(names, " or "), workload, o.F)
		}
		if len(o.Value) == 0 || string(o.Value) == "null" {
			if o.Type == check.OK && workload == "list-append" {
				return fmt.Errorf("%s:%d: want \"value\", the transaction's micro-ops, got none", path, line)
			}
			continue
		}
		if err := json.Unmarshal(o.Value, mk()); err != nil {
			return fmt.Errorf("%s:%d: want \"value\" a %s %s value (%s), got %s: %v", path, line, workload, o.F, jsonlShape[workload], o.Value, err)
		}
	}
	return nil
}

// jsonlShape says what a workload's values look like in JSON lines.
var jsonlShape = map[string]string{
	"list-append": `micro-ops ["append", k, v] and ["r", k, [v...]]`,
	"register":    `{"k": k, "v": v, "found": bool, "old": v, "new": v}`,
	"bank":        `{"from": a, "to": a, "amount": n} or {"balances": {"a": n}}`,
	"counter":     `{"k": k, "delta": n, "v": n}`,
}
