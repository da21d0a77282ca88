package check

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// DefaultLockLease is the lease of the lock workload's locks (and of its
// STM) unless Config.Lease says otherwise: short, so that a paused or
// killed holder loses its lease within a fault window.
const DefaultLockLease = time.Second

// ckMaxPerKey bounds how many anomalies of one name a lock checker reports
// per lock.
const ckMaxPerKey = 5

// ckHolding is one holding of a lock history: an acquire that succeeded
// and what happened under it.
type ckHolding struct {
	id     string
	k      int
	token  uint64
	acq    OpPair
	rel    *OpPair // the release, if invoked
	heldAt int64   // the latest time the holding was certainly still held
	by     *OpPair // the op whose completion certified heldAt (nil: the acquire)
}

// certainEnd is the end of the interval in which the holder certainly
// held the lock: the invoke of a release that succeeded (the lease was
// not lost before it), else the latest time it certified (HeldAt).
func (h *ckHolding) certainEnd() int64 {
	if h.rel != nil && h.rel.Type() == OK {
		var v LockValue
		if h.rel.Complete.Decode(&v) == nil && !v.Lost {
			return h.rel.Invoke.Time
		}
	}
	return h.heldAt
}

// ckLockHoldings gathers the holdings of a lock history (ops acquire,
// write, release with LockValue values). Malformed ops become anomalies.
func ckLockHoldings(ps []OpPair, res *Result) (map[string]*ckHolding, []string) {
	hs := map[string]*ckHolding{}
	var order []string
	decode := func(p OpPair, o Op) (LockValue, bool) {
		var v LockValue
		if err := o.Decode(&v); err != nil {
			res.Anomalies = append(res.Anomalies, Anomaly{Name: "malformed", Explain: err.Error(), Ops: []Op{p.Complete}})
			return v, false
		}
		return v, true
	}
	for _, p := range ps {
		if p.Invoke.F != "acquire" || p.Type() != OK {
			continue // an acquire that failed held nothing; one that is unknown is checked by nothing
		}
		v, ok := decode(p, p.Complete)
		if !ok {
			continue
		}
		if v.Holding == "" || hs[v.Holding] != nil {
			res.Anomalies = append(res.Anomalies, Anomaly{Name: "malformed",
				Explain: fmt.Sprintf("acquire %s names holding %q, empty or already used", ckOpRef(p), v.Holding), Ops: []Op{p.Complete}})
			continue
		}
		hs[v.Holding] = &ckHolding{id: v.Holding, k: v.K, token: v.Token, acq: p, heldAt: p.Invoke.Time}
		order = append(order, v.Holding)
	}
	for i := range ps {
		p := &ps[i]
		if p.Invoke.F != "write" && p.Invoke.F != "release" {
			continue
		}
		iv, ok := decode(*p, p.Invoke)
		if !ok {
			continue
		}
		h := hs[iv.Holding]
		if h == nil {
			continue // under an acquire whose outcome is unknown
		}
		if p.Invoke.F == "release" && h.rel == nil {
			h.rel = p
		}
		if p.Synthetic {
			continue
		}
		if cv, ok := decode(*p, p.Complete); ok && cv.HeldAt > h.heldAt {
			h.heldAt, h.by = cv.HeldAt, p
		}
	}
	return hs, order
}

// MutexChecker checks a lock history for mutual exclusion: per lock
// (LockValue.K), the holdings must be linearizable as a mutex, a register
// that holds its holder or nothing, where an acquire takes a free lock and
// a release frees it (porcupine, as LinearChecker).
//
// Leases make the release of a holding whose lease was lost (or whose
// process was killed) uncertain: its holder certainly held it until
// HeldAt (the latest time it had not yet seen Lost) and lost it before it
// noticed (the release that returned ErrLost completed), or, with no such
// release, at any time up to the end of the history. Such a holding is
// modelled as released at an unknown point of that interval, so another
// acquire after a lost lease is no violation, while two holders that both
// certainly held the lock at once (neither had seen Lost) are: that is
// reported as "double-holder" with both holdings as witness, and anything
// else porcupine cannot linearize as "nonlinearizable".
type MutexChecker struct {
	// Timeout bounds porcupine's search, every lock's at once (0:
	// DefaultCheckTimeout); a lock whose search runs out of time is
	// reported as "linearizability-unknown", Unknown.
	Timeout time.Duration
}

