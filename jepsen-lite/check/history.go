package check

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// Type is an operation's event type, as in Jepsen: an invoke is followed,
// for the same process, by ok (it happened), fail (it certainly did not)
// or info (unknown: it may have happened, now or later).
type Type string

// Event types.
const (
	Invoke Type = "invoke"
	OK     Type = "ok"
	Fail   Type = "fail"
	Info   Type = "info"
)

// Op is one event of a history. An operation is an invoke and its
// completion, matched by Process: a process runs one operation at a time,
// and a process whose operation ended in info never runs another (its
// client may still apply it), so a worker takes a fresh process id then.
type Op struct {
	Index   int  `json:"index"`
	Type    Type `json:"type"`
	Process int  `json:"process"`
	// F is the operation: "txn" (list-append), "transfer" and "read"
	// (bank), "read", "write" and "cas" (register), "add" and "read"
	// (counter), "acquire", "write", "release" and "read" (lock).
	F string `json:"f"`
	// Value is the operation's argument in an invoke and its result in a
	// completion, shaped per workload (see Mop, RegisterValue,
	// BankValue, CounterValue, LockValue).
	Value json.RawMessage `json:"value,omitempty"`
	// Time is nanoseconds since the run began, on a clock every process
	// of the run shares (CLOCK_MONOTONIC of the machine).
	Time  int64  `json:"time"`
	Error string `json:"error,omitempty"`
	// Final marks the final reads: made after every fault healed and
	// every client stopped, by a process that reads linearizably (every
	// commit acknowledged before is visible to it), retried until ok.
	Final bool `json:"final,omitempty"`
}

// Mop is a micro-operation of a list-append transaction, written as Elle
// writes it: ["append", k, v] or ["r", k, [values...]] (the read list is
// null in an invoke; in an ok completion, null is the empty list, as
// Elle reads it; in a fail or info completion, reads are unknown).
type Mop struct {
	F string // "append" or "r"
	K int
	V int   // the appended value
	R []int // the list read; nil: not known
}

// MarshalJSON writes the Elle form.
func (m Mop) MarshalJSON() ([]byte, error) {
	switch m.F {
	case "append":
		return json.Marshal([]any{m.F, m.K, m.V})
	case "r":
		if m.R == nil {
			return json.Marshal([]any{m.F, m.K, nil})
		}
		return json.Marshal([]any{m.F, m.K, m.R})
	}
	return nil, fmt.Errorf("check: micro-op %q", m.F)
}

// UnmarshalJSON reads the Elle form.
func (m *Mop) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if len(raw) != 3 {
		return fmt.Errorf("check: micro-op %s: want 3 elements", b)
	}
	if err := json.Unmarshal(raw[0], &m.F); err != nil {
		return err
	}
	if err := json.Unmarshal(raw[1], &m.K); err != nil {
		return err
	}
	switch m.F {
	case "append":
		return json.Unmarshal(raw[2], &m.V)
	case "r":
		m.R = nil
		if string(raw[2]) == "null" {
			return nil
		}
		m.R = []int{}
		return json.Unmarshal(raw[2], &m.R)
	}
	return fmt.Errorf("check: micro-op %q", m.F)
}

// RegisterValue is a register operation's value: read (V the value read,
// Found false if the register held nothing yet), write (V), cas (Old to
// New).
type RegisterValue struct {
	K     int  `json:"k"`
	V     int  `json:"v,omitempty"`
	Found bool `json:"found,omitempty"`
	Old   int  `json:"old,omitempty"`
	New   int  `json:"new,omitempty"`
}

// BankValue is a bank operation's value: transfer (From, To, Amount) or
// read (Balances, by account, in one snapshot).
type BankValue struct {
	From     int         `json:"from,omitempty"`
	To       int         `json:"to,omitempty"`
	Amount   int         `json:"amount,omitempty"`
	Balances map[int]int `json:"balances,omitempty"`
}

// CounterValue is a counter operation's value: add (K, Delta) or read (K,
// V).
type CounterValue struct {
	K     int `json:"k"`
	Delta int `json:"delta,omitempty"`
	V     int `json:"v,omitempty"`
}

