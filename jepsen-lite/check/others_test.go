package check

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// --- bank ---

func bankHistory(final map[int]int) []Op {
	var b ckHist
	b.inv(0, "transfer", BankValue{From: 0, To: 1, Amount: 5})
	b.inv(1, "read", BankValue{})
	b.done(OK, 0, "transfer", BankValue{From: 0, To: 1, Amount: 5})
	b.done(OK, 1, "read", BankValue{Balances: map[int]int{0: 95, 1: 105, 2: 100}})
	b.inv(0, "transfer", BankValue{From: 2, To: 0, Amount: 500})
	b.done(Fail, 0, "transfer", BankValue{From: 2, To: 0, Amount: 500})
	b.inv(2, "transfer", BankValue{From: 1, To: 2, Amount: 3})
	b.done(Info, 2, "transfer", BankValue{From: 1, To: 2, Amount: 3})
	b.inv(1, "read", BankValue{})
	b.done(OK, 1, "read", BankValue{Balances: final})
	b.inv(1, "read", BankValue{})
	b.done(Fail, 1, "read", BankValue{})
	return b.h
}

func TestBankValid(t *testing.T) {
	r := NewBankChecker([]int{0, 1, 2}, 300).Check(bankHistory(map[int]int{0: 95, 1: 102, 2: 103}))
	ckClean(t, r)
	if r.OK != 3 || r.Fail != 2 || r.Info != 1 {
		t.Fatalf("counts %+v", r)
	}
}

func TestBankWrongTotal(t *testing.T) {
	r := NewBankChecker([]int{0, 1, 2}, 300).Check(bankHistory(map[int]int{0: 95, 1: 102, 2: 100}))
	a := ckExpect(t, r, "wrong-total", false)
	if len(a.Ops) != 1 || a.Ops[0].Index != 9 || !strings.Contains(a.Explain, "297") {
		t.Fatalf("%+v", a)
	}
}

func TestBankNegative(t *testing.T) {
	r := NewBankChecker([]int{0, 1, 2}, 300).Check(bankHistory(map[int]int{0: -5, 1: 205, 2: 100}))
	a := ckExpect(t, r, "negative-balance", false)
	if !strings.Contains(a.Explain, "account 0 = -5") || len(r.Anomalies) != 1 {
		t.Fatal(ckDump(r))
	}
}

func TestBankWrongAccounts(t *testing.T) {
	r := NewBankChecker([]int{0, 1, 2}, 300).Check(bankHistory(map[int]int{0: 200, 1: 50}))
	ckExpect(t, r, "wrong-accounts", false)
	ckExpect(t, r, "wrong-total", false)
}

// --- counter ---

func TestCounterValid(t *testing.T) {
	var b ckHist
	b.inv(0, "add", CounterValue{K: 0, Delta: 2}).done(OK, 0, "add", CounterValue{K: 0, Delta: 2})
	b.inv(1, "add", CounterValue{K: 0, Delta: 3}) // concurrent with the reads below
	b.inv(2, "read", CounterValue{K: 0}).done(OK, 2, "read", CounterValue{K: 0, V: 2})
	b.inv(2, "read", CounterValue{K: 0}).done(OK, 2, "read", CounterValue{K: 0, V: 5})
	b.done(Info, 1, "add", CounterValue{K: 0, Delta: 3})
	b.inv(3, "add", CounterValue{K: 1, Delta: 7}).done(Fail, 3, "add", CounterValue{K: 1, Delta: 7})
	b.inv(2, "read", CounterValue{K: 0}).done(OK, 2, "read", CounterValue{K: 0, V: 5}) // the info add applied
	b.inv(2, "read", CounterValue{K: 1}).done(OK, 2, "read", CounterValue{K: 1})
	r := NewCounterChecker().Check(b.h)
	ckClean(t, r)
	if r.OK != 5 || r.Fail != 1 || r.Info != 1 {
		t.Fatalf("counts %+v", r)
	}
}