// NewMutexChecker returns a mutex checker with a 30s timeout.
func NewMutexChecker() *MutexChecker { return &MutexChecker{} }

// Name implements Checker.
func (c *MutexChecker) Name() string { return "mutex" }

// Mutex model: inputs, outputs and states.
type ckMutexIn struct {
	F       string // acquire, release
	K       int
	Holding string
	Lost    bool
	Pos     int // index in the checker's pair list
}

type ckMutexOut struct {
	Unknown bool // the release's time is bounded only by the history's end
}

func ckMutexStep(state, input, output any) (bool, any) {
	s, in, out := state.(string), input.(ckMutexIn), output.(ckMutexOut)
	switch in.F {
	case "acquire":
		return s == "", in.Holding
	case "release":
		if s == in.Holding {
			return true, ""
		}
		return out.Unknown, s
	}
	return false, s
}

func ckMutexDescribe(in ckMutexIn, out ckMutexOut) string {
	switch {
	case in.F == "acquire":
		return "acquire " + in.Holding
	case out.Unknown:
		return "release " + in.Holding + " (lease lost or outcome unknown: any time)"
	case in.Lost:
		return "release " + in.Holding + " (lease lost)"
	}
	return "release " + in.Holding
}

func ckMutexPartition(ops []porcupine.Operation) [][]porcupine.Operation {
	by := map[int][]porcupine.Operation{}
	for _, o := range ops {
		k := o.Input.(ckMutexIn).K
		by[k] = append(by[k], o)
	}
	var out [][]porcupine.Operation
	for _, k := range ckSortedKeys(by) {
		out = append(out, by[k])
	}
	return out
}

var ckMutexModel = porcupine.Model{
	Partition: ckMutexPartition,
	Init:      func() any { return "" },
	Step:      ckMutexStep,
	Equal:     func(a, b any) bool { return a.(string) == b.(string) },
	DescribeOperation: func(in, out any) string {
		return fmt.Sprintf("lock %d %s", in.(ckMutexIn).K, ckMutexDescribe(in.(ckMutexIn), out.(ckMutexOut)))
	},
	DescribeState: func(s any) string {
		if s.(string) == "" {
			return "free"
		}
		return "held by " + s.(string)
	},
}

// Check implements Checker.
func (c *MutexChecker) Check(h []Op) Result {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultCheckTimeout
	}
	res := Result{Checker: c.Name()}
	ps, end := ckPairsOf(h, "acquire", "write", "release")
	ckCountTypes(&res, ps)
	hs, order := ckLockHoldings(ps, &res)
	pos := map[*OpPair]int{}
	for i := range ps {
		pos[&ps[i]] = i
	}
	var ops []porcupine.Operation
	for cl, id := range order {
		hd := hs[id]
		meta := fmt.Sprintf("holding %s, token %d", id, hd.token)
		ops = append(ops, porcupine.Operation{ClientId: cl, Input: ckMutexIn{F: "acquire", K: hd.k, Holding: id, Pos: ckPairPos(ps, hd.acq)},
			Call: hd.acq.Invoke.Time, Output: ckMutexOut{}, Return: hd.acq.Complete.Time, Metadata: meta})
		in := ckMutexIn{F: "release", K: hd.k, Holding: id, Pos: -1}
		call, ret, out := max(hd.heldAt, hd.acq.Invoke.Time), end, ckMutexOut{Unknown: true}
		if hd.rel != nil {
			in.Pos = pos[hd.rel]
			var v LockValue
			if hd.rel.Type() == OK && hd.rel.Complete.Decode(&v) == nil {
				out.Unknown, ret, in.Lost = false, hd.rel.Complete.Time, v.Lost
				if !v.Lost {
					call = hd.rel.Invoke.Time
				}
			}
		}
		ops = append(ops, porcupine.Operation{ClientId: cl, Input: in, Call: min(call, ret), Output: out, Return: ret, Metadata: meta})
	}
	doubles := ckDoubleHolders(hs, order)
	res.Anomalies = append(res.Anomalies, doubles...)
	doubled := map[int]bool{}
	for _, a := range doubles {
		var v LockValue
		if a.Ops[0].Decode(&v) == nil {
			doubled[v.K] = true
		}
	}
	parts := ckMutexPartition(ops)
	for i, v := range ckCheckParts(ckMutexModel, parts, timeout) {
		part := parts[i]
		k := part[0].Input.(ckMutexIn).K
		switch {
		case v.Result == porcupine.Unknown:
			res.Anomalies = append(res.Anomalies, Anomaly{Name: "linearizability-unknown", Unknown: true,
				Explain: fmt.Sprintf("lock %d (%d operations): porcupine did not finish within %v: no violation found, none ruled out (check the history again with a longer --check-timeout)", k, len(part), timeout)})
		case v.Result == porcupine.Illegal && !doubled[k]:
			longest := ckLongest(v.Partials, func(o porcupine.Operation) int { return ckMutexOpPos(o) })
			res.Anomalies = append(res.Anomalies, ckMutexNonlinearizable(ps, hs, part, longest))
		}
	}
	return ckFinish(&res)
}

