package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/epochal/epochal/jepsen-lite/check"
)

// runCheck runs `epochal jepsen check ARGS...` in this process and
// returns its output, its error's message and its exit code.
func runCheck(t *testing.T, args ...string) (out, errMsg string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	root := newRootCmd(&o, &e)
	root.SetArgs(append([]string{"jepsen", "check"}, args...))
	err := root.ExecuteContext(context.Background())
	if err != nil {
		errMsg = err.Error()
	}
	return o.String(), errMsg, exitCode(err)
}

// laEDN writes a list-append history in EDN, from transactions in the
// notation of Elle's tests ("ax1" appends 1 to :x, "rx12" reads :x =
// [1 2], "ry" reads :y empty), one event a line, each event "P TYPE TXN":
// TYPE invoke, ok, fail or info completes or begins one transaction of
// process P; txn is an invoke then its ok, fail and info an invoke then
// that completion; final a final read (an invoke and its ok, both marked
// :final).
func laEDN(t *testing.T, events ...string) string {
	t.Helper()
	var b strings.Builder
	i := 0
	emit := func(typ string, p int, txn string, final bool) {
		fmt.Fprintf(&b, "{:index %d, :time %d, :type :%s, :process %d, :f :txn, :value %s", i, 10*(i+1), typ, p, elleTxn(t, txn, typ == "ok"))
		if final {
			b.WriteString(", :final true")
		}
		b.WriteString("}\n")
		i++
	}
	for _, ev := range events {
		var p int
		var typ, txn string
		if _, err := fmt.Sscan(ev, &p, &typ, &txn); err != nil {
			t.Fatalf("event %q: %v", ev, err)
		}
		switch typ {
		case "invoke", "ok":
			emit(typ, p, txn, false)
		case "txn":
			emit("invoke", p, txn, false)
			emit("ok", p, txn, false)
		case "fail", "info":
			emit("invoke", p, txn, false)
			emit(typ, p, txn, false)
		case "final":
			emit("invoke", p, txn, true)
			emit("ok", p, txn, true)
		default:
			t.Fatalf("event %q: type %q", ev, typ)
		}
	}
	return b.String()
}