func TestCounterTooLow(t *testing.T) {
	var b ckHist
	b.inv(0, "add", CounterValue{K: 0, Delta: 2}).done(OK, 0, "add", CounterValue{K: 0, Delta: 2})
	b.inv(2, "read", CounterValue{K: 0}).done(OK, 2, "read", CounterValue{K: 0, V: 1})
	a := ckExpect(t, NewCounterChecker().Check(b.h), "counter-out-of-range", false)
	if a.Ops[0].Index != 3 || !strings.Contains(a.Explain, "[2, 2]") {
		t.Fatalf("%+v", a)
	}
}

func TestCounterTooHigh(t *testing.T) {
	var b ckHist
	b.inv(0, "add", CounterValue{K: 0, Delta: 2}).done(OK, 0, "add", CounterValue{K: 0, Delta: 2})
	b.inv(2, "read", CounterValue{K: 0}).done(OK, 2, "read", CounterValue{K: 0, V: 4})
	b.inv(1, "add", CounterValue{K: 0, Delta: 2}).done(OK, 1, "add", CounterValue{K: 0, Delta: 2}) // after the read
	b.inv(1, "add", CounterValue{K: 1, Delta: 2}).done(OK, 1, "add", CounterValue{K: 1, Delta: 2})
	ckExpect(t, NewCounterChecker().Check(b.h), "counter-out-of-range", false)
}

// TestCounterUnreadKey: with final reads in the history, a counter with
// acknowledged adds that no final read reads is unread-key, failing (the
// final reads cover every counter of the run; a non-final read of it
// does not make up for that). Without any final read there is nothing to
// compare with.
func TestCounterUnreadKey(t *testing.T) {
	var b ckHist
	b.inv(0, "add", CounterValue{K: 0, Delta: 2}).done(OK, 0, "add", CounterValue{K: 0, Delta: 2})
	b.inv(1, "add", CounterValue{K: 1, Delta: 3}).done(OK, 1, "add", CounterValue{K: 1, Delta: 3})
	b.inv(1, "add", CounterValue{K: 2, Delta: 3}).done(Info, 1, "add", CounterValue{K: 2, Delta: 3}) // maybe applied
	b.inv(2, "read", CounterValue{K: 1}).done(OK, 2, "read", CounterValue{K: 1, V: 3})
	ckClean(t, NewCounterChecker().Check(b.h))
	b.inv(9, "read", CounterValue{K: 0}).done(OK, 9, "read", CounterValue{K: 0, V: 2}).final()
	r := NewCounterChecker().Check(b.h)
	a := ckExpect(t, r, "unread-key", false)
	if len(r.Anomalies) != 1 || !strings.Contains(a.Explain, "counter 1") || a.Ops[0].Process != 1 {
		t.Fatalf("%+v", r)
	}
	b.inv(9, "read", CounterValue{K: 1}).done(OK, 9, "read", CounterValue{K: 1, V: 3}).final()
	ckClean(t, NewCounterChecker().Check(b.h))
}

// TestCounterNamed: the counter checker over operations of other names
// (the mixed workload's atom swaps), under another name.
func TestCounterNamed(t *testing.T) {
	c := &CounterChecker{Label: "atom-counter", Add: "swap", Read: "atom-read"}
	var b ckHist
	b.inv(0, "swap", CounterValue{K: 7, Delta: 1}).done(OK, 0, "swap", CounterValue{K: 7, Delta: 1, V: 1})
	b.inv(0, "swap", CounterValue{K: 7, Delta: 1}).done(Info, 0, "swap", CounterValue{K: 7, Delta: 1})
	b.inv(1, "add", CounterValue{K: 7, Delta: 5}).done(OK, 1, "add", CounterValue{K: 7, Delta: 5}) // not its operation
	b.inv(2, "atom-read", CounterValue{K: 7}).done(OK, 2, "atom-read", CounterValue{K: 7, V: 2})
	r := c.Check(b.h)
	ckClean(t, r)
	if r.Checker != "atom-counter" || r.OK != 2 || r.Info != 1 {
		t.Fatalf("%+v", r)
	}
	b.inv(2, "atom-read", CounterValue{K: 7}).done(OK, 2, "atom-read", CounterValue{K: 7, V: 3})
	ckExpect(t, c.Check(b.h), "counter-out-of-range", false)
}

// --- linearizability ---

func regOp(b *ckHist, p int, typ Type, f string, in, out RegisterValue) {
	b.inv(p, f, in)
	b.done(typ, p, f, out)
}