// ckMutexOpPos orders porcupine ops for ckLongest: by the history
// position of the op they come from (an acquire before its release).
func ckMutexOpPos(o porcupine.Operation) int {
	in := o.Input.(ckMutexIn)
	if in.Pos < 0 {
		return 1 << 40
	}
	return in.Pos
}

func ckPairPos(ps []OpPair, p OpPair) int {
	i := sort.Search(len(ps), func(i int) bool { return ps[i].InvokePos >= p.InvokePos })
	if i < len(ps) && ps[i].InvokePos == p.InvokePos {
		return i
	}
	return -1
}

// ckDoubleHolders finds, per lock, holdings that certainly overlap: one
// acquired (its acquire completed) before another's certain end (see
// certainEnd) and the other acquired before the first's certain end.
func ckDoubleHolders(hs map[string]*ckHolding, order []string) []Anomaly {
	byK := map[int][]*ckHolding{}
	for _, id := range order {
		h := hs[id]
		byK[h.k] = append(byK[h.k], h)
	}
	var out []Anomaly
	for _, k := range ckSortedKeys(byK) {
		l := byK[k]
		sort.SliceStable(l, func(i, j int) bool { return l[i].acq.Complete.Time < l[j].acq.Complete.Time })
		var longest *ckHolding // the holding with the latest certain end so far
		n := 0
		for _, b := range l {
			// b certainly held the lock when its acquire completed if it
			// certified that (HeldAt), and a throughout
			// [a's acquire's completion, a's certain end].
			a := longest
			if a != nil && b.acq.Complete.Time < a.certainEnd() && b.certainEnd() >= b.acq.Complete.Time && n < ckMaxPerKey {
				n++
				out = append(out, ckDoubleHolder(a, b))
			}
			if longest == nil || b.certainEnd() > longest.certainEnd() {
				longest = b
			}
		}
	}
	return out
}

func ckDoubleHolder(a, b *ckHolding) Anomaly {
	why := "its release was invoked then, and succeeded, so the lease was not lost before"
	ops := []Op{a.acq.Complete, b.acq.Complete}
	if a.rel == nil || a.certainEnd() != a.rel.Invoke.Time || a.rel.Type() != OK {
		why = "it had not seen Lost then (HeldAt)"
		if a.by != nil {
			why = fmt.Sprintf("it had not seen Lost then (HeldAt of %s)", ckOpRef(*a.by))
			ops = append(ops, a.by.Complete)
		}
	} else {
		ops = append(ops, a.rel.Complete)
	}
	return Anomaly{Name: "double-holder", Ops: ops, Explain: fmt.Sprintf(
		"lock %d: holding %s (token %d, acquired by %s, process %d, completed %s) still certainly held it at %s (%s), "+
			"but holding %s (token %d, acquired by %s, process %d) had acquired it at %s: both held the lock at once",
		a.k, a.id, a.token, ckOpRef(a.acq), a.acq.Invoke.Process, ckFmtTime(a.acq.Complete.Time), ckFmtTime(a.certainEnd()), why,
		b.id, b.token, ckOpRef(b.acq), b.acq.Invoke.Process, ckFmtTime(b.acq.Complete.Time))}
}

