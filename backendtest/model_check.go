package backendtest

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/epochal/epochal/clock"
)

// checkModel checks a recorded model run against snapshot isolation with
// first-committer-wins and returns every violation found, each a sentence
// naming the transactions, attempts, points and values involved. It is a
// plain function of the history so that it can be shown to fail on
// histories of a deliberately broken engine.
//
// What it checks (the invariants of docs/design.md):
//   - history shape: each ref's points strictly decrease, the oldest
//     version is the initial value at point 0 with no txn id;
//   - I1 atomic visibility: a committed writing transaction's committing
//     attempt has exactly one version per ref it wrote, all at one commit
//     point, holding the values it set; no version carries the id of an
//     attempt that did not commit (aborted, retried, unknown);
//   - I2 snapshot reads: every read of every attempt (retried and aborted
//     ones included) returns the attempt's own write if it made one, else
//     the newest version at or before the attempt's read point; so no value
//     of an attempt that did not commit is ever read;
//   - I3 first committer wins: no version of a ref lands strictly between
//     the read point and the commit point of a committed transaction that
//     set or ensured that ref (a lost update when it had read it); and of
//     a transaction that set a ref and one that only ensured it, one saw
//     the other's commit, as docs/design.md's I3 reads ("of two concurrent
//     attempts that Alter, RefSet or Ensure the same ref, at most one
//     commits"). This is stricter than Clojure, whose ensure keeps writers
//     off only until the ensurer commits;
//   - commutes: each counter version adds its transaction's increments to
//     the previous one, and the final value is the initial value plus the
//     increments of all committed transactions;
//   - I5 monotonic points: a Dosync that began after another returned reads
//     at or after that one's read point and commit point.
func checkModel(h *modelHistory) []string {
	c := &modelChecker{h: h, attempts: map[string]attemptRef{}, written: map[string]attemptRef{}, cp: map[string]clock.Point{}}
	c.index()
	c.shape(h.Counter)
	for _, r := range h.Refs {
		c.shape(r)
	}
	c.atomicVisibility()
	c.snapshotReads()
	c.firstCommitterWins()
	c.commutes()
	c.monotonicPoints()
	c.atoms()
	c.watches()
	return c.out
}

type attemptRef struct {
	t *modelTxnRec
	a *modelAttempt
}

type modelChecker struct {
	h        *modelHistory
	out      []string
	attempts map[string]attemptRef // attempt id -> attempt
	written  map[string]attemptRef // value set -> the attempt that set it
	cp       map[string]clock.Point
}

func (c *modelChecker) violation(format string, args ...any) {
	c.out = append(c.out, fmt.Sprintf(format, args...))
}

// isCommitting reports whether a is the attempt that committed t.
func isCommitting(t *modelTxnRec, a *modelAttempt) bool {
	return t.Status == txnCommitted && a == t.last()
}

func (c *modelChecker) index() {
	for _, t := range c.h.Txns {
		switch t.Status {
		case txnFailed:
			c.violation("Dosync %s failed (it must commit or return the planned abort): %v", t.Name, t.Err)
		case txnCommitted, txnAborted:
			if l := t.last(); l == nil || !l.Done {
				c.violation("Dosync %s ended with status %s but its function never ran to its end", t.Name, t.status())
			}
		}
		for _, a := range t.Attempts {
			if prev, dup := c.attempts[a.ID]; dup {
				c.violation("txn id %s was used by two attempts: %s and %s", a.ID, prev.desc(), attemptRef{t, a}.desc())
			}
			c.attempts[a.ID] = attemptRef{t, a}
			for _, v := range a.Wrote {
				c.written[v] = attemptRef{t, a}
			}
		}
	}
}

func (t *modelTxnRec) status() string {
	switch t.Status {
	case txnCommitted:
		return "committed"
	case txnAborted:
		return "aborted"
	}
	return "failed"
}