func TestLinearValid(t *testing.T) {
	var b ckHist
	regOp(&b, 0, OK, "read", RegisterValue{K: 0}, RegisterValue{K: 0})
	regOp(&b, 0, OK, "write", RegisterValue{K: 0, V: 1}, RegisterValue{K: 0, V: 1})
	regOp(&b, 1, OK, "cas", RegisterValue{K: 0, Old: 1, New: 2}, RegisterValue{K: 0, Old: 1, New: 2})
	regOp(&b, 1, Fail, "cas", RegisterValue{K: 0, Old: 1, New: 3}, RegisterValue{K: 0, Old: 1, New: 3})
	regOp(&b, 2, OK, "read", RegisterValue{K: 0}, RegisterValue{K: 0, V: 2, Found: true})
	// Concurrent write and read: the read may see either.
	b.inv(0, "write", RegisterValue{K: 1, V: 7})
	b.inv(1, "read", RegisterValue{K: 1})
	b.done(OK, 1, "read", RegisterValue{K: 1, V: 7, Found: true})
	b.done(OK, 0, "write", RegisterValue{K: 1, V: 7})
	r := NewLinearChecker().Check(b.h)
	ckClean(t, r)
}

// An info write that a later read sees is fine; so is one nobody sees.
func TestLinearInfoWrite(t *testing.T) {
	var b ckHist
	regOp(&b, 0, OK, "write", RegisterValue{K: 0, V: 1}, RegisterValue{K: 0, V: 1})
	regOp(&b, 1, Info, "write", RegisterValue{K: 0, V: 2}, RegisterValue{K: 0, V: 2})
	regOp(&b, 2, OK, "read", RegisterValue{K: 0}, RegisterValue{K: 0, V: 1, Found: true})
	regOp(&b, 2, OK, "read", RegisterValue{K: 0}, RegisterValue{K: 0, V: 2, Found: true})
	regOp(&b, 3, Info, "cas", RegisterValue{K: 0, Old: 9, New: 3}, RegisterValue{K: 0, Old: 9, New: 3})
	regOp(&b, 4, Info, "write", RegisterValue{K: 5, V: 2}, RegisterValue{K: 5, V: 2})
	regOp(&b, 2, OK, "read", RegisterValue{K: 5}, RegisterValue{K: 5})
	b.inv(6, "cas", RegisterValue{K: 0, Old: 2, New: 4}) // never completes
	regOp(&b, 2, OK, "read", RegisterValue{K: 0}, RegisterValue{K: 0, V: 4, Found: true})
	r := NewLinearChecker().Check(b.h)
	ckClean(t, r)
	if r.Info != 4 {
		t.Fatalf("info %d", r.Info)
	}
}

// A stale read: a read that begins after a write completed returns the
// value before it.
func TestLinearStaleRead(t *testing.T) {
	var b ckHist
	regOp(&b, 0, OK, "write", RegisterValue{K: 3, V: 1}, RegisterValue{K: 3, V: 1})
	regOp(&b, 1, OK, "read", RegisterValue{K: 3}, RegisterValue{K: 3, V: 1, Found: true})
	regOp(&b, 0, OK, "write", RegisterValue{K: 3, V: 2}, RegisterValue{K: 3, V: 2})
	regOp(&b, 1, OK, "read", RegisterValue{K: 3}, RegisterValue{K: 3, V: 1, Found: true})
	regOp(&b, 1, OK, "read", RegisterValue{K: 4}, RegisterValue{K: 4})
	r, viz := NewLinearChecker().checkVerbose(b.h)
	a := ckExpect(t, r, "nonlinearizable", false)
	if len(r.Anomalies) != 1 || !strings.Contains(a.Explain, "key 3") {
		t.Fatal(ckDump(r))
	}
	// The witness ends with the read that cannot be placed.
	if last := a.Ops[len(a.Ops)-1]; last.Index != 7 {
		t.Fatalf("witness %v", ckOpIndexes(a.Ops))
	}
	path := filepath.Join(t.TempDir(), "lin.html")
	if err := viz.writeHTML(path); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Size() < 1000 {
		t.Fatalf("visualization: %v", err)
	}
}

