package check

import (
	"testing"

	"pgregory.net/rapid"
)

// Serial register executions, with failed ops (not applied) and info ops
// (applied or not), are linearizable; changing the value of a read that
// no info op could explain makes them not.
func TestLinearPropSerial(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var b ckHist
		state := map[int]*int{}
		infos := rapid.Bool().Draw(t, "infos")
		type readAt struct{ pos, k int }
		var reads []readAt
		proc := 0
		for i, n := 0, rapid.IntRange(1, 40).Draw(t, "ops"); i < n; i++ {
			k := rapid.IntRange(0, 2).Draw(t, "k")
			v := rapid.IntRange(0, 3).Draw(t, "v")
			typ := OK
			if o := rapid.IntRange(0, 9).Draw(t, "outcome"); o == 0 {
				typ = Fail
			} else if o == 1 && infos {
				typ = Info
			}
			apply := typ == OK || (typ == Info && rapid.Bool().Draw(t, "applied"))
			switch rapid.IntRange(0, 2).Draw(t, "f") {
			case 0:
				if typ == Info {
					typ = Fail // reads fail, they are never info
				}
				out := RegisterValue{K: k}
				if p := state[k]; p != nil {
					out.V, out.Found = *p, true
				}
				regOp(&b, proc, typ, "read", RegisterValue{K: k}, out)
				if typ == OK {
					reads = append(reads, readAt{len(b.h) - 1, k})
				}
			case 1:
				if apply {
					state[k] = &v
				}
				regOp(&b, proc, typ, "write", RegisterValue{K: k, V: v}, RegisterValue{K: k, V: v})
			case 2:
				old := rapid.IntRange(0, 3).Draw(t, "old")
				if p := state[k]; p == nil || *p != old {
					if typ == OK {
						typ = Fail // the compare failed
					}
					apply = false
				}
				if apply {
					state[k] = &v
				}
				regOp(&b, proc, typ, "cas", RegisterValue{K: k, Old: old, New: v}, RegisterValue{K: k, Old: old, New: v})
			}
			if typ == Info {
				proc++
			}
		}
		c := NewLinearChecker()
		if r := c.Check(b.h); !r.Valid || len(r.Anomalies) > 0 {
			t.Fatal(ckDump(r))
		}
		if infos || len(reads) == 0 {
			return
		}
		// Without info ops, a read of a value no one wrote is caught.
		rd := reads[rapid.IntRange(0, len(reads)-1).Draw(t, "read")]
		h := append([]Op(nil), b.h...)
		h[rd.pos] = h[rd.pos].WithValue(RegisterValue{K: rd.k, V: 100, Found: true})
		r := c.Check(h)
		if a, ok := ckFind(r, "nonlinearizable"); r.Valid || !ok || a.Ops[len(a.Ops)-1].Index != rd.pos {
			t.Fatalf("corrupted read op %d: %s", rd.pos, ckDump(r))
		}
	})
}

// Serial counter executions are always in range.
func TestCounterPropSerial(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var b ckHist
		sum := map[int]int{}
		proc := 0
		for i, n := 0, rapid.IntRange(1, 40).Draw(t, "ops"); i < n; i++ {
			k := rapid.IntRange(0, 1).Draw(t, "k")
			if rapid.Bool().Draw(t, "read") {
				regOpC(&b, proc, OK, "read", CounterValue{K: k}, CounterValue{K: k, V: sum[k]})
				continue
			}
			d := rapid.IntRange(0, 5).Draw(t, "delta")
			switch rapid.IntRange(0, 4).Draw(t, "outcome") {
			case 0:
				regOpC(&b, proc, Fail, "add", CounterValue{K: k, Delta: d}, CounterValue{K: k, Delta: d})
			case 1:
				if rapid.Bool().Draw(t, "applied") {
					sum[k] += d
				}
				regOpC(&b, proc, Info, "add", CounterValue{K: k, Delta: d}, CounterValue{K: k, Delta: d})
				proc++
			default:
				sum[k] += d
				regOpC(&b, proc, OK, "add", CounterValue{K: k, Delta: d}, CounterValue{K: k, Delta: d})
			}
		}
		if r := NewCounterChecker().Check(b.h); !r.Valid || len(r.Anomalies) > 0 {
			t.Fatal(ckDump(r))
		}
	})
}

func regOpC(b *ckHist, p int, typ Type, f string, in, out CounterValue) {
	b.inv(p, f, in)
	b.done(typ, p, f, out)
}