// WatchValue is a watch workload's watcher event: "deliver" (a watch
// call: K, Old, New), "gap" (a gap notice: K and the points From, To;
// the missed changes are after From, up to and including To),
// "watch-start" (K, V: the counter read right after AddWatch returned,
// at least the value the watcher started from) and "watch-end" (K, V: the
// counter read after every process stopped writing; Last: the last value
// delivered, if Delivered).
type WatchValue struct {
	K         int    `json:"k"`
	Old       int    `json:"old,omitempty"`
	New       int    `json:"new,omitempty"`
	From      uint64 `json:"from,omitempty"`
	To        uint64 `json:"to,omitempty"`
	V         int    `json:"v,omitempty"`
	Last      int    `json:"last,omitempty"`
	Delivered bool   `json:"delivered,omitempty"`
}

// LockValue is a lock workload operation's value. Every operation names a
// lock K; an acquire, a write and a release also name the Holding (one
// successful acquire and the operations under it, chosen by the client
// when it invokes the acquire).
//
//   - acquire: completion Token, the holding's fencing token.
//   - write (a fenced write under the lock, to the lock's fence, a
//     refs.Atom[uint64] that keeps the largest token it accepted): Token
//     the holding's token; completion Seen, the fence's value the write
//     found. ok: accepted (the fence now holds at least Token); fail:
//     refused, the fence held a newer token (Seen > Token); info: unknown.
//     Stale marks a write sent although the holder had seen Lost (on
//     purpose, to see the fence refuse it).
//   - release: completion Lost, the holding ended because its lease was
//     lost (Unlock returned ErrLost) rather than by the release.
//   - read (the final reads): completion Seen, the fence's value.
//
// HeldAt, in a completion of a write or a release, is the latest history
// time at which the client had certainly not yet seen Lost (it took the
// time, then found Lost still open): the holding lasted at least until
// then.
type LockValue struct {
	K       int    `json:"k"`
	Holding string `json:"holding,omitempty"`
	Token   uint64 `json:"token,omitempty"`
	Seen    uint64 `json:"seen,omitempty"`
	Lost    bool   `json:"lost,omitempty"`
	Stale   bool   `json:"stale,omitempty"`
	HeldAt  int64  `json:"held-at,omitempty"`
}

// Decode reads an op's value into v.
func (o Op) Decode(v any) error {
	if len(o.Value) == 0 {
		return fmt.Errorf("check: op %d has no value", o.Index)
	}
	if err := json.Unmarshal(o.Value, v); err != nil {
		return fmt.Errorf("check: op %d value %s: %w", o.Index, o.Value, err)
	}
	return nil
}

// WithValue returns o with v as its value.
func (o Op) WithValue(v any) Op {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("check: encode op value %T: %v", v, err))
	}
	o.Value = b
	return o
}

// WriteJSONL writes a history as JSON lines.
func WriteJSONL(w io.Writer, h []Op) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, o := range h {
		if err := enc.Encode(o); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// ReadJSONL reads a history written by WriteJSONL (or a worker).
func ReadJSONL(r io.Reader) ([]Op, error) {
	var h []Op
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var o Op
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			return nil, fmt.Errorf("check: history line %d: %w", n, err)
		}
		h = append(h, o)
	}
	return h, sc.Err()
}

// ReadJSONLFile reads a history file.
func ReadJSONLFile(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadJSONL(f)
}

// Anomaly is one thing a checker found.
type Anomaly struct {
	// Name is the anomaly's name: Adya's (G0, G1a, G1b, G1c, G-single,
	// G-nonadjacent, G2-item), or lost-update, duplicate-elements,
	// garbage, incompatible-order, future-read, dirty-update,
	// nonlinearizable, wrong-total, negative-balance,
	// counter-out-of-range, ...
	Name string `json:"name"`
	// Allowed marks an anomaly snapshot isolation allows (G2-item: write
	// skew): reported, not a failure.
	Allowed bool `json:"allowed,omitempty"`
	// Unknown marks a part of the history the checker could not decide
	// (linearizability-unknown: a search that ran out of time;
	// watch-unchecked: nothing to check against): not a failure, and not
	// a pass either. A result with one, and no failing anomaly, is
	// UNKNOWN.
	Unknown bool   `json:"unknown,omitempty"`
	Explain string `json:"explain"`
	// Ops is the witness: for a cycle, its transactions in cycle order
	// (completions), each edge explained in Explain.
	Ops []Op `json:"ops,omitempty"`
}