// desc names an attempt: "c1-t2 attempt #0 (id, RP 12, committed)".
func (w attemptRef) desc() string {
	state := "retried"
	switch {
	case isCommitting(w.t, w.a):
		state = "committed"
	case w.a == w.t.last():
		state = w.t.status()
	}
	return fmt.Sprintf("%s attempt #%d (txn %s, RP %d, %s)", w.t.Name, w.a.N, w.a.ID, w.a.RP, state)
}

// describeValue says who wrote a string value.
func (c *modelChecker) describeValue(r modelRefHist, v string) string {
	if v == r.Initial {
		return fmt.Sprintf("%q (the initial value)", v)
	}
	w, ok := c.written[v]
	if !ok {
		return fmt.Sprintf("%q (a value nobody wrote)", v)
	}
	if !isCommitting(w.t, w.a) {
		return fmt.Sprintf("%q (set by %s, which did not commit: its values must never be seen)", v, w.desc())
	}
	return fmt.Sprintf("%q (set by %s)", v, w.desc())
}

// shape checks that points strictly decrease and the oldest version is the
// initial one.
func (c *modelChecker) shape(r modelRefHist) {
	vs := r.Versions
	if len(vs) == 0 {
		c.violation("%s (%s): History is empty", r.Label, r.Name)
		return
	}
	for i := 1; i < len(vs); i++ {
		if vs[i].Point >= vs[i-1].Point {
			c.violation("%s: History points do not strictly decrease: version %d is at point %d (txn %s), the one before it at %d (txn %s)",
				r.Label, i, vs[i].Point, vs[i].Txn, vs[i-1].Point, vs[i-1].Txn)
		}
	}
	first := vs[len(vs)-1]
	if first.Point != 0 || first.Txn != "" || first.Value != r.Initial {
		c.violation("%s: the oldest version is %q at point %d by txn %q, want the initial value %q at point 0 with no txn",
			r.Label, first.Value, first.Point, first.Txn, r.Initial)
	}
	for _, v := range vs[:len(vs)-1] {
		if v.Point == 0 || v.Txn == "" {
			c.violation("%s: version %q at point %d has txn %q: only the initial value may be at point 0 or lack a txn", r.Label, v.Value, v.Point, v.Txn)
		}
	}
}

// atomicVisibility checks I1 and fills c.cp.
func (c *modelChecker) atomicVisibility() {
	type found struct {
		ref   string
		point clock.Point
	}
	byTxn := map[string][]found{}
	all := append(slices.Clone(c.h.Refs), c.h.Counter)
	for ri, r := range all {
		isCounter := ri == len(all)-1
		for _, v := range r.Versions {
			if v.Txn == "" {
				continue
			}
			byTxn[v.Txn] = append(byTxn[v.Txn], found{r.Label, v.Point})
			w, ok := c.attempts[v.Txn]
			switch {
			case !ok:
				c.violation("I1: %s has version %q at point %d by txn %s, which no recorded attempt had", r.Label, v.Value, v.Point, v.Txn)
				continue
			case !isCommitting(w.t, w.a):
				c.violation("I1: %s has version %q at point %d by %s: only committing attempts may leave versions", r.Label, v.Value, v.Point, w.desc())
				continue
			}
			if isCounter {
				if w.a.Delta == 0 {
					c.violation("I1: ctr has version %d at point %d by %s, which did not commute it", v.N, v.Point, w.desc())
				}
				continue
			}
			if want, set := w.a.Writes[ri]; !set {
				c.violation("I1: %s has version %q at point %d by %s, which did not set it", r.Label, v.Value, v.Point, w.desc())
			} else if v.Value != want {
				c.violation("I1: %s has version %q at point %d by %s, which set it to %q last", r.Label, v.Value, v.Point, w.desc(), want)
			}
		}
	}
	for _, t := range c.h.Txns {
		a := t.last()
		if t.Status != txnCommitted || a == nil {
			continue
		}
		vs := byTxn[a.ID]
		w := attemptRef{t, a}
		if !a.writes() {
			if len(vs) > 0 {
				c.violation("I1: %s wrote nothing but has versions %v", w.desc(), vs)
			}
			continue
		}
		var want []string
		for ri := range c.h.Refs {
			if _, ok := a.Writes[ri]; ok {
				want = append(want, c.h.Refs[ri].Label)
			}
		}
		if a.Delta > 0 {
			want = append(want, "ctr")
		}
		var got []string
		points := map[clock.Point]bool{}
		for _, f := range vs {
			got = append(got, f.ref)
			points[f.point] = true
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			c.violation("I1: %s wrote %v but its versions are on %v (all at %v)", w.desc(), want, got, vs)
		}
		if len(points) > 1 {
			c.violation("I1: %s has versions at more than one point: %v (all its writes must appear at one commit point)", w.desc(), vs)
		}
		if len(vs) > 0 {
			c.cp[a.ID] = vs[0].point
			if vs[0].point <= a.RP {
				c.violation("I1: %s committed at point %d, not after its read point %d", w.desc(), vs[0].point, a.RP)
			}
		}
	}
}

