package check

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// FileWorkloads are the workloads File and ReadHistory know.
var FileWorkloads = []string{"list-append", "register", "bank", "counter"}

// Options configure File, ReadHistory and History.Check.
type Options struct {
	// Format is the history's format: "edn" (Jepsen's and Elle's),
	// "jsonl" (the runner's history.jsonl), or "" to tell by the content
	// (JSON lines begin with {").
	Format string
	// Timeout bounds the linearizability search of the register
	// workload (0: DefaultCheckTimeout). A key not decided in time makes
	// the verdict UNKNOWN.
	Timeout time.Duration
	// ListAppend configures the list-append checker (process and
	// real-time order, serializability); nil: DefaultListAppendConfig.
	ListAppend *ListAppendConfig
	// Total is what every ok bank read must sum to (Jepsen's
	// :total-amount). nil: the sum that most ok reads show, so that only
	// reads that disagree with the others can be found wrong.
	Total *int
}

// History is a history read from a file, its events as the checkers
// take them.
type History struct {
	Workload string
	Format   string // "edn" or "jsonl"
	Ops      []Op
	// Keys is nil when every key (list-append and register keys, bank
	// accounts, counter keys) was an integer, and the checkers use them
	// as they are. Otherwise the checkers number the keys in the order
	// they first appear, and Keys[k] is key k as the history wrote it
	// (":x", "\"y\"", "3"); File adds what a witness's keys were to its
	// anomaly's Explain.
	Keys []string
}

// File reads the history at path (EDN as Jepsen and Elle write it, or
// the runner's JSON lines) and checks it as a history of workload, one of
// FileWorkloads. It returns the checker's Result: its Verdict, and its
// Anomalies by Name, each with the operations that witness it. A history
// that cannot be read is an error naming the line and column, and what
// was expected there.
func File(path, workload string, opts Options) (Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return Result{}, err
	}
	defer f.Close()
	if opts.Format == "" {
		switch strings.ToLower(filepath.Ext(path)) {
		case ".edn":
			opts.Format = "edn"
		case ".jsonl":
			opts.Format = "jsonl"
		}
	}
	h, err := ReadHistory(f, path, workload, opts)
	if err != nil {
		return Result{}, err
	}
	return h.Check(opts), nil
}

// ReadHistory reads a history of workload from r; name names r in
// errors.
//
// EDN is read as Jepsen and Elle write it: operation maps
//
//	{:type :invoke, :f :txn, :value [[:append 3 7] [:r 4 nil]], :process 0, :time 123, :index 0}
//
// one after another (one a line, or pretty-printed over several) or in
// one vector; tagged (#jepsen.history.Op{...}) or not. Commas are
// whitespace, ; starts a comment, #_ discards the next form. :type is
// required; :f may be missing for list-append (every operation is a
// transaction); :process may be missing (every operation is then one
// process's, so each invoke must be followed by its completion); an
// operation whose :process is not an integer (:nemesis) is not a
// client's and is left out; :index and :time are kept when every
// operation has them (and the times increase), else each operation's
// position numbers it. A fail or info completion's :value is not read:
// the operation is its invoke's.
//
// The values, per workload (k is a key: any EDN scalar; v, n integers):
//
//   - list-append: a vector of micro-ops, [:append k v] and [:r k list];
//     in an ok completion a read of nil is the empty list (the key was
//     never written), in an invoke it is unknown.
//   - register (:f :read, :write, :cas): v, or [k v] for independent
//     keys; a cas [old new] or [k [old new]]; an ok read of nil found the
//     register empty. Plain values are key 0.
//   - bank (:f :transfer, :read): a transfer {:from k, :to k, :amount n};
//     an ok read the balances {k n, ...} (a nil balance: the account is
//     missing from the read).
//   - counter (:f :add, :read): n or [k n]; an ok read of nil read 0.
//
// The maps WriteEDN writes for register, bank and counter values
// ({:k 1, :v 2}, {:balances {...}}) are read too.
func ReadHistory(r io.Reader, name, workload string, opts Options) (*History, error) {
	if !slices.Contains(FileWorkloads, workload) {
		return nil, fmt.Errorf("check: unknown workload %q: want one of %s", workload, strings.Join(FileWorkloads, ", "))
	}
	src, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	format := opts.Format
	if format == "" {
		format = "edn"
		if t := bytes.TrimLeft(src, " \t\r\n"); bytes.HasPrefix(t, []byte("{")) && bytes.HasPrefix(bytes.TrimLeft(t[1:], " \t\r\n"), []byte(`"`)) {
			format = "jsonl" // {"index": ...: EDN maps have keyword keys
		}
	}
	h := &History{Workload: workload, Format: format}
	switch format {
	case "jsonl":
		h.Ops, err = ReadJSONL(bytes.NewReader(src))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	case "edn":
		if err := h.readEDN(name, src); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("check: unknown history format %q: want edn or jsonl", format)
	}
	if len(h.Ops) == 0 {
		return nil, fmt.Errorf("%s: no client operations (want operation maps {:type ..., :f ..., :value ..., :process p})", name)
	}
	return h, nil
}