// elleTxn renders one transaction of Elle's notation as EDN; reads are
// nil unless ok.
func elleTxn(t *testing.T, s string, ok bool) string {
	t.Helper()
	var mops []string
	for i := 0; i < len(s); {
		f, k := s[i], s[i+1]
		i += 2
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		ds := s[i:j]
		i = j
		switch {
		case f == 'a' && len(ds) == 1:
			mops = append(mops, fmt.Sprintf("[:append :%c %s]", k, ds))
		case f == 'r' && ok:
			mops = append(mops, fmt.Sprintf("[:r :%c [%s]]", k, strings.Join(strings.Split(ds, ""), " ")))
		case f == 'r':
			mops = append(mops, fmt.Sprintf("[:r :%c nil]", k))
		default:
			t.Fatalf("transaction %q", s)
		}
	}
	return "[" + strings.Join(mops, " ") + "]"
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestJepsenCheckFileAnomalies: a hand-written list-append history for
// each anomaly, checked through the command line: exit 1, and the
// anomaly printed by name with its witness; write skew is allowed (exit
// 0) unless --serializable; a clean history passes.
func TestJepsenCheckFileAnomalies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		flags  []string
		events []string
		code   int
		want   []string // printed
	}{
		{"G0", nil, []string{"0 txn ax1ay1", "1 txn ax2ay2", "2 txn rx12ry21"}, exitFail, []string{"G0: cycle"}},
		{"G1a", nil, []string{"0 fail ax1", "1 txn rx1"}, exitFail, []string{"G1a: ", "aborted read"}},
		{"G1b", nil, []string{"0 txn ax1ax2", "1 txn rx1"}, exitFail, []string{"G1b: ", "intermediate read", "G-single: "}},
		{"G1c", nil, []string{"0 txn ax1ry1", "1 txn ax2ay1", "2 txn rx12"}, exitFail, []string{"G1c: cycle"}},
		// The fractured read of an append no read shows.
		{"G-single", nil, []string{"0 txn ax1ay5", "1 txn rx1ry"}, exitFail,
			[]string{"G-single: cycle", "no read of key 1 shows 5", "(keys as written: 0 = :x, 1 = :y)", "[:r :x [1]] [:r :y []]"}},
		{"G-nonadjacent", nil, []string{"0 txn ax1", "1 txn rx1ry", "2 txn ay1", "3 txn ry1rx"}, exitFail, []string{"G-nonadjacent: cycle"}},
		{"G2-item allowed", nil, []string{"0 txn rxay1", "1 txn ryax1"}, exitOK,
			[]string{"G2-item: 1 found, allowed under snapshot isolation", "checker list-append: valid", "verdict: PASS"}},
		{"G2-item serializable", []string{"--serializable"}, []string{"0 txn rxay1", "1 txn ryax1"}, exitFail,
			[]string{"G2-item: cycle", "serializability: G2-item fails"}},
		{"lost-update", nil, []string{"0 txn ax0", "1 txn rx0ax1", "2 txn rx0ax2"}, exitFail, []string{"lost-update: ", "G2-item: 1 found, allowed"}},
		{"lost-append", nil, []string{"0 txn ax1ay1", "1 txn ax2", "2 final rx1ry1"}, exitFail, []string{"lost-append: the final read"}},
		{"unread-key", nil, []string{"0 txn ax1", "1 final ry"}, exitFail, []string{"unread-key: key"}},
		{"duplicate-elements", nil, []string{"0 txn ax1", "1 txn rx11"}, exitFail, []string{"duplicate-elements: "}},
		{"garbage", nil, []string{"0 txn ax1", "1 txn rx19"}, exitFail, []string{"garbage: ", "no transaction appended 9"}},
		{"incompatible-order", nil, []string{"0 txn ax1", "1 txn ax2", "2 txn rx12", "3 txn rx21"}, exitFail, []string{"incompatible-order: "}},
		{"internal", nil, []string{"0 txn ax1rx"}, exitFail, []string{"internal: "}},
		{"future-read", nil, []string{"0 txn rx1ax1"}, exitFail, []string{"future-read: "}},
		{"dirty-update", nil, []string{"0 fail ax1", "1 txn ax2", "2 txn rx12"}, exitFail, []string{"dirty-update: ", "G1a: "}},
		{"G0-process", nil, []string{"0 txn ax1", "0 txn ax2", "1 txn rx21"}, exitFail, []string{"G0-process: cycle", ": process"}},
		{"G1c-process", nil, []string{"0 txn ry1", "0 txn ay1"}, exitFail, []string{"G1c-process: cycle"}},
		{"G-single-process", nil, []string{"0 txn ax1", "0 txn rx", "1 txn rx1"}, exitFail, []string{"G-single-process: cycle"}},
		{"G-nonadjacent-process", nil, []string{"0 txn rxrz1", "1 txn ax1", "1 txn rz", "2 txn az1"}, exitFail, []string{"G-nonadjacent-process: cycle"}},
		{"G2-item-process allowed", nil, []string{"0 txn ay1", "0 txn rx", "1 txn ax1ry"}, exitOK, []string{"G2-item-process: 1 found, allowed"}},
		// Real-time order: only with --realtime.
		{"stale read, no real-time order", nil, []string{"0 txn ax1", "1 txn rx", "2 txn rx1"}, exitOK, []string{"verdict: PASS"}},
		{"G-single-realtime", []string{"--realtime"}, []string{"0 txn ax1", "1 txn rx", "2 txn rx1"}, exitFail,
			[]string{"G-single-realtime: cycle", ": realtime", "process order; real-time order"}},
		{"G0-realtime", []string{"--realtime"}, []string{"0 txn ax1", "1 txn ax2", "2 txn rx21"}, exitFail, []string{"G0-realtime: cycle"}},
		{"G1c-realtime", []string{"--realtime"}, []string{"0 txn ry1", "1 txn ay1"}, exitFail, []string{"G1c-realtime: cycle"}},
		{"G-nonadjacent-realtime", []string{"--realtime"},
			[]string{"0 invoke rxrz", "3 invoke az1", "1 txn ax1", "2 txn rz", "3 ok az1", "0 ok rxrz1"}, exitFail, []string{"G-nonadjacent-realtime: cycle"}},
		{"G2-item-realtime allowed", []string{"--realtime"}, []string{"1 invoke ax1ry", "2 txn ay1", "0 txn rx", "1 ok ax1ry"}, exitOK,
			[]string{"G2-item-realtime: 1 found, allowed"}},
		{"clean", []string{"--realtime", "--serializable"},
			[]string{"0 txn ax1", "1 txn rx1ax2", "2 info ax3", "3 fail ay1", "0 txn rx12ry", "1 final rx12ry"}, exitOK,
			[]string{"checker list-append: valid", "operations 6: ok 4, fail 1, info 1", "verdict: PASS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "history.edn", laEDN(t, tc.events...))
			args := append(append([]string{"--workload", "list-append"}, tc.flags...), path)
			out, errMsg, code := runCheck(t, args...)
			t.Log(out)
			if code != tc.code {
				t.Fatalf("exit %d, want %d (%s)\n%s", code, tc.code, errMsg, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Fatalf("output lacks %q:\n%s", w, out)
				}
			}
			if tc.code == exitFail && (!strings.Contains(out, "verdict: FAIL") || !strings.Contains(errMsg, "anomalies found in "+path)) {
				t.Fatalf("exit 1 without saying FAIL: %s\n%s", errMsg, out)
			}
			// Every failing anomaly printed has its witness, as EDN.
			if tc.code == exitFail && !strings.Contains(out, "      {:index ") {
				t.Fatalf("no witness:\n%s", out)
			}
		})
	}
}