// A read of absent after a write completed.
func TestLinearReadAbsent(t *testing.T) {
	var b ckHist
	regOp(&b, 0, OK, "write", RegisterValue{K: 0, V: 0}, RegisterValue{K: 0, V: 0})
	regOp(&b, 1, OK, "read", RegisterValue{K: 0}, RegisterValue{K: 0})
	ckExpect(t, NewLinearChecker().Check(b.h), "nonlinearizable", false)
	// With nothing before it, a read of a value nobody wrote.
	var c ckHist
	regOp(&c, 1, OK, "read", RegisterValue{K: 0}, RegisterValue{K: 0, V: 5, Found: true})
	a := ckExpect(t, NewLinearChecker().Check(c.h), "nonlinearizable", false)
	if !strings.Contains(a.Explain, "initial state") {
		t.Fatal(a.Explain)
	}
}

func TestWriteLinearizableHTML(t *testing.T) {
	var b ckHist
	regOp(&b, 0, OK, "write", RegisterValue{K: 0, V: 1}, RegisterValue{K: 0, V: 1})
	path := filepath.Join(t.TempDir(), "ok.html")
	r, err := WriteLinearizableHTML(b.h, LinearConfig{Timeout: time.Second}, path)
	if err != nil || !r.Valid {
		t.Fatal(err, ckDump(r))
	}
}

// --- EDN ---

func TestWriteEDN(t *testing.T) {
	var b ckHist
	b.tInv(0, ckAp(3, 7), ckRd(3))
	b.tDone(OK, 0, ckAp(3, 7), ckRd(3, 1, 7))
	b.inv(1, "read", BankValue{})
	b.done(OK, 1, "read", BankValue{Balances: map[int]int{1: 100, 0: 100}})
	b.inv(2, "write", RegisterValue{K: 1, V: 2})
	b.h = append(b.h, Op{Index: 5, Type: Info, Process: 2, F: "write", Time: 99, Error: "timeout \"x\"\n"})
	b.t = 99
	b.inv(3, "transfer", BankValue{From: 0, To: 1, Amount: 5})
	var w bytes.Buffer
	if err := WriteEDN(&w, b.h); err != nil {
		t.Fatal(err)
	}
	want := `{:index 0, :type :invoke, :process 0, :f :txn, :value [[:append 3 7] [:r 3 nil]], :time 10}
{:index 1, :type :ok, :process 0, :f :txn, :value [[:append 3 7] [:r 3 [1 7]]], :time 20}
{:index 2, :type :invoke, :process 1, :f :read, :value {}, :time 30}
{:index 3, :type :ok, :process 1, :f :read, :value {:balances {0 100, 1 100}}, :time 40}
{:index 4, :type :invoke, :process 2, :f :write, :value {:k 1, :v 2}, :time 50}
{:index 5, :type :info, :process 2, :f :write, :value nil, :time 99, :error "timeout \"x\"\n"}
{:index 6, :type :invoke, :process 3, :f :transfer, :value {:from 0, :to 1, :amount 5}, :time 109}
`
	if w.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", w.String(), want)
	}
}

// ckHardKey adds to b a key porcupine cannot decide in any short time:
// 24 concurrent writes, then a read of a value none of them wrote (the
// search tries every order of the writes before it can say no).
func ckHardKey(b *ckHist, k int) {
	for p := 0; p < 24; p++ {
		b.inv(100*k+p, "write", RegisterValue{K: k, V: p})
	}
	for p := 0; p < 24; p++ {
		b.done(OK, 100*k+p, "write", RegisterValue{K: k, V: p})
	}
	regOp(b, 100*k+99, OK, "read", RegisterValue{K: k}, RegisterValue{K: k, V: 999, Found: true})
}