// pickAt returns the newest version at or before p.
func pickAt(r modelRefHist, p clock.Point) (modelVersion, bool) {
	for _, v := range r.Versions {
		if v.Point <= p {
			return v, true
		}
	}
	return modelVersion{}, false
}

// snapshotReads checks I2 for every read of every attempt.
func (c *modelChecker) snapshotReads() {
	for _, t := range c.h.Txns {
		for _, a := range t.Attempts {
			w := attemptRef{t, a}
			for _, rd := range a.Reads {
				r := c.h.Refs[rd.Ref]
				what := "Get"
				if rd.Ensure {
					what = "Ensure"
				}
				if rd.Own != "" {
					if rd.Value != rd.Own {
						c.violation("I2: %s %s(%s) at op %d returned %s, not its own earlier write %q",
							w.desc(), what, r.Label, rd.Op, c.describeValue(r, rd.Value), rd.Own)
					}
					continue
				}
				v, ok := pickAt(r, a.RP)
				if !ok {
					c.violation("I2: %s %s(%s) at op %d returned %s, but History has no version at or before RP %d",
						w.desc(), what, r.Label, rd.Op, c.describeValue(r, rd.Value), a.RP)
					continue
				}
				if rd.Value != v.Value {
					c.violation("I2: %s %s(%s) at op %d returned %s, but the newest version at or before RP %d is %q at point %d by txn %q",
						w.desc(), what, r.Label, rd.Op, c.describeValue(r, rd.Value), a.RP, v.Value, v.Point, v.Txn)
				}
			}
		}
	}
}

// firstCommitterWins checks I3.
func (c *modelChecker) firstCommitterWins() {
	type holder struct {
		w   attemptRef
		cp  clock.Point
		set bool // set (else only ensured)
	}
	for ri, r := range c.h.Refs {
		var hs []holder
		for _, t := range c.h.Txns {
			a := t.last()
			if a == nil || t.Status != txnCommitted {
				continue
			}
			cp, ok := c.cp[a.ID]
			if !ok {
				continue // wrote nothing: no commit point
			}
			_, set := a.Writes[ri]
			if !set && !a.Ensured[ri] {
				continue
			}
			hs = append(hs, holder{attemptRef{t, a}, cp, set})
			// No version of r by another may land in (RP, CP).
			for _, v := range r.Versions {
				if v.Txn == a.ID || v.Point <= a.RP || v.Point >= cp {
					continue
				}
				how := "ensured"
				if set {
					how = "set"
				}
				lost := ""
				if set && readBeforeWrite(a, ri) {
					lost = " (a lost update: it read " + r.Label + " before overwriting it)"
				}
				by := "txn " + v.Txn
				if o, ok := c.attempts[v.Txn]; ok {
					by = o.desc()
				}
				c.violation("I3 first committer wins: %s %s %s and committed at point %d, but %s committed %s = %q at point %d, after its read point%s",
					attemptRef{t, a}.desc(), how, r.Label, cp, by, r.Label, v.Value, v.Point, lost)
			}
		}
		// A writer and an ensurer of one ref: one of them must have seen
		// the other's commit. (Writer/writer pairs are covered above, as
		// both left versions, and so is a writer committing inside an
		// ensurer's window; ensurer/ensurer pairs share the ref freely.)
		for _, x := range hs {
			for _, y := range hs {
				if !x.set || y.set || x.w.a == y.w.a {
					continue
				}
				if x.cp <= y.w.a.RP || y.cp <= x.w.a.RP {
					continue
				}
				if y.cp < x.cp { // else x committed in y's window: reported above
					c.violation("I3 ensure: %s ensured %s and committed at point %d, inside the window of %s, which set %s and committed at point %d: neither saw the other",
						y.w.desc(), r.Label, y.cp, x.w.desc(), r.Label, x.cp)
				}
			}
		}
	}
}

