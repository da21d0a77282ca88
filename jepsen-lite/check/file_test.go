package check

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func readEDN(t *testing.T, src, workload string) (*History, error) {
	t.Helper()
	return ReadHistory(strings.NewReader(src), "h.edn", workload, Options{Format: "edn"})
}

func mustFile(t *testing.T, name, workload string, opts Options) Result {
	t.Helper()
	r, err := File(filepath.Join("testdata", name), workload, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(ckDump(r))
	return r
}

func mustRead(t *testing.T, name, workload string) *History {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := ReadHistory(f, name, workload, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func decodeMops(t *testing.T, o Op) []Mop {
	t.Helper()
	var mops []Mop
	if err := o.Decode(&mops); err != nil {
		t.Fatal(err)
	}
	return mops
}

func wantCounts(t *testing.T, r Result, ok, fail, info int) {
	t.Helper()
	if r.OK != ok || r.Fail != fail || r.Info != info {
		t.Fatalf("ok/fail/info = %d/%d/%d, want %d/%d/%d", r.OK, r.Fail, r.Info, ok, fail, info)
	}
}

func TestFileListAppendClean(t *testing.T) {
	r := mustFile(t, "la-clean.edn", "list-append", Options{})
	ckClean(t, r)
	wantCounts(t, r, 4, 1, 1)

	h := mustRead(t, "la-clean.edn", "list-append")
	if h.Format != "edn" || len(h.Ops) != 12 {
		t.Fatalf("format %s, %d ops; want edn, 12 (the nemesis's left out)", h.Format, len(h.Ops))
	}
	if want := []string{":x", `"y"`, "3"}; !slices.Equal(h.Keys, want) {
		t.Fatalf("keys %q, want %q", h.Keys, want)
	}
	for i, o := range h.Ops {
		if o.F != "txn" {
			t.Errorf("op %d: f %q, want txn", o.Index, o.F)
		}
		// Two ops have no :time: every op is timed by its position.
		if o.Time != int64(i+1) {
			t.Errorf("op %d: time %d, want %d", o.Index, o.Time, i+1)
		}
	}
	if o := h.Ops[0]; o.Process != -1 || o.Index != 0 {
		t.Fatalf("first op: process %d, index %d; want -1 (none given), 0", o.Process, o.Index)
	}
	if o := h.Ops[4]; o.Index != 5 {
		t.Fatalf("the op after the nemesis's has index %d, want 5 (the history's)", o.Index)
	}
	// [:r 3 nil]: unknown in the invoke, the empty list in the ok.
	if m := decodeMops(t, h.Ops[3])[1]; m.R != nil {
		t.Fatalf("invoke's read %+v, want unknown (nil)", m)
	}
	if m := decodeMops(t, h.Ops[5])[1]; m.R == nil || len(m.R) != 0 {
		t.Fatalf("ok's read of nil %+v, want the empty list", m)
	}
	if m := decodeMops(t, h.Ops[4])[0]; !slices.Equal(m.R, []int{1}) || m.K != 0 {
		t.Fatalf("read %+v, want key 0 (:x) = [1]", m)
	}
	if o := h.Ops[7]; o.Type != Fail || o.Error != `[:aborted "conflict"]` {
		t.Fatalf("fail: %+v", o)
	}
	if o := h.Ops[9]; o.Type != Info || o.Error != ":timeout" || len(o.Value) != 0 {
		t.Fatalf("info: %+v, want its error and no value (the invoke's)", o)
	}
}

// Elle's convention: a read of nil in an ok completion read the empty
// list, which a process's own earlier append (that another read shows
// first) makes an anomaly; the same nil in an invoke is not read at all.
func TestFileNilReadIsEmptyList(t *testing.T) {
	src := `{:type :invoke, :process 0, :value [[:append :x 1]]}
{:type :ok, :process 0, :value [[:append :x 1]]}
{:type :invoke, :process 0, :value [[:r :x nil]]}
{:type :ok, :process 0, :value [[:r :x %s]]}
{:type :invoke, :process 1, :value [[:r :x nil]]}
{:type :ok, :process 1, :value [[:r :x [1]]]}`
	h, err := readEDN(t, strings.Replace(src, "%s", "nil", 1), "list-append")
	if err != nil {
		t.Fatal(err)
	}
	r := h.Check(Options{})
	a := ckExpect(t, r, "G-single-process", false)
	if !slices.Equal(ckOpIndexes(a.Ops), []int{3, 1}) || !strings.Contains(a.Explain, "(keys as written: 0 = :x)") {
		t.Fatalf("witness %v, explain %q", ckOpIndexes(a.Ops), a.Explain)
	}
	h, err = readEDN(t, strings.Replace(src, "%s", "[1]", 1), "list-append")
	if err != nil {
		t.Fatal(err)
	}
	ckClean(t, h.Check(Options{}))
}

// TestFileInvokeReadWithoutList: Elle writes an invocation's read as
// [:r k], without the list; its completion carries the list.
func TestFileInvokeReadWithoutList(t *testing.T) {
	src := `{:type :invoke, :process 0, :value [[:append :x 1]]}
{:type :ok, :process 0, :value [[:append :x 1]]}
{:type :invoke, :process 1, :value [[:r :x]]}
{:type :ok, :process 1, :value [[:r :x [1]]]}`
	h, err := readEDN(t, src, "list-append")
	if err != nil {
		t.Fatal(err)
	}
	ckClean(t, h.Check(Options{}))
	if _, err := readEDN(t, "{:type :ok, :process 0, :value [[:r :x]]}", "list-append"); err == nil {
		t.Fatal("an ok read without its list was accepted")
	}
}

func TestFileListAppendGSingle(t *testing.T) {
	// A vector of #jepsen.history.Op records, pretty-printed.
	r := mustFile(t, "la-g-single.edn", "list-append", Options{})
	a := ckExpect(t, r, "G-single", false)
	if !slices.Equal(ckOpIndexes(a.Ops), []int{5, 4}) {
		t.Fatalf("witness %v, want ops 5 and 4", ckOpIndexes(a.Ops))
	}
	if !strings.Contains(a.Explain, "(keys as written: 0 = :x, 1 = :y)") {
		t.Fatalf("explain %q names no keys", a.Explain)
	}
	// The read of y misses T2's append, which real time does not
	// excuse with real-time edges either: still G-single.
	r = mustFile(t, "la-g-single.edn", "list-append", Options{ListAppend: &ListAppendConfig{RealTime: true, Serializable: true}})
	ckExpect(t, r, "G-single", false)
}

func TestFileRegister(t *testing.T) {
	r := mustFile(t, "register-clean.edn", "register", Options{})
	ckClean(t, r)
	wantCounts(t, r, 5, 1, 1)

	h := mustRead(t, "register-clean.edn", "register")
	if h.Keys != nil {
		t.Fatalf("integer keys renumbered: %q", h.Keys)
	}
	var got []RegisterValue
	for _, i := range []int{3, 5, 11, 13} {
		var v RegisterValue
		if err := h.Ops[i].Decode(&v); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	want := []RegisterValue{{K: 0}, {K: 0, Old: 3, New: 4}, {K: 0, V: 4, Found: true}, {K: 1, V: 2, Found: true}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("values %+v, want %+v", got, want)
	}

	r = mustFile(t, "register-stale.edn", "register", Options{})
	a := ckExpect(t, r, "nonlinearizable", false)
	if !slices.Contains(ckOpIndexes(a.Ops), 5) {
		t.Fatalf("witness %v lacks the stale read (op 5)", ckOpIndexes(a.Ops))
	}
}

func TestFileBank(t *testing.T) {
	// Inferred: accounts :a and :b, total 100.
	r := mustFile(t, "bank-clean.edn", "bank", Options{})
	ckClean(t, r)
	wantCounts(t, r, 4, 1, 0)
	total := 100
	ckClean(t, mustFile(t, "bank-clean.edn", "bank", Options{Total: &total}))
	total = 90
	r = mustFile(t, "bank-clean.edn", "bank", Options{Total: &total})
	a := ckExpect(t, r, "wrong-total", false)
	if n := len(r.Anomalies); n != 3 {
		t.Fatalf("%d anomalies, want 3 (every read)", n)
	}
	if !strings.Contains(a.Explain, "(accounts as written: 0 = :a, 1 = :b)") {
		t.Fatalf("explain %q names no accounts", a.Explain)
	}

	r = mustFile(t, "bank-wrong-total.edn", "bank", Options{})
	var got []string
	for _, a := range r.Anomalies {
		got = append(got, fmt.Sprintf("%s %v", a.Name, ckOpIndexes(a.Ops)))
	}
	if want := []string{"wrong-accounts [9]", "wrong-total [4]", "wrong-total [9]"}; !slices.Equal(got, want) {
		t.Fatalf("anomalies %q, want %q", got, want)
	}
}

func TestFileCounter(t *testing.T) {
	r := mustFile(t, "counter-clean.edn", "counter", Options{})
	ckClean(t, r)
	wantCounts(t, r, 4, 0, 1)

	r = mustFile(t, "counter-bad.edn", "counter", Options{})
	a := ckExpect(t, r, "counter-out-of-range", false)
	if !slices.Equal(ckOpIndexes(a.Ops), []int{7}) || !strings.Contains(a.Explain, "(keys as written: 1 = :b)") {
		t.Fatalf("witness %v, explain %q", ckOpIndexes(a.Ops), a.Explain)
	}
}

// The runner's history.jsonl is read as it is, told apart by its content.
func TestFileJSONL(t *testing.T) {
	h := writeSkew()
	path := filepath.Join(t.TempDir(), "history")
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, h); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := File(path, "list-append", Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := NewListAppendChecker().Check(h)
	if got := ckNames(r); len(got) == 0 || !slices.Equal(got, ckNames(want)) || r.Verdict() != want.Verdict() {
		t.Fatalf("got %s, want %s", ckDump(r), ckDump(want))
	}
	if _, err := File(path, "list-append", Options{Format: "edn"}); err == nil {
		t.Fatal("JSON read as EDN: no error")
	}
}

// What WriteEDN writes, ReadHistory reads back: the same events, and the
// same verdicts.
func TestEDNRoundTrip(t *testing.T) {
	var reg, bank, ctr ckHist
	regOp(&reg, 0, OK, "write", RegisterValue{K: 0, V: 0}, RegisterValue{K: 0, V: 0})
	regOp(&reg, 1, OK, "read", RegisterValue{K: 0}, RegisterValue{K: 0, V: 0, Found: true})
	regOp(&reg, 0, Fail, "cas", RegisterValue{K: 1, Old: 1, New: 2}, RegisterValue{K: 1, Old: 1, New: 2})
	regOp(&reg, 2, OK, "read", RegisterValue{K: 1}, RegisterValue{K: 1})
	regOp(&reg, 3, OK, "read", RegisterValue{K: 0}, RegisterValue{K: 0, V: 3, Found: true}) // never written
	bank.inv(0, "transfer", BankValue{From: 0, To: 1, Amount: 5}).done(OK, 0, "transfer", BankValue{From: 0, To: 1, Amount: 5})
	bank.inv(1, "read", BankValue{}).done(OK, 1, "read", BankValue{Balances: map[int]int{0: 5, 1: 15}})
	bank.inv(1, "read", BankValue{}).done(OK, 1, "read", BankValue{Balances: map[int]int{0: 5, 1: 14}})
	ctr.inv(0, "add", CounterValue{K: 2, Delta: 3}).done(Info, 0, "add", CounterValue{K: 2, Delta: 3})
	ctr.inv(1, "read", CounterValue{K: 2}).done(OK, 1, "read", CounterValue{K: 2, V: 4})
	la := writeSkew()
	la[len(la)-1].Final, la[len(la)-2].Final = true, true
	for _, c := range []struct {
		workload string
		h        []Op
		anomaly  string
	}{
		{"list-append", la, "G2-item"},
		{"register", reg.h, "nonlinearizable"},
		{"bank", bank.h, "wrong-total"},
		{"counter", ctr.h, "counter-out-of-range"},
	} {
		t.Run(c.workload, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteEDN(&buf, c.h); err != nil {
				t.Fatal(err)
			}
			h, err := ReadHistory(&buf, "h.edn", c.workload, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if h.Format != "edn" || len(h.Ops) != len(c.h) || h.Keys != nil {
				t.Fatalf("format %s, %d ops, keys %q; want edn, %d, none", h.Format, len(h.Ops), h.Keys, len(c.h))
			}
			for i, o := range h.Ops {
				w := c.h[i]
				if o.Index != w.Index || o.Type != w.Type || o.Process != w.Process || o.F != w.F || o.Time != w.Time || o.Final != w.Final || o.Error != w.Error {
					t.Fatalf("op %d: read %+v, wrote %+v", i, o, w)
				}
				if w.Type == Fail || w.Type == Info {
					continue // read as its invoke's
				}
				var got, want any
				if err := json.Unmarshal(o.Value, &got); err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(w.Value, &want); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("op %d: value %s, wrote %s", i, o.Value, w.Value)
				}
			}
			r := h.Check(Options{})
			var want Result
			switch c.workload {
			case "list-append":
				want = NewListAppendChecker().Check(c.h)
			case "register":
				want = NewLinearChecker().Check(c.h)
			case "bank":
				want = NewBankChecker([]int{0, 1}, 20).Check(c.h)
			case "counter":
				want = NewCounterChecker().Check(c.h)
			}
			if _, ok := ckFind(r, c.anomaly); !ok || !slices.Equal(ckNames(r), ckNames(want)) || r.Verdict() != want.Verdict() {
				t.Fatalf("read back: %s\nas written: %s\nwant %s", ckDump(r), ckDump(want), c.anomaly)
			}
		})
	}
}

func TestReadHistoryMalformed(t *testing.T) {
	la := "list-append"
	for _, c := range []struct {
		name, workload, src, want string
	}{
		{"type", la, "{:type :invoke, :value [[:append :x 1]]}\n{:type :okay, :value [[:append :x 1]]}",
			"h.edn:2:8: want :type :invoke, :ok, :fail or :info, got keyword :okay"},
		{"no type", la, "  {:f :txn, :value []}", "h.edn:1:3: the operation has no :type"},
		{"unclosed vector", la, "{:type :invoke, :value [[:append :x 1]}",
			`h.edn:1:39: unexpected '}': the vector opened at 1:24 wants ']'`},
		{"unclosed map", la, "{:type :invoke,\n :value [[:append :x 1]]\n", "h.edn:3:1: unexpected end of input: the map opened at 1:1 is not closed"},
		{"micro-op arity", la, "{:type :invoke, :value [[:append :x 1] [:append :x]]}",
			"h.edn:1:40: want a micro-op [:append k v] or [:r k list], got vector of 2"},
		{"append value", la, "{:type :invoke, :value [[:append :x :one]]}",
			"h.edn:1:37: want the value appended (an integer), got keyword :one"},
		{"read element", la, "{:type :invoke, :value [[:r :x nil]]}\n{:type :ok, :value [[:r :x [1 \"2\"]]]}",
			`h.edn:2:31: want a list element (an integer), got string "2"`},
		{"read list", la, "{:type :ok, :value [[:r :x 3]]}", "h.edn:1:28: want the list read (a vector, or nil), got integer 3"},
		{"micro-op f", la, "{:type :invoke, :value [[:write :x 1]]}", "h.edn:1:26: want a micro-op's f, :append or :r, got keyword :write"},
		{"key", la, "{:type :invoke, :value [[:append [1 2] 3]]}", "h.edn:1:34: want a key (a scalar: integer, keyword, string, symbol...), got vector of 2"},
		{"txn", la, "{:type :invoke, :value {:append 1}}", "h.edn:1:24: want :value, a transaction: a vector of micro-ops [:append k v] or [:r k list], got map of 1"},
		{"txn nil", la, "{:type :invoke, :f :txn}", "h.edn:1:1: want :value, a transaction"},
		{"top level", la, "; a comment\n42", "h.edn:2:1: want an operation map {:type ..., :f ..., :value ...} or a vector of them, got integer 42"},
		{"in vector", la, "[{:type :invoke, :value []},\n 3]", "h.edn:2:2: want an operation map {:type ..., :f ..., :value ...} in the vector of operations, got integer 3"},
		{"odd map", la, "{:type :invoke :value}", "h.edn:1:16: the map opened at 1:1 has a key (keyword :value) without a value"},
		{"string", la, "{:type :invoke, :error \"abc", "h.edn:1:24: unexpected end of input: the string is not closed"},
		{"number", la, "{:type :invoke, :time 12x}", `h.edn:1:23: malformed number "12x"`},
		{"time", la, "{:type :invoke, :time 1.5, :value []}", "h.edn:1:23: want :time (an integer, nanoseconds), got float 1.5"},
		{"index", la, "{:type :invoke, :index :a, :value []}", "h.edn:1:24: want :index (an integer), got keyword :a"},
		{"dispatch", la, "#?(:clj 1)", "h.edn:1:1: unknown dispatch #?"},
		{"closer", la, "]", "h.edn:1:1: unexpected ']': want a value"},
		{"empty", la, "; nothing\n", "h.edn: no client operations"},
		{"only nemesis", la, "{:type :info, :process :nemesis, :f :start}", "h.edn: no client operations"},
		{"register f", "register", "{:type :invoke, :f :delete, :value 3}", "h.edn:1:20: want :f :read, :write or :cas (the register workload), got keyword :delete"},
		{"register no f", "register", "{:type :invoke, :value 3}", "h.edn:1:1: the operation has no :f: want :f :read, :write or :cas"},
		{"register write", "register", "{:type :invoke, :f :write, :value [0 nil]}", "h.edn:1:38: want the value written (v or [k v]) (an integer), got nil"},
		{"cas", "register", "{:type :invoke, :f :cas, :value [1 2 3]}", "h.edn:1:33: want a cas's :value: [old new] or [k [old new]], got vector of 3"},
		{"read", "register", "{:type :invoke, :f :read}\n{:type :ok, :f :read, :value \"x\"}", `h.edn:2:30: want a read's :value: nil, v or [k v], got string "x"`},
		{"transfer", "bank", "{:type :invoke, :f :transfer, :value {:from 0, :to 1}}", "h.edn:1:38: want a transfer's :value {:from k, :to k, :amount n}: no :amount"},
		{"balances", "bank", "{:type :invoke, :f :read}\n{:type :ok, :f :read, :value [1 2]}", "h.edn:2:30: want a read's :value, the balances {account balance, ...}, got vector of 2"},
		{"balance", "bank", "{:type :invoke, :f :read}\n{:type :ok, :f :read, :value {0 1.5}}", "h.edn:2:33: want a balance (an integer), got float 1.5"},
		{"add", "counter", "{:type :invoke, :f :add}", "h.edn:1:1: want the amount added (an integer), got nil"},
		{"unknown workload", "set", "{:type :invoke}", `unknown workload "set"`},
		{"jsonl", la, "{\"index\":0,\"type\":\"invoke\",\"f\":\"txn\",\"value\":[]}\n{\"index\":1,\"type\":", "h.edn: check: history line 2:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, err := ReadHistory(strings.NewReader(c.src), "h.edn", c.workload, Options{})
			if err == nil {
				t.Fatalf("no error; read %+v", h.Ops)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want %q", err, c.want)
			}
		})
	}
}

// The reader takes what EDN allows around the values it reads.
func TestReadHistoryEDNSyntax(t *testing.T) {
	src := `#_{:type :ok} ; discarded, then a comment
{:type :invoke,, :f :txn :process 0 :value [[:append x 1N] [:append "k" -2]] :node "n1" :extra #{1 2} :when #inst "2024-01-01T00:00:00Z"}
{:type :ok :f :txn :process 0 :value ([:append x 1] (:append "k" -2)) :error nil :debug {:a [1 \c] :b 1/2 :c 1e3}}
`
	h, err := readEDN(t, src, "list-append")
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Ops) != 2 || !slices.Equal(h.Keys, []string{"x", `"k"`}) {
		t.Fatalf("%d ops, keys %q", len(h.Ops), h.Keys)
	}
	want := []Mop{{F: "append", K: 0, V: 1}, {F: "append", K: 1, V: -2}}
	if got := decodeMops(t, h.Ops[1]); !reflect.DeepEqual(got, want) {
		t.Fatalf("mops %+v, want %+v", got, want)
	}
	ckClean(t, h.Check(Options{}))
}

func FuzzReadHistory(f *testing.F) {
	for _, name := range []string{"la-clean.edn", "la-g-single.edn", "register-clean.edn", "bank-wrong-total.edn", "counter-bad.edn"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{:type :invoke :value [[:r :x nil]] :process 0} {:type :ok :value [[:r :x nil]] :process 0}`))
	f.Add([]byte(`"\u00e9" \newline #{} () #tag [1] 9999999999999999999999`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, w := range FileWorkloads {
			h, err := ReadHistory(bytes.NewReader(b), "f.edn", w, Options{Format: "edn"})
			if err != nil {
				if !strings.HasPrefix(err.Error(), "f.edn") {
					t.Fatalf("error %q does not name the file", err)
				}
				continue
			}
			if len(h.Ops) > 50 {
				continue // checking large histories is not what this tests
			}
			h.Check(Options{Timeout: time.Second})
		}
	})
}

// The history's order is its real-time order: times that do not increase
// with it are not kept, the positions time the events.
func TestReadHistoryTimesFollowOrder(t *testing.T) {
	src := `{:type :invoke, :f :write, :value 1, :process 0, :time 10}
{:type :ok, :f :write, :value 1, :process 0, :time 20}
{:type :invoke, :f :read, :process 1, :time 20}
{:type :ok, :f :read, :value nil, :process 1, :time 30}`
	h, err := readEDN(t, src, "register")
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range h.Ops {
		if o.Time != int64(i+1) {
			t.Fatalf("op %d: time %d, want %d (its position)", i, o.Time, i+1)
		}
	}
	// The read began after the write completed, so it must see it.
	ckExpect(t, h.Check(Options{}), "nonlinearizable", false)

	h, err = readEDN(t, strings.Replace(src, ":time 20}\n{:type :ok, :f :read", ":time 25}\n{:type :ok, :f :read", 1), "register")
	if err != nil {
		t.Fatal(err)
	}
	if got := []int64{h.Ops[0].Time, h.Ops[1].Time, h.Ops[2].Time, h.Ops[3].Time}; !slices.Equal(got, []int64{10, 20, 25, 30}) {
		t.Fatalf("increasing times %v not kept", got)
	}
}