// TestJepsenCheckFileOtherWorkloads: register, bank and counter
// histories (EDN, as Jepsen writes them), an anomaly and a clean one
// each; and a register history porcupine cannot decide in time: UNKNOWN,
// exit 5.
func TestJepsenCheckFileOtherWorkloads(t *testing.T) {
	td := filepath.Join("..", "..", "jepsen-lite", "check", "testdata")
	for _, tc := range []struct {
		workload, file string
		code           int
		want           string
	}{
		{"register", "register-stale.edn", exitFail, "nonlinearizable: "},
		{"register", "register-clean.edn", exitOK, "checker linearizable: valid"},
		{"bank", "bank-wrong-total.edn", exitFail, "wrong-total: "},
		{"bank", "bank-clean.edn", exitOK, "checker bank: valid"},
		{"counter", "counter-bad.edn", exitFail, "counter-out-of-range: "},
		{"counter", "counter-clean.edn", exitOK, "checker counter: valid"},
	} {
		out, errMsg, code := runCheck(t, "--workload", tc.workload, filepath.Join(td, tc.file))
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%s %s: exit %d (%s), want %d and %q:\n%s", tc.workload, tc.file, code, errMsg, tc.code, tc.want, out)
		}
	}

	h := hardRegisterHistory()
	var b bytes.Buffer
	if err := check.WriteEDN(&b, h); err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, "register.edn", b.String())
	outDir := filepath.Join(t.TempDir(), "report")
	out, errMsg, code := runCheck(t, "--workload", "register", "--check-timeout", "100ms", "--out", outDir, path)
	if code != exitUnknown || !strings.Contains(out, "verdict: UNKNOWN") || !strings.Contains(out, "linearizability-unknown (not checked): key 0") ||
		!strings.Contains(errMsg, "inconclusive (UNKNOWN)") {
		t.Fatalf("exit %d (%s), want %d:\n%s", code, errMsg, exitUnknown, out)
	}
	res, err := os.ReadFile(filepath.Join(outDir, "results.json"))
	if err != nil || !strings.Contains(string(res), `"valid": "unknown"`) {
		t.Fatalf("results.json: %v\n%s", err, res)
	}
	if html, err := os.ReadFile(filepath.Join(outDir, "report.html")); err != nil || !strings.Contains(string(html), "UNKNOWN") {
		t.Fatalf("report.html: %v", err)
	}
}