// readBeforeWrite reports whether a read ref ri (not its own write) before
// setting it.
func readBeforeWrite(a *modelAttempt, ri int) bool {
	for _, rd := range a.Reads {
		if rd.Ref == ri && rd.Own == "" {
			return true
		}
	}
	return false
}

// commutes checks that no increment is lost or applied twice.
func (c *modelChecker) commutes() {
	vs := c.h.Counter.Versions
	if len(vs) == 0 {
		return
	}
	for i := len(vs) - 2; i >= 0; i-- {
		prev, v := vs[i+1], vs[i]
		w, ok := c.attempts[v.Txn]
		if !ok {
			continue // reported by atomicVisibility
		}
		if v.N != prev.N+w.a.Delta {
			c.violation("commute: ctr went from %d (point %d) to %d (point %d) by %s, whose increments add %d: want %d",
				prev.N, prev.Point, v.N, v.Point, w.desc(), w.a.Delta, prev.N+w.a.Delta)
		}
	}
	want := c.h.CounterIni
	var who []string
	for _, t := range c.h.Txns {
		if a := t.last(); t.Status == txnCommitted && a != nil && a.Delta > 0 {
			want += a.Delta
			who = append(who, fmt.Sprintf("%s +%d", t.Name, a.Delta))
		}
	}
	if got := vs[0].N; got != want {
		c.violation("commute: final ctr is %d, want %d = %d + the increments of the committed transactions [%s]",
			got, want, c.h.CounterIni, strings.Join(who, ", "))
	}
}

// monotonicPoints checks I5: a Dosync that began after another returned
// reads at or after that one's read point and commit point, in every
// attempt. (Within one client this is "successive transactions"; the STM
// is one process, so it holds across clients too.)
func (c *modelChecker) monotonicPoints() {
	for _, x := range c.h.Txns {
		xa := x.last()
		if xa == nil {
			continue
		}
		floor, what := xa.RP, "read point"
		if cp, ok := c.cp[xa.ID]; ok && x.Status == txnCommitted && cp > floor {
			floor, what = cp, "commit point"
		}
		for _, y := range c.h.Txns {
			if x.End >= y.Start {
				continue
			}
			for _, ya := range y.Attempts {
				if ya.RP < floor {
					c.violation("I5: %s read at %d, below the %s %d of %s, which returned before %s began",
						attemptRef{y, ya}.desc(), ya.RP, what, floor, attemptRef{x, xa}.desc(), y.Name)
					break
				}
			}
		}
	}
}