// CheckContext is Check that returns ctx's error (and no Result) when ctx
// ends before the check does (see the package function CheckContext).
func (h *History) CheckContext(ctx context.Context, opts Options) (Result, error) {
	return withContext(ctx, func() Result { return h.Check(opts) })
}

// Check checks h as a history of h.Workload.
func (h *History) Check(opts Options) Result {
	var res Result
	switch h.Workload {
	case "list-append":
		c := NewListAppendChecker()
		if opts.ListAppend != nil {
			c.Config = *opts.ListAppend
		}
		res = c.Check(h.Ops)
	case "register":
		c := NewLinearChecker()
		c.Config.Timeout = opts.Timeout
		res = c.Check(h.Ops)
	case "bank":
		accts, total := bankShape(h.Ops)
		if opts.Total != nil {
			total = *opts.Total
		}
		res = NewBankChecker(accts, total).Check(h.Ops)
	case "counter":
		res = NewCounterChecker().Check(h.Ops)
	default:
		return Result{Checker: h.Workload, Anomalies: []Anomaly{{Name: "malformed", Explain: fmt.Sprintf("unknown workload %q", h.Workload)}}}
	}
	if h.Keys != nil {
		for i := range res.Anomalies {
			res.Anomalies[i].Explain += h.legend(res.Anomalies[i].Ops)
		}
	}
	return res
}

// bankShape infers a bank's accounts (every account an ok read shows or a
// transfer names) and total (the sum most ok reads show; the first such
// on a tie).
func bankShape(h []Op) (accts []int, total int) {
	seen := map[int]bool{}
	add := func(a int) {
		if !seen[a] {
			seen[a] = true
			accts = append(accts, a)
		}
	}
	sums := map[int]int{}
	var order []int
	for _, p := range PairOps(h) {
		var v BankValue
		switch {
		case p.Invoke.F == "transfer":
			if p.Invoke.Decode(&v) == nil {
				add(v.From)
				add(v.To)
			}
		case p.Invoke.F == "read" && p.Type() == OK:
			if p.Complete.Decode(&v) != nil {
				continue
			}
			s := 0
			for a, b := range v.Balances {
				add(a)
				s += b
			}
			if _, ok := sums[s]; !ok {
				order = append(order, s)
			}
			sums[s]++
		}
	}
	for _, s := range order {
		if sums[s] > sums[total] || sums[total] == 0 {
			total = s
		}
	}
	slices.Sort(accts)
	return accts, total
}

// legend says what the keys of ops were in the history: "\n(keys as
// written: 0 = :x, 1 = "y")", or "" if they name none.
func (h *History) legend(ops []Op) string {
	var ks []int
	seen := map[int]bool{}
	add := func(k int) {
		if k >= 0 && k < len(h.Keys) && !seen[k] {
			seen[k] = true
			ks = append(ks, k)
		}
	}
	for _, o := range ops {
		switch h.Workload {
		case "list-append":
			var mops []Mop
			if o.Decode(&mops) == nil {
				for _, m := range mops {
					add(m.K)
				}
			}
		case "register":
			var v RegisterValue
			if o.Decode(&v) == nil {
				add(v.K)
			}
		case "counter":
			var v CounterValue
			if o.Decode(&v) == nil {
				add(v.K)
			}
		case "bank":
			var v BankValue
			if o.Decode(&v) == nil {
				if o.F == "transfer" {
					add(v.From)
					add(v.To)
				}
				for _, a := range ckSortedKeys(v.Balances) {
					add(a)
				}
			}
		}
	}
	if len(ks) == 0 {
		return ""
	}
	slices.Sort(ks)
	what := "keys"
	if h.Workload == "bank" {
		what = "accounts"
	}
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = fmt.Sprintf("%d = %s", k, h.Keys[k])
	}
	return fmt.Sprintf("\n(%s as written: %s)", what, strings.Join(parts, ", "))
}