// A search that runs out of time is no pass: the result is UNKNOWN (not
// valid, not failed), the key named, and "valid" in JSON is "unknown".
func TestLinearTimeout(t *testing.T) {
	var b ckHist
	ckHardKey(&b, 0)
	regOp(&b, 7, OK, "write", RegisterValue{K: 1, V: 1}, RegisterValue{K: 1, V: 1})
	r := (&LinearChecker{Config: LinearConfig{Timeout: 20 * time.Millisecond}}).Check(b.h)
	a, ok := ckFind(r, "linearizability-unknown")
	if !ok || !a.Unknown || a.Allowed || r.Valid || !r.Unknown || r.Verdict() != VerdictUnknown || len(r.Anomalies) != 1 {
		t.Fatal(ckDump(r))
	}
	if !strings.Contains(a.Explain, "key 0 (25 operations)") {
		t.Fatal(a.Explain)
	}
	j, err := json.Marshal(r)
	if err != nil || !strings.Contains(string(j), `"valid":"unknown"`) {
		t.Fatalf("%s %v", j, err)
	}
	var back Result
	if err := json.Unmarshal(j, &back); err != nil || back.Verdict() != VerdictUnknown {
		t.Fatalf("%+v %v", back, err)
	}
}

// Each key is searched on its own: a key that runs out of time does not
// hide another's violation, and is not reported as one (one search over
// every key said "nonlinearizable" for both).
func TestLinearTimeoutPerKey(t *testing.T) {
	var b ckHist
	ckHardKey(&b, 0)
	regOp(&b, 7, OK, "write", RegisterValue{K: 1, V: 1}, RegisterValue{K: 1, V: 1})
	regOp(&b, 8, OK, "read", RegisterValue{K: 1}, RegisterValue{K: 1})
	regOp(&b, 9, OK, "write", RegisterValue{K: 2, V: 1}, RegisterValue{K: 2, V: 1})
	r := (&LinearChecker{Config: LinearConfig{Timeout: 200 * time.Millisecond}}).Check(b.h)
	if r.Verdict() != VerdictFail || len(r.Anomalies) != 2 {
		t.Fatal(ckDump(r))
	}
	u, _ := ckFind(r, "linearizability-unknown")
	n, _ := ckFind(r, "nonlinearizable")
	if !u.Unknown || !strings.Contains(u.Explain, "key 0") || n.Unknown || !strings.Contains(n.Explain, "key 1") {
		t.Fatal(ckDump(r))
	}
}

func TestMalformed(t *testing.T) {
	h := []Op{
		{Index: 0, Type: Invoke, Process: 0, F: "txn", Value: []byte(`[["put",1,2]]`)},
		{Index: 1, Type: OK, Process: 0, F: "txn", Value: []byte(`[["put",1,2]]`)},
	}
	ckExpect(t, NewListAppendChecker().Check(h), "malformed", false)
}

// Registers that start at 0 (atom-register): a first read of 0 and a cas
// from 0 are fine; a read of absent, or of 0 after a write of 1, is not.
func TestLinearInitialValue(t *testing.T) {
	var b ckHist
	regOp(&b, 0, OK, "read", RegisterValue{K: 0}, RegisterValue{K: 0, V: 0, Found: true})
	regOp(&b, 1, OK, "cas", RegisterValue{K: 0, Old: 0, New: 3}, RegisterValue{K: 0, Old: 0, New: 3})
	regOp(&b, 0, OK, "read", RegisterValue{K: 0}, RegisterValue{K: 0, V: 3, Found: true})
	regOp(&b, 2, OK, "read", RegisterValue{K: 1}, RegisterValue{K: 1, V: 0, Found: true})
	ckClean(t, NewLinearCheckerFrom(0).Check(b.h))
	// The same history from absent registers is not linearizable.
	ckExpect(t, NewLinearChecker().Check(b.h), "nonlinearizable", false)

	var c ckHist
	regOp(&c, 1, OK, "read", RegisterValue{K: 0}, RegisterValue{K: 0})
	a := ckExpect(t, NewLinearCheckerFrom(0).Check(c.h), "nonlinearizable", false)
	if !strings.Contains(a.Explain, "initial state (0)") {
		t.Fatal(a.Explain)
	}
	var d ckHist
	regOp(&d, 0, OK, "write", RegisterValue{K: 2, V: 1}, RegisterValue{K: 2, V: 1})
	regOp(&d, 1, OK, "read", RegisterValue{K: 2}, RegisterValue{K: 2, V: 0, Found: true})
	ckExpect(t, NewLinearCheckerFrom(0).Check(d.h), "nonlinearizable", false)
}