// ckMutexNonlinearizable explains a lock porcupine could not linearize
// (and in which no two holdings certainly overlap): the longest
// linearizable prefix and the op that cannot come after it.
func ckMutexNonlinearizable(ps []OpPair, hs map[string]*ckHolding, part, prefix []porcupine.Operation) Anomaly {
	k := part[0].Input.(ckMutexIn).K
	done := map[porcupine.Operation]bool{}
	state := any("")
	for _, o := range prefix {
		done[o] = true
		_, state = ckMutexStep(state, o.Input, o.Output)
	}
	var stuck *porcupine.Operation
	for i := range part {
		o := &part[i]
		if done[*o] {
			continue
		}
		if stuck == nil || o.Return < stuck.Return || (o.Return == stuck.Return && o.Call < stuck.Call) {
			stuck = o
		}
	}
	var ops []Op
	desc := func(o porcupine.Operation) string {
		in := o.Input.(ckMutexIn)
		s := fmt.Sprintf("%s (from %s to %s", ckMutexDescribe(in, o.Output.(ckMutexOut)), ckFmtTime(o.Call), ckFmtTime(o.Return))
		if in.Pos >= 0 {
			s += ", " + ckOpRef(ps[in.Pos])
			ops = append(ops, ps[in.Pos].Complete)
		} else if h := hs[in.Holding]; h != nil {
			s += ", never released in the history"
		}
		return s + ")"
	}
	shown := prefix[max(0, len(prefix)-8):]
	var steps []string
	for _, o := range shown {
		steps = append(steps, desc(o))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "lock %d (%d operations): ", k, len(part))
	if len(prefix) == 0 {
		b.WriteString("no operation can come first on a free lock")
	} else {
		fmt.Fprintf(&b, "the longest linearizable prefix has %d operations, ending %s; it leaves the lock %s",
			len(prefix), strings.Join(steps, "; "), ckMutexModel.DescribeState(state))
	}
	if stuck != nil {
		fmt.Fprintf(&b, "; then %s cannot be linearized: it, or an operation concurrent with it, must come next, and none fits", desc(*stuck))
	}
	return Anomaly{Name: "nonlinearizable", Explain: b.String(), Ops: ops}
}

// FencingChecker checks a lock history's fencing tokens, per lock:
//
//   - token-order: an acquire that completed before another began has a
//     smaller token (tokens strictly increase in real-time order), and no
//     two successful acquires share a token;
//   - stale-write-accepted: no fenced write is accepted after (in real
//     time) an accepted write with a newer token;
//   - fence-regressed: a read of the fence (the final reads) returns at
//     least the token of every write accepted before it began.
type FencingChecker struct{}

// NewFencingChecker returns a fencing checker.
func NewFencingChecker() *FencingChecker { return &FencingChecker{} }

// Name implements Checker.
func (c *FencingChecker) Name() string { return "fencing" }

type ckTokOp struct {
	p   OpPair
	v   LockValue
	tok uint64
}

// ckRealTimeOrder reports each op b of after whose token is smaller
// (strict: not larger) than that of an op a of before that completed
// before b began, with a (the one with the largest token); yield returns
// false to stop.
func ckRealTimeOrder(before, after []ckTokOp, strict bool, yield func(a, b ckTokOp) bool) {
	byEnd := append([]ckTokOp(nil), before...)
	sort.SliceStable(byEnd, func(i, j int) bool { return byEnd[i].p.Complete.Time < byEnd[j].p.Complete.Time })
	best := make([]int, len(byEnd)) // index of the largest token among byEnd[:i+1]
	for i := range byEnd {
		best[i] = i
		if i > 0 && byEnd[best[i-1]].tok >= byEnd[i].tok {
			best[i] = best[i-1]
		}
	}
	for _, b := range after {
		n := sort.Search(len(byEnd), func(i int) bool { return byEnd[i].p.Complete.Time >= b.p.Invoke.Time })
		if n == 0 {
			continue
		}
		a := byEnd[best[n-1]]
		if a.tok > b.tok || (strict && a.tok == b.tok) {
			if !yield(a, b) {
				return
			}
		}
	}
}