// keyTable numbers a history's keys. It is filled in two passes over the
// history: the first collects every key, the second numbers them: as
// they are if every key is an integer, else in the order they first
// appeared.
type keyTable struct {
	numbered bool
	ids      map[string]int
	texts    []string
	allInt   bool
}

func newKeyTable() *keyTable { return &keyTable{ids: map[string]int{}, allInt: true} }

// id is key v's number (0 in the first pass).
func (t *keyTable) id(v ednVal, what string) (int, error) {
	switch v.kind {
	case eList, eVector, eMap, eSet:
		return 0, errAt(v, "want %s (a scalar: integer, keyword, string, symbol...), got %s", what, v.describe())
	}
	if t.numbered {
		if t.allInt {
			return int(v.i), nil
		}
		return t.ids[v.text()], nil
	}
	if v.kind != eInt || int64(int(v.i)) != v.i {
		t.allInt = false
	}
	txt := v.text()
	if _, ok := t.ids[txt]; !ok {
		t.ids[txt] = len(t.texts)
		t.texts = append(t.texts, txt)
	}
	return 0, nil
}

// readEDN reads an EDN history into h.
func (h *History) readEDN(name string, src []byte) error {
	rd := newEDNReader(name, src)
	var maps []ednVal
	for rd.more() {
		v, err := rd.read(0)
		if err != nil {
			return err
		}
		switch {
		case v.kind == eMap:
			maps = append(maps, v)
		case v.isSeq():
			for _, o := range v.kids {
				if o.kind != eMap {
					return rd.errAt(o.line, o.col, "want an operation map {:type ..., :f ..., :value ...} in the %s of operations, got %s", kindName[v.kind], o.describe())
				}
				maps = append(maps, o)
			}
		default:
			return rd.errAt(v.line, v.col, "want an operation map {:type ..., :f ..., :value ...} or a vector of them, got %s", v.describe())
		}
	}
	keys := newKeyTable()
	for pass := 0; pass < 2; pass++ {
		var events []ednEvent
		for _, m := range maps {
			ev, keep, err := opFromEDN(m, h.Workload, keys)
			if err != nil {
				var pe *posError
				if errors.As(err, &pe) {
					return rd.errAt(pe.line, pe.col, "%s", pe.msg)
				}
				return rd.errAt(m.line, m.col, "%v", err)
			}
			if keep {
				events = append(events, ev)
			}
		}
		if pass == 1 {
			h.Ops = numberEvents(events)
		}
		keys.numbered = true
	}
	if !keys.allInt {
		h.Keys = keys.texts
	}
	return nil
}

// ednEvent is an op and whether the history gave its index and time.
type ednEvent struct {
	op                Op
	hasIndex, hasTime bool
}

// numberEvents keeps the history's :index and :time if every event has
// them (and the times increase), and numbers the events by position
// otherwise: the history's order is the real-time order.
func numberEvents(evs []ednEvent) []Op {
	keepIndex, keepTime := true, true
	for i, e := range evs {
		keepIndex = keepIndex && e.hasIndex
		keepTime = keepTime && e.hasTime && (i == 0 || e.op.Time > evs[i-1].op.Time)
	}
	ops := make([]Op, len(evs))
	for i, e := range evs {
		ops[i] = e.op
		if !keepIndex {
			ops[i].Index = i
		}
		if !keepTime {
			ops[i].Time = int64(i + 1)
		}
	}
	return ops
}

// posError is an error at a place in the history.
type posError struct {
	line, col int
	msg       string
}

func (e *posError) Error() string { return fmt.Sprintf("%d:%d: %s", e.line, e.col, e.msg) }

func errAt(v ednVal, format string, args ...any) error {
	return &posError{line: v.line, col: v.col, msg: fmt.Sprintf(format, args...)}
}

// ednInt reads an integer that fits in int.
func ednInt(v ednVal, what string) (int, error) {
	if v.kind != eInt || int64(int(v.i)) != v.i {
		return 0, errAt(v, "want %s (an integer), got %s", what, v.describe())
	}
	return int(v.i), nil
}