// atoms checks the atom swaps done between transactions: each atom ends at
// its number of swaps (none lost or applied twice); and a swap of the atom
// in the coordinator is a commit of the coordinator's clock, so a Dosync
// that began after it returned reads at or after its point (I5). (A swap
// on the second backend is at a point of another clock, which must never
// move a read point: if it did, transactions would read beyond commits
// that come later, which the checks of I1 and I2 report.)
func (c *modelChecker) atoms() {
	for i := 1; i <= 2; i++ {
		swaps := c.h.Swaps[i]
		if len(swaps) == 0 {
			continue
		}
		if c.h.Atoms[i] != len(swaps) {
			c.violation("atom %d: final value %d after %d swaps that returned", i, c.h.Atoms[i], len(swaps))
		}
		if i != 1 {
			continue
		}
		for _, sw := range swaps {
			for _, y := range c.h.Txns {
				if y.Start < sw.At {
					continue
				}
				for _, ya := range y.Attempts {
					if ya.RP < sw.Point {
						c.violation("I5: %s read at %d, below the point %d of c%d's swap of the coordinator's atom (to %d), which returned before %s began",
							attemptRef{y, ya}.desc(), ya.RP, sw.Point, sw.Client, sw.Value, y.Name)
						break
					}
				}
			}
		}
	}
}

// watches checks the clients' watches on x0 (I6: once per committed
// change, in commit order). A watch is told of a contiguous run of x0's
// versions, each with the one before it as old, and never of anything
// else (history is never trimmed in model runs: a gap notice is wrong). Its
// run starts no later than the first version committed by a Dosync that
// began after AddWatch returned (AddWatch fixes the start first), and for a
// watch still installed at the end it reaches the newest version. (A watch
// that was removed may stop anywhere: RemoveWatch does not wait.)
func (c *modelChecker) watches() {
	if len(c.h.Watches) == 0 {
		return
	}
	r := c.h.Refs[0]
	var order []string // x0's values, oldest first
	index := map[string]int{}
	for i := len(r.Versions) - 1; i >= 0; i-- {
		index[r.Versions[i].Value] = len(order)
		order = append(order, r.Versions[i].Value)
	}
	// first: the index of the first version of x0 committed by a Dosync
	// that began after t.
	first := func(t int64) int {
		for i := 1; i < len(order); i++ {
			w, ok := c.written[order[i]]
			if ok && w.t.Start > t {
				return i
			}
		}
		return -1
	}
	keys := slices.Sorted(maps.Keys(c.h.Watches))
	for _, key := range keys {
		w := c.h.Watches[key]
		ds := w.deliveries()
		if w.Gaps > 0 {
			c.violation("watch %s: %d gap notices, but no version of x0 was trimmed", key, w.Gaps)
		}
		prev := -1
		for _, d := range ds {
			i, ok := index[d[1]]
			switch {
			case !ok || i == 0:
				c.violation("watch %s: told of %q, not a committed version of x0", key, d[1])
				continue
			case order[i-1] != d[0]:
				c.violation("watch %s: told of %q with old value %q, but the version before it is %q", key, d[1], d[0], order[i-1])
			case prev >= 0 && i != prev+1:
				c.violation("watch %s: told of %q after %q: versions in between skipped, or out of order (I6)", key, d[1], order[prev])
			}
			prev = i
		}
		want := first(w.Added)
		switch {
		case want < 0:
		case len(ds) == 0 && w.Removed == 0:
			c.violation("watch %s: added at %d, never told of %q, committed by a Dosync that began after AddWatch returned", key, w.Added, order[want])
		case len(ds) > 0 && index[ds[0][1]] > want:
			c.violation("watch %s: added at %d, first told of %q, but %q came before it, committed by a Dosync that began after AddWatch returned",
				key, w.Added, ds[0][1], order[want])
		}
		if w.Removed == 0 && len(order) > 1 && (len(ds) == 0 || ds[len(ds)-1][1] != order[len(order)-1]) {
			last := "nothing"
			if len(ds) > 0 {
				last = fmt.Sprintf("%q", ds[len(ds)-1][1])
			}
			if want >= 0 || len(ds) > 0 {
				c.violation("watch %s: still installed at the end, last told of %s, not of x0's newest version %q", key, last, order[len(order)-1])
			}
		}
	}
}
