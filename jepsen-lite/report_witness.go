package jepsenlite

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/epochal/epochal/jepsen-lite/check"
)

// rptListKeep is how many elements a shortened list keeps at each end;
// a list longer than 2*rptListKeep+2 elements is shortened.
const rptListKeep = 6

// rptMaxValue is the most characters of an operation's value the report
// shows (after its lists are shortened).
const rptMaxValue = 600

var (
	rptSpaceList = regexp.MustCompile(`\[(?:-?\d+ ){14,}-?\d+\]`)
	rptCommaList = regexp.MustCompile(`\[(?:-?\d+,){14,}-?\d+\]`)
)

// rptShortLists shortens every list of more than 2*rptListKeep+2
// integers in s, written as [1 2 3] (sep " ") or [1,2,3] (sep ","), to
// its first and last rptListKeep elements and its length.
func rptShortLists(s, sep string) string {
	re := rptSpaceList
	if sep == "," {
		re = rptCommaList
	}
	return re.ReplaceAllStringFunc(s, func(l string) string {
		els := strings.Split(l[1:len(l)-1], sep)
		if len(els) <= 2*rptListKeep+2 {
			return l
		}
		return fmt.Sprintf("[%s%s…%s%s] (%d elements)", strings.Join(els[:rptListKeep], sep), sep, sep,
			strings.Join(els[len(els)-rptListKeep:], sep), len(els))
	})
}

// ShortLists is s (an anomaly's explanation, a witness's operation in
// EDN) as a terminal shows it: every list of integers written [1 2 3]
// that is longer than 14 elements shortened to its first and last 6
// and its length, as report.html shows them (results.json keeps them
// whole).
func ShortLists(s string) string { return rptShortLists(s, " ") }

// rptShortValue is an operation's JSON value as the report shows it:
// long lists shortened, the whole cut at rptMaxValue characters.
func rptShortValue(v json.RawMessage) string {
	s := rptShortLists(string(v), ",")
	if len(s) > rptMaxValue {
		s = s[:rptMaxValue] + fmt.Sprintf(" … (%d more characters)", len(s)-rptMaxValue)
	}
	return s
}

// rptFmtInts writes at most n integers of l as [a b c …(+k more)].
func rptFmtInts(l []int, n int) string {
	var parts []string
	for _, v := range l[:min(n, len(l))] {
		parts = append(parts, strconv.Itoa(v))
	}
	if len(l) > n {
		parts = append(parts, fmt.Sprintf("… (+%d more)", len(l)-n))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// rptReadDiffs compares the list reads of a witness's operations
// (list-append transactions, T1, T2, ... in the witness's order): for
// each key that two of them read differently, where the two reads first
// differ (the length of their common prefix, its last elements) and
// their tails from there, shortened. Nothing for other values.
func rptReadDiffs(ops []check.Op) []string {
	type read struct {
		t int // T number
		o check.Op
		l []int
	}
	byKey := map[int][]read{}
	var keys []int
	for i, o := range ops {
		var mops []check.Mop
		if len(o.Value) == 0 || o.Value[0] != '[' || json.Unmarshal(o.Value, &mops) != nil {
			continue
		}
		for _, m := range mops {
			if m.F != "r" || m.R == nil {
				continue
			}
			if _, ok := byKey[m.K]; !ok {
				keys = append(keys, m.K)
			}
			byKey[m.K] = append(byKey[m.K], read{i + 1, o, m.R})
		}
	}
	slices.Sort(keys)
	const tail = 8
	var out []string
	for _, k := range keys {
		rs := byKey[k]
	pairs:
		for i := range rs {
			for j := i + 1; j < len(rs); j++ {
				a, b := rs[i], rs[j]
				if a.t == b.t || slices.Equal(a.l, b.l) {
					continue
				}
				n := 0
				for n < len(a.l) && n < len(b.l) && a.l[n] == b.l[n] {
					n++
				}
				var d strings.Builder
				fmt.Fprintf(&d, "key %d: T%d (op %d) read %d elements, T%d (op %d) %d; ", k, a.t, a.o.Index, len(a.l), b.t, b.o.Index, len(b.l))
				switch {
				case n == 0 && (len(a.l) == 0 || len(b.l) == 0):
					// One read is empty: a prefix of the other, said below.
					d.WriteString("they share no element")
				case n == 0:
					d.WriteString("they differ from the first element")
				default:
					end := strings.Trim(rptFmtInts(a.l[max(0, n-3):n], 3), "[]")
					if n > 3 {
						end = "… " + end
					}
					fmt.Fprintf(&d, "they agree on the first %d (%s)", n, end)
				}
				switch {
				case n == len(a.l):
					fmt.Fprintf(&d, "; T%d's read is a prefix of T%d's, which goes on %s", a.t, b.t, rptFmtInts(b.l[n:], tail))
				case n == len(b.l):
					fmt.Fprintf(&d, "; T%d's read is a prefix of T%d's, which goes on %s", b.t, a.t, rptFmtInts(a.l[n:], tail))
				default:
					fmt.Fprintf(&d, "; then T%d has %s, T%d has %s", a.t, rptFmtInts(a.l[n:], tail), b.t, rptFmtInts(b.l[n:], tail))
				}
				out = append(out, d.String())
				break pairs // one pair per key
			}
		}
	}
	return out
}

// rptMark is a failing anomaly marked on the charts.
type rptMark struct {
	t     int64 // its witness's earliest time, ns
	id    string
	label string
}

// rptMaxMarks is the most anomalies marked on the charts.
const rptMaxMarks = 500

// rptAnomalyID is the HTML id of checker ci's anomaly i.
func rptAnomalyID(ci, i int) string { return fmt.Sprintf("anomaly-%d-%d", ci, i+1) }

// rptMarks lists the failing anomalies (neither allowed nor unknown) with
// a witness, at the earliest time of its operations.
func rptMarks(results []check.Result) []rptMark {
	var marks []rptMark
	for ci, r := range results {
		for i, an := range r.Anomalies {
			if an.Allowed || an.Unknown || len(an.Ops) == 0 || len(marks) == rptMaxMarks {
				continue
			}
			t := an.Ops[0].Time
			for _, o := range an.Ops {
				t = min(t, o.Time)
			}
			marks = append(marks, rptMark{t: t, id: rptAnomalyID(ci, i), label: fmt.Sprintf("%s #%d %s", r.Checker, i+1, an.Name)})
		}
	}
	return marks
}

// rptMarksCaption says what the red marks are, if there are any.
func rptMarksCaption(marks []rptMark) string {
	if len(marks) == 0 {
		return ""
	}
	s := fmt.Sprintf(" Red triangles on the top edge mark the %d failing anomalies at the time of their witnesses' first operation (each links to it)", len(marks))
	if len(marks) == rptMaxMarks {
		s += fmt.Sprintf("; only the first %d are marked", rptMaxMarks)
	}
	return s + "."
}