// TestJepsenCheckFileReport: --out writes report.html, each anomaly with
// its witness, and results.json.
func TestJepsenCheckFileReport(t *testing.T) {
	path := writeFile(t, "history.edn", laEDN(t, "0 txn ax1ay5", "1 txn rx1ry"))
	outDir := filepath.Join(t.TempDir(), "out")
	out, _, code := runCheck(t, "--workload", "list-append", "--out", outDir, path)
	if code != exitFail || !strings.Contains(out, "report: "+filepath.Join(outDir, "report.html")) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	html, err := os.ReadFile(filepath.Join(outDir, "report.html"))
	if err != nil || !strings.Contains(string(html), "G-single") || !strings.Contains(string(html), "FAIL") ||
		!strings.Contains(string(html), "history.edn") {
		t.Fatalf("report.html: %v\n%.2000s", err, html)
	}
	res, err := os.ReadFile(filepath.Join(outDir, "results.json"))
	if err != nil || !strings.Contains(string(res), `"name": "G-single"`) || !strings.Contains(string(res), `"valid": false`) {
		t.Fatalf("results.json: %v\n%s", err, res)
	}
}

// TestJepsenCheckFileMalformed: a history that cannot be read, or a bad
// command line, is exit 2, the message naming the line and what was
// expected there; nothing passes.
func TestJepsenCheckFileMalformed(t *testing.T) {
	good := laEDN(t, "0 txn ax1")
	for _, tc := range []struct {
		name, file, content string
		args                []string
		want                string
	}{
		{"EDN micro-op", "h.edn", good + "{:type :invoke, :process 1, :f :txn, :value [[:append :x]]}\n", nil,
			"h.edn:3:46: want a micro-op [:append k v] or [:r k list], got vector of 2"},
		{"EDN value appended", "h.edn", good + "{:type :invoke, :process 1, :f :txn, :value [[:append :x :one]]}\n", nil,
			"h.edn:3:58: want the value appended (an integer), got keyword :one"},
		{"EDN syntax", "h.edn", good + "{:type :invoke, :process 1, :f :txn, :value [[:append :x 1]]\n", nil, "h.edn:"},
		{"EDN no type", "h.edn", "{:process 1, :f :txn, :value [[:append :x 1]]}\n", nil, "h.edn:1:1: the operation has no :type"},
		{"JSON lines syntax", "h.jsonl", `{"index":0,"type":"invoke","process":0,"f":"txn","value":[["append",1,1]]}` + "\n" + `{"index":1,"type":` + "\n", nil,
			"history line 2"},
		{"JSON lines micro-op", "h.jsonl", `{"index":0,"type":"invoke","process":0,"f":"txn","value":[["append",1,1]]}` + "\n\n" +
			`{"index":1,"type":"ok","process":0,"f":"txn","value":[["w",1,1]]}` + "\n", nil,
			`h.jsonl:3: want "value" a list-append txn value`},
		{"JSON lines register f", "h.jsonl", `{"index":0,"type":"invoke","process":0,"f":"txn","value":[["append",1,1]]}` + "\n", []string{"--workload", "register"},
			`h.jsonl:1: want "f" "cas" or "read" or "write" (the register workload), got "txn"`},
		{"no such file", "", "", nil, "no such file"},
		{"unknown workload", "h.edn", good, []string{"--workload", "nosuch"}, `--workload "nosuch": want one of list-append, register, bank, counter`},
		{"realtime for bank", "h.edn", good, []string{"--workload", "bank", "--realtime"}, "--realtime is for the list-append workload"},
		{"serializable for counter", "h.edn", good, []string{"--workload", "counter", "--serializable"}, "--serializable is for the list-append workload"},
		{"negative timeout", "h.edn", good, []string{"--check-timeout", "-1s"}, "--check-timeout -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "nosuch.edn")
			if tc.file != "" {
				path = writeFile(t, tc.file, tc.content)
			}
			args := tc.args
			if len(args) == 0 || args[0] != "--workload" {
				args = append([]string{"--workload", "list-append"}, args...)
			}
			out, errMsg, code := runCheck(t, append(args, path)...)
			if code != exitUsage || !strings.Contains(errMsg, tc.want) || strings.Contains(out, "PASS") {
				t.Fatalf("exit %d, error %q; want exit %d and an error saying %q\n%s", code, errMsg, exitUsage, tc.want, out)
			}
		})
	}
	// Flags of a file check given for a run directory.
	for _, f := range [][]string{{"--realtime"}, {"--serializable"}, {"--out", t.TempDir()}} {
		_, errMsg, code := runCheck(t, append(f, t.TempDir())...)
		if code != exitUsage || !strings.Contains(errMsg, f[0]+" is for checking a history file") {
			t.Errorf("%v RUN-DIR: exit %d, %q", f, code, errMsg)
		}
	}
	_, errMsg, code := runCheck(t, "--workload", "list-append")
	if code != exitUsage || !strings.Contains(errMsg, "takes 1 argument(s), FILE; got 0") {
		t.Errorf("no FILE: exit %d, %q", code, errMsg)
	}
}