// opFromEDN converts one operation map. keep is false for an operation that
// is not a client's (its :process is not an integer: the nemesis).
func opFromEDN(m ednVal, workload string, keys *keyTable) (ev ednEvent, keep bool, err error) {
	o := &ev.op
	tv, ok := m.get("type")
	if !ok {
		return ev, false, errAt(m, "the operation has no :type: want :type :invoke, :ok, :fail or :info")
	}
	switch tv.name() {
	case "invoke":
		o.Type = Invoke
	case "ok":
		o.Type = OK
	case "fail":
		o.Type = Fail
	case "info":
		o.Type = Info
	default:
		return ev, false, errAt(tv, "want :type :invoke, :ok, :fail or :info, got %s", tv.describe())
	}
	o.Process = -1
	if pv, ok := m.get("process"); ok && pv.kind != eNil {
		if pv.kind != eInt {
			return ev, false, nil // the nemesis, or another non-client
		}
		if o.Process, err = ednInt(pv, ":process"); err != nil {
			return ev, false, err
		}
	}
	if iv, ok := m.get("index"); ok {
		if o.Index, err = ednInt(iv, ":index"); err != nil {
			return ev, false, err
		}
		ev.hasIndex = true
	}
	if tv, ok := m.get("time"); ok {
		if tv.kind != eInt {
			return ev, false, errAt(tv, "want :time (an integer, nanoseconds), got %s", tv.describe())
		}
		o.Time, ev.hasTime = tv.i, true
	}
	if fv, ok := m.get("final"); ok && fv.kind == eBool {
		o.Final = fv.b
	}
	if e, ok := m.get("error"); ok && e.kind != eNil {
		if e.kind == eString {
			o.Error = e.s
		} else {
			o.Error = e.text()
		}
	}
	fv, hasF := m.get("f")
	if !hasF {
		fv = ednVal{kind: eNil, line: m.line, col: m.col}
	}
	if fv.kind != eNil && fv.name() == "" {
		return ev, false, errAt(fv, "want :f (a keyword), got %s", fv.describe())
	}
	o.F = fv.name()
	vv, ok := m.get("value")
	if !ok {
		vv = ednVal{kind: eNil, line: m.line, col: m.col}
	}
	if o.Type == Fail || o.Type == Info {
		// The operation is its invoke's; what a failed or unknown
		// operation returned does not matter.
		if workload == "list-append" {
			o.F = "txn"
		}
		return ev, true, checkF(fv, o, workload)
	}
	var val any
	switch workload {
	case "list-append":
		o.F = "txn"
		val, err = ednTxn(vv, o.Type, keys)
	case "register":
		if err := checkF(fv, o, workload); err != nil {
			return ev, false, err
		}
		val, err = ednRegister(vv, o.F, o.Type, keys)
	case "bank":
		if err := checkF(fv, o, workload); err != nil {
			return ev, false, err
		}
		val, err = ednBank(vv, o.F, o.Type, keys)
	case "counter":
		if err := checkF(fv, o, workload); err != nil {
			return ev, false, err
		}
		val, err = ednCounter(vv, o.F, o.Type, keys)
	}
	if err != nil {
		return ev, false, err
	}
	if val != nil {
		*o = o.WithValue(val)
	}
	return ev, true, nil
}

// workloadFs are the operations each workload's :f may name.
var workloadFs = map[string][]string{
	"register": {"read", "write", "cas"},
	"bank":     {"transfer", "read"},
	"counter":  {"add", "read"},
}

func checkF(fv ednVal, o *Op, workload string) error {
	fs, ok := workloadFs[workload]
	if !ok || slices.Contains(fs, o.F) {
		return nil
	}
	want := ":" + strings.Join(fs, ", :")
	if i := strings.LastIndex(want, ", "); i >= 0 {
		want = want[:i] + " or" + want[i+1:]
	}
	if o.F == "" {
		return errAt(fv, "the operation has no :f: want :f %s (the %s workload)", want, workload)
	}
	return errAt(fv, "want :f %s (the %s workload), got %s", want, workload, fv.describe())
}