// AllowedWhy says why an allowed anomaly does not fail a run.
func AllowedWhy(name string) string {
	if name == "announced-gap" {
		return "allowed: the watcher was told (a gap notice)"
	}
	return "allowed under snapshot isolation"
}

// Verdict is the outcome of a check, or of a run.
type Verdict string

// The verdicts: PASS (everything checked, no failing anomaly), FAIL (an
// anomaly that is not allowed, or a run that did not finish), UNKNOWN
// (no failing anomaly, but something was not checked: the history, or
// part of it, was neither found valid nor invalid, or a fault asked for
// was never injected).
const (
	VerdictPass    Verdict = "PASS"
	VerdictFail    Verdict = "FAIL"
	VerdictUnknown Verdict = "UNKNOWN"
)

// Result is a checker's verdict.
type Result struct {
	Checker string `json:"checker"`
	// Valid: everything was checked and no anomaly is a failure (every
	// one is Allowed). False when the check failed, and when it was
	// inconclusive (Unknown).
	Valid bool `json:"-"`
	// Unknown: no failing anomaly, but an Unknown one: the check was
	// inconclusive. In JSON, "valid" is then "unknown".
	Unknown   bool      `json:"-"`
	Anomalies []Anomaly `json:"anomalies,omitempty"`
	// Counts of operations by completion type.
	OK, Fail, Info int
}

// Verdict sums r up: PASS, FAIL or UNKNOWN.
func (r Result) Verdict() Verdict {
	switch {
	case r.Valid:
		return VerdictPass
	case r.Unknown:
		return VerdictUnknown
	}
	return VerdictFail
}

// resultJSON is Result's JSON form: "valid" is true, false or "unknown"
// (as Jepsen writes :valid?).
type resultJSON struct {
	Checker   string    `json:"checker"`
	Valid     any       `json:"valid"`
	Anomalies []Anomaly `json:"anomalies,omitempty"`
	OK        int       `json:"ok"`
	Fail      int       `json:"fail"`
	Info      int       `json:"info"`
}

// JepsenValid is v as Jepsen's :valid? writes it: true, false or
// "unknown".
func (v Verdict) JepsenValid() any {
	switch v {
	case VerdictPass:
		return true
	case VerdictUnknown:
		return "unknown"
	}
	return false
}

// MarshalJSON writes "valid" as true, false or "unknown".
func (r Result) MarshalJSON() ([]byte, error) {
	return json.Marshal(resultJSON{Checker: r.Checker, Valid: r.Verdict().JepsenValid(), Anomalies: r.Anomalies, OK: r.OK, Fail: r.Fail, Info: r.Info})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Result) UnmarshalJSON(b []byte) error {
	var j resultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = Result{Checker: j.Checker, Anomalies: j.Anomalies, OK: j.OK, Fail: j.Fail, Info: j.Info}
	switch j.Valid {
	case true:
		r.Valid = true
	case "unknown":
		r.Unknown = true
	case false, nil:
	default:
		return fmt.Errorf("check: result %s: valid %v: want true, false or \"unknown\"", j.Checker, j.Valid)
	}
	return nil
}

// Checker checks a history (invokes and completions, in Index order).
type Checker interface {
	Name() string
	Check(h []Op) Result
}

// CheckContext is c.Check(h) that returns when ctx ends, with ctx's error
// (and no Result), if the check has not finished by then. A checker takes
// no ctx: the abandoned check goes on in the background until it ends
// (a linearizability search within its timeout) and its result is
// dropped. For a program that stops on ^C (the CLI), not for one that
// checks again and again with short deadlines.
func CheckContext(ctx context.Context, c Checker, h []Op) (Result, error) {
	return withContext(ctx, func() Result { return c.Check(h) })
}

// withContext runs check on a goroutine of its own when ctx can end, and
// returns its Result, or ctx's error when ctx ends first.
func withContext(ctx context.Context, check func() Result) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if ctx.Done() == nil {
		return check(), nil
	}
	done := make(chan Result, 1)
	go func() { done <- check() }()
	select {
	case res := <-done:
		return res, nil
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}