// TestJepsenCheckFileElleHistories: Elle's published histories
// (jepsen-lite/check/testdata/elle, from Elle's tests) through the
// command line, with the verdicts Elle's tests assert for the model
// that the flags check (process order always; --realtime --serializable:
// strict serializability; Elle's G-single-item is G-single here).
func TestJepsenCheckFileElleHistories(t *testing.T) {
	td := filepath.Join("..", "..", "jepsen-lite", "check", "testdata", "elle")
	for _, tc := range []struct {
		file   string
		flags  []string
		code   int
		want   []string // printed, as "NAME: "
		absent []string
	}{
		// checker-test "G-single" (Elle: G-single-item).
		{"g-single", nil, exitFail, []string{"G-single"}, []string{"G2-item"}},
		// checker-test "G2": G2-item, allowed under snapshot isolation,
		// failing when serializable.
		{"g2", nil, exitOK, nil, []string{"G-single"}},
		{"g2", []string{"--serializable"}, exitFail, []string{"G2-item"}, nil},
		// checker-test "G1b", strict-serializable: G-single-item and G1b.
		{"g1b", []string{"--realtime", "--serializable"}, exitFail, []string{"G-single", "G1b"}, []string{"G-single-realtime"}},
		// checker-test "Strong SI violation": valid serializable, G-single-item-realtime strict.
		{"strong-si-violation", []string{"--serializable"}, exitOK, nil, []string{"G-single"}},
		{"strong-si-violation", []string{"--realtime", "--serializable"}, exitFail, []string{"G-single-realtime"}, nil},
		// checker-test "Strong Session SI violation" and Elle issues 17
		// and 21, strong-session-snapshot-isolation.
		{"strong-session-si-violation", nil, exitFail, []string{"G-single-process"}, nil},
		{"g-nonadjacent-process", nil, exitFail, []string{"G-nonadjacent-process"}, nil},
		{"wr-process", nil, exitFail, []string{"G1c-process"}, nil},
		// unobserved-write-test, serializable: G-single-item and G0.
		{"unobserved-write", []string{"--serializable"}, exitFail, []string{"G-single", "G0"}, nil},
		// lost-update-test, strict-serializable: G2-item and lost-update.
		{"lost-update", []string{"--realtime", "--serializable"}, exitFail, []string{"G2-item", "lost-update"}, []string{"G-single"}},
		{"lost-update-one-txn", []string{"--realtime", "--serializable"}, exitOK, nil, nil},
		// G-nonadjacent-test, strict-serializable: G-nonadjacent-item.
		// (Its second history is valid under snapshot isolation without
		// process order, which the command always adds: its
		// transactions are all process 0's, as in Elle's test; the
		// package's tests check it.)
		{"g-nonadjacent", []string{"--realtime", "--serializable"}, exitFail, []string{"G-nonadjacent"}, []string{"G-single"}},
		// dirty update, future read.
		{"dirty-update-direct", nil, exitFail, []string{"dirty-update", "G1a"}, nil},
		{"future-read", nil, exitFail, []string{"future-read"}, nil},
		// histories/si-without-g-single.edn: G2-item only: valid under
		// snapshot isolation, not repeatable-read.
		{"si-without-g-single", nil, exitOK, nil, []string{"G-single"}},
		{"si-without-g-single", []string{"--serializable"}, exitFail, []string{"G2-item"}, []string{"G-single"}},
		// histories/paper-example.edn: invalid under strict
		// serializability (elle-cli exits 1).
		{"paper-example", []string{"--realtime", "--serializable"}, exitFail, []string{"G-single"}, nil},
	} {
		path := filepath.Join(td, tc.file+".edn")
		out, errMsg, code := runCheck(t, append(append([]string{"--workload", "list-append"}, tc.flags...), path)...)
		if code != tc.code {
			t.Errorf("%s %v: exit %d (%s), want %d:\n%s", tc.file, tc.flags, code, errMsg, tc.code, out)
			continue
		}
		for _, n := range tc.want {
			if !strings.Contains(out, "    "+n+": ") {
				t.Errorf("%s %v: no %s:\n%s", tc.file, tc.flags, n, out)
			}
		}
		for _, n := range tc.absent {
			if strings.Contains(out, "    "+n+": ") {
				t.Errorf("%s %v: %s reported:\n%s", tc.file, tc.flags, n, out)
			}
		}
	}
}