// ednTxn reads a list-append transaction.
func ednTxn(v ednVal, typ Type, keys *keyTable) (any, error) {
	if v.kind == eNil {
		if typ == Invoke {
			return nil, errAt(v, "want :value, a transaction: a vector of micro-ops [:append k v] or [:r k list], got nil")
		}
		return nil, nil // the invoke's
	}
	if !v.isSeq() {
		return nil, errAt(v, "want :value, a transaction: a vector of micro-ops [:append k v] or [:r k list], got %s", v.describe())
	}
	mops := make([]Mop, 0, len(v.kids))
	for _, mv := range v.kids {
		if mv.isSeq() && len(mv.kids) == 2 && mv.kids[0].name() == "r" && typ != OK {
			// Elle writes an invocation's read without its list: [:r k].
			k, err := keys.id(mv.kids[1], "a key")
			if err != nil {
				return nil, err
			}
			mops = append(mops, Mop{F: "r", K: k})
			continue
		}
		if !mv.isSeq() || len(mv.kids) != 3 {
			return nil, errAt(mv, "want a micro-op [:append k v] or [:r k list], got %s", mv.describe())
		}
		f, kv, x := mv.kids[0], mv.kids[1], mv.kids[2]
		k, err := keys.id(kv, "a key")
		if err != nil {
			return nil, err
		}
		switch f.name() {
		case "append":
			n, err := ednInt(x, "the value appended")
			if err != nil {
				return nil, err
			}
			mops = append(mops, Mop{F: "append", K: k, V: n})
		case "r":
			m := Mop{F: "r", K: k}
			switch {
			case x.kind == eNil:
				if typ == OK {
					m.R = []int{} // Elle: an ok read of nil is the empty list
				}
			case x.isSeq():
				if typ == OK {
					m.R = make([]int, len(x.kids))
				}
				for i, e := range x.kids {
					n, err := ednInt(e, "a list element")
					if err != nil {
						return nil, err
					}
					if typ == OK {
						m.R[i] = n
					}
				}
			default:
				return nil, errAt(x, "want the list read (a vector, or nil), got %s", x.describe())
			}
			mops = append(mops, m)
		default:
			return nil, errAt(f, "want a micro-op's f, :append or :r, got %s", f.describe())
		}
	}
	return mops, nil
}

// ednKeyed splits an independent [k v] tuple; a plain value is key 0.
func ednKeyed(v ednVal, tuple bool, keys *keyTable) (k int, x ednVal, err error) {
	if !tuple {
		// Key 0, numbered with the others should they not be integers.
		k, err = keys.id(ednVal{kind: eInt, line: v.line, col: v.col}, "a key")
		return k, v, err
	}
	if k, err = keys.id(v.kids[0], "a key"); err != nil {
		return 0, v, err
	}
	return k, v.kids[1], nil
}

// ednFields reads the map WriteEDN writes for a value (keyword keys) into
// out, through JSON.
func ednFields(v ednVal, out any) error {
	m := map[string]any{}
	for i := 0; i+1 < len(v.kids); i += 2 {
		kv, x := v.kids[i], v.kids[i+1]
		if kv.kind != eKeyword {
			return errAt(kv, "want a keyword key, got %s", kv.describe())
		}
		switch x.kind {
		case eInt:
			m[kv.s] = x.i
		case eBool:
			m[kv.s] = x.b
		case eNil:
		default:
			return errAt(x, "want :%s an integer, got %s", kv.s, x.describe())
		}
	}
	b, _ := json.Marshal(m)
	if err := json.Unmarshal(b, out); err != nil {
		return errAt(v, "%s: %v", v.describe(), err)
	}
	return nil
}