// Check implements Checker.
func (c *FencingChecker) Check(h []Op) Result {
	res := Result{Checker: c.Name()}
	var ps []OpPair
	for _, p := range PairOps(h) {
		switch p.Invoke.F {
		case "acquire", "write", "read":
			ps = append(ps, p)
		}
	}
	ckCountTypes(&res, ps)
	acqs, writes, reads := map[int][]ckTokOp{}, map[int][]ckTokOp{}, map[int][]ckTokOp{}
	for _, p := range ps {
		if p.Type() != OK {
			continue
		}
		var v LockValue
		if err := p.Complete.Decode(&v); err != nil {
			res.Anomalies = append(res.Anomalies, Anomaly{Name: "malformed", Explain: err.Error(), Ops: []Op{p.Complete}})
			continue
		}
		switch p.Invoke.F {
		case "acquire":
			acqs[v.K] = append(acqs[v.K], ckTokOp{p, v, v.Token})
		case "write":
			writes[v.K] = append(writes[v.K], ckTokOp{p, v, v.Token})
		case "read":
			reads[v.K] = append(reads[v.K], ckTokOp{p, v, v.Seen})
		}
	}
	for _, k := range ckSortedKeys(acqs) {
		n := 0
		first := map[uint64]ckTokOp{}
		for _, b := range acqs[k] {
			if a, dup := first[b.tok]; dup && n < ckMaxPerKey {
				n++
				res.Anomalies = append(res.Anomalies, Anomaly{Name: "token-order", Ops: []Op{a.p.Complete, b.p.Complete},
					Explain: fmt.Sprintf("lock %d: holdings %s (%s) and %s (%s) got the same fencing token %d",
						k, a.v.Holding, ckOpRef(a.p), b.v.Holding, ckOpRef(b.p), b.tok)})
			}
			if _, dup := first[b.tok]; !dup {
				first[b.tok] = b
			}
		}
		ckRealTimeOrder(acqs[k], acqs[k], true, func(a, b ckTokOp) bool {
			if a.tok == b.tok {
				return true // reported above
			}
			n++
			res.Anomalies = append(res.Anomalies, Anomaly{Name: "token-order", Ops: []Op{a.p.Complete, b.p.Complete},
				Explain: fmt.Sprintf("lock %d: holding %s got token %d (%s, completed %s), but holding %s, acquired later (%s, invoked %s), got token %d: tokens must increase",
					k, a.v.Holding, a.tok, ckOpRef(a.p), ckFmtTime(a.p.Complete.Time), b.v.Holding, ckOpRef(b.p), ckFmtTime(b.p.Invoke.Time), b.tok)})
			return n < ckMaxPerKey
		})
	}
	for _, k := range ckSortedKeys(writes) {
		n := 0
		ckRealTimeOrder(writes[k], writes[k], false, func(a, b ckTokOp) bool {
			n++
			stale := ""
			if b.v.Stale {
				stale = ", sent after its holder had seen Lost"
			}
			res.Anomalies = append(res.Anomalies, Anomaly{Name: "stale-write-accepted", Ops: []Op{a.p.Complete, b.p.Complete},
				Explain: fmt.Sprintf("lock %d: the fence accepted the write of token %d (holding %s, %s, completed %s), then the older token %d (holding %s, %s, invoked %s%s)",
					k, a.tok, a.v.Holding, ckOpRef(a.p), ckFmtTime(a.p.Complete.Time), b.tok, b.v.Holding, ckOpRef(b.p), ckFmtTime(b.p.Invoke.Time), stale)})
			return n < ckMaxPerKey
		})
	}
	for _, k := range ckSortedKeys(reads) {
		n := 0
		ckRealTimeOrder(writes[k], reads[k], false, func(a, b ckTokOp) bool {
			n++
			res.Anomalies = append(res.Anomalies, Anomaly{Name: "fence-regressed", Ops: []Op{a.p.Complete, b.p.Complete},
				Explain: fmt.Sprintf("lock %d: the fence accepted token %d (%s, completed %s), but a later read (%s) found %d",
					k, a.tok, ckOpRef(a.p), ckFmtTime(a.p.Complete.Time), ckOpRef(b.p), b.tok)})
			return n < ckMaxPerKey
		})
	}
	return ckFinish(&res)
}

// SetTimeout sets c.Timeout.
func (c *MutexChecker) SetTimeout(d time.Duration) { c.Timeout = d }