// TestJepsenCheckLongListsShortened: an anomaly between two reads of 300
// elements is printed with its lists shortened to their ends and length,
// not 600 numbers (--out's results.json keeps them whole).
func TestJepsenCheckLongListsShortened(t *testing.T) {
	var b strings.Builder
	i := 0
	op := func(typ string, p int, value string) {
		fmt.Fprintf(&b, "{:index %d, :time %d, :type :%s, :process %d, :f :txn, :value %s}\n", i, 10*(i+1), typ, p, value)
		i++
	}
	for v := 1; v <= 301; v++ {
		op("invoke", 0, fmt.Sprintf("[[:append :x %d]]", v))
		op("ok", 0, fmt.Sprintf("[[:append :x %d]]", v))
	}
	list := func(vs ...int) string {
		var parts []string
		for _, v := range vs {
			parts = append(parts, strconv.Itoa(v))
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	var a, c []int
	for v := 1; v <= 300; v++ {
		a = append(a, v)
		if v < 300 {
			c = append(c, v)
		}
	}
	c = append(c, 301) // neither read is a prefix of the other
	op("invoke", 1, "[[:r :x nil]]")
	op("ok", 1, "[[:r :x "+list(a...)+"]]")
	op("invoke", 2, "[[:r :x nil]]")
	op("ok", 2, "[[:r :x "+list(c...)+"]]")
	out, _, code := runCheck(t, "--workload", "list-append", writeFile(t, "long.edn", b.String()))
	if code != exitFail || !strings.Contains(out, "incompatible-order") || !strings.Contains(out, "(300 elements)") {
		t.Fatalf("exit %d, want %d with incompatible-order and its lists shortened:\n%s", code, exitFail, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 400 {
			t.Fatalf("a line of %d characters:\n%s", len(line), line)
		}
	}
}