// ednRegister reads a register operation's value.
func ednRegister(v ednVal, f string, typ Type, keys *keyTable) (any, error) {
	if v.kind == eMap {
		var rv RegisterValue
		if err := ednFields(v, &rv); err != nil {
			return nil, err
		}
		if _, err := keys.id(ednVal{kind: eInt, i: int64(rv.K)}, "a key"); err != nil {
			return nil, err
		}
		return rv, nil
	}
	switch f {
	case "read":
		tuple := v.isSeq() && len(v.kids) == 2
		if v.kind != eNil && v.kind != eInt && !tuple {
			return nil, errAt(v, "want a read's :value: nil, v or [k v], got %s", v.describe())
		}
		k, x, err := ednKeyed(v, tuple, keys)
		if err != nil {
			return nil, err
		}
		if typ == Invoke || x.kind == eNil {
			return RegisterValue{K: k}, nil
		}
		n, err := ednInt(x, "the value read")
		if err != nil {
			return nil, err
		}
		return RegisterValue{K: k, V: n, Found: true}, nil
	case "write":
		tuple := v.isSeq() && len(v.kids) == 2
		k, x, err := ednKeyed(v, tuple, keys)
		if err != nil {
			return nil, err
		}
		n, err := ednInt(x, "the value written (v or [k v])")
		if err != nil {
			return nil, err
		}
		return RegisterValue{K: k, V: n}, nil
	default: // cas
		if !v.isSeq() || len(v.kids) != 2 {
			return nil, errAt(v, "want a cas's :value: [old new] or [k [old new]], got %s", v.describe())
		}
		tuple := v.kids[1].isSeq()
		k, x, err := ednKeyed(v, tuple, keys)
		if err != nil {
			return nil, err
		}
		if !x.isSeq() || len(x.kids) != 2 {
			return nil, errAt(x, "want a cas's [old new], got %s", x.describe())
		}
		old, err := ednInt(x.kids[0], "the value a cas expects")
		if err != nil {
			return nil, err
		}
		new, err := ednInt(x.kids[1], "the value a cas writes")
		if err != nil {
			return nil, err
		}
		return RegisterValue{K: k, Old: old, New: new}, nil
	}
}

// ednBank reads a bank operation's value.
func ednBank(v ednVal, f string, typ Type, keys *keyTable) (any, error) {
	if f == "transfer" {
		if v.kind != eMap {
			return nil, errAt(v, "want a transfer's :value {:from k, :to k, :amount n}, got %s", v.describe())
		}
		var bv BankValue
		for _, field := range []string{"from", "to", "amount"} {
			x, ok := v.get(field)
			if !ok {
				return nil, errAt(v, "want a transfer's :value {:from k, :to k, :amount n}: no :%s", field)
			}
			var err error
			switch field {
			case "from":
				bv.From, err = keys.id(x, "the account transferred from")
			case "to":
				bv.To, err = keys.id(x, "the account transferred to")
			case "amount":
				bv.Amount, err = ednInt(x, "the amount transferred")
			}
			if err != nil {
				return nil, err
			}
		}
		return bv, nil
	}
	// read
	if typ == Invoke {
		return BankValue{}, nil
	}
	if v.kind != eMap {
		return nil, errAt(v, "want a read's :value, the balances {account balance, ...}, got %s", v.describe())
	}
	if inner, ok := v.get("balances"); ok && len(v.kids) == 2 && inner.kind == eMap {
		v = inner // as WriteEDN writes it
	}
	bv := BankValue{Balances: map[int]int{}}
	for i := 0; i+1 < len(v.kids); i += 2 {
		a, err := keys.id(v.kids[i], "an account")
		if err != nil {
			return nil, err
		}
		if v.kids[i+1].kind == eNil {
			continue // missing from the read
		}
		n, err := ednInt(v.kids[i+1], "a balance")
		if err != nil {
			return nil, err
		}
		bv.Balances[a] = n
	}
	return bv, nil
}

// ednCounter reads a counter operation's value.
func ednCounter(v ednVal, f string, typ Type, keys *keyTable) (any, error) {
	if v.kind == eMap {
		var cv CounterValue
		if err := ednFields(v, &cv); err != nil {
			return nil, err
		}
		if _, err := keys.id(ednVal{kind: eInt, i: int64(cv.K)}, "a key"); err != nil {
			return nil, err
		}
		return cv, nil
	}
	tuple := v.isSeq() && len(v.kids) == 2
	if v.kind != eNil && v.kind != eInt && !tuple {
		return nil, errAt(v, "want a %s's :value: n or [k n], got %s", f, v.describe())
	}
	k, x, err := ednKeyed(v, tuple, keys)
	if err != nil {
		return nil, err
	}
	if f == "read" && (typ == Invoke || x.kind == eNil) {
		return CounterValue{K: k}, nil // an ok read of nil read 0
	}
	what := "the amount added"
	if f == "read" {
		what = "the value read"
	}
	n, err := ednInt(x, what)
	if err != nil {
		return nil, err
	}
	if f == "read" {
		return CounterValue{K: k, V: n}, nil
	}
	return CounterValue{K: k, Delta: n}, nil
}
