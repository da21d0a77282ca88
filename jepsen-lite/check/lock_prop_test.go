package check

import (
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// lockSim generates serial lock histories: clients acquire, write to the
// fence, release, lose their leases (then make a stale write or release
// with Lost) and die (their holding never released), on one lock.
type lockSim struct {
	b     lockHist
	bound []lockBoundary
	cert  map[string]int64 // holding -> latest invoke of an op made while live
	acqs  []int            // positions of ok acquire completions
}

// lockBoundary: after event pos, holding (if any) was live.
type lockBoundary struct {
	pos     int
	holding string
}

func genLockHistory(t *rapid.T) *lockSim {
	sim := &lockSim{cert: map[string]int64{}}
	b := &sim.b
	type client struct {
		proc    int
		holding string
		token   uint64
		state   int // 0 none, 1 live, 2 lost
		heldAt  int64
		n       int
	}
	cs := make([]*client, rapid.IntRange(1, 3).Draw(t, "clients"))
	for i := range cs {
		cs[i] = &client{proc: i * 1000}
	}
	holder := -1
	var next, fence uint64 = 1, 0
	for i, n := 0, rapid.IntRange(1, 50).Draw(t, "steps"); i < n; i++ {
		ci := rapid.IntRange(0, len(cs)-1).Draw(t, "client")
		c := cs[ci]
		switch c.state {
		case 0:
			c.n++
			h := fmt.Sprintf("c%d.%d", ci, c.n)
			if holder >= 0 {
				b.acq(c.proc, Fail, 0, h, 0)
				break
			}
			b.acq(c.proc, OK, 0, h, next)
			sim.acqs = append(sim.acqs, len(b.h)-1)
			c.holding, c.token, c.state, c.heldAt = h, next, 1, b.t
			next++
			holder = ci
		case 1:
			switch rapid.IntRange(0, 5).Draw(t, "live") {
			case 0, 1: // write
				b.write(c.proc, OK, 0, c.holding, c.token, fence, -1)
				fence = c.token
				c.heldAt = b.t - 10
				sim.cert[c.holding] = c.heldAt
			case 2: // release
				typ := OK
				if rapid.IntRange(0, 4).Draw(t, "info") == 0 {
					typ = Info
				}
				b.rel(c.proc, typ, 0, c.holding, c.token, false, -1)
				sim.cert[c.holding] = b.t - 10
				c.state, holder = 0, -1
				if typ == Info {
					c.proc++
				}
			case 3, 4: // the lease runs out: anyone may take the lock
				c.state, holder = 2, -1
			case 5: // the process dies holding it
				c.state, holder = 0, -1
				c.proc++
			}
		case 2:
			if rapid.Bool().Draw(t, "stale") {
				typ := OK
				if c.token < fence {
					typ = Fail
				} else {
					fence = c.token
				}
				b.write(c.proc, typ, 0, c.holding, c.token, fence, c.heldAt)
				break
			}
			b.rel(c.proc, OK, 0, c.holding, c.token, true, c.heldAt)
			c.state = 0
		}
		if holder >= 0 {
			sim.bound = append(sim.bound, lockBoundary{len(b.h) - 1, cs[holder].holding})
		}
	}
	b.read(9999, 0, fence)
	return sim
}

// Serial executions with lost leases, dead holders and unknown releases
// pass both checkers.
func TestLockPropSerialValid(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sim := genLockHistory(t)
		m, f := checkLock(sim.b.h)
		if !m.Valid || len(m.Anomalies) > 0 || !f.Valid || len(f.Anomalies) > 0 {
			t.Fatalf("%s\n%s", ckDump(m), ckDump(f))
		}
	})
}

// A second holder slipped in while a live holder certainly holds the lock
// (it certifies later) is a double holder.
func TestLockPropIntruderCaught(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sim := genLockHistory(t)
		var ok []lockBoundary
		for _, bd := range sim.bound {
			if sim.cert[bd.holding] > sim.b.h[bd.pos].Time {
				ok = append(ok, bd)
			}
		}
		if len(ok) == 0 {
			t.Skip("no holder certified after a boundary")
		}
		bd := ok[rapid.IntRange(0, len(ok)-1).Draw(t, "boundary")]
		t0 := sim.b.h[bd.pos].Time
		var x lockHist
		for _, step := range []func(){
			func() { x.acq(5000, OK, 0, "x.1", 1000) },
			func() { x.rel(5000, OK, 0, "x.1", 1000, false, -1) },
		} {
			step()
		}
		for i := range x.h {
			x.h[i].Time = t0 + 1 + int64(i) // within the gap of 10 after t0
		}
		x.h[3] = x.h[3].WithValue(LockValue{K: 0, Holding: "x.1", Token: 1000, HeldAt: x.h[2].Time})
		h := slices.Concat(sim.b.h[:bd.pos+1], x.h, sim.b.h[bd.pos+1:])
		for i := range h {
			h[i].Index = i
		}
		m := NewMutexChecker().Check(h)
		if _, found := ckFind(m, "double-holder"); m.Valid || !found {
			t.Fatalf("intruder after op %d (holding %s) missed: %s", bd.pos, bd.holding, ckDump(m))
		}
	})
}

// A token equal to the previous successful acquire's is caught.
func TestLockPropTokenReuseCaught(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sim := genLockHistory(t)
		if len(sim.acqs) < 2 {
			t.Skip("fewer than 2 holdings")
		}
		i := rapid.IntRange(1, len(sim.acqs)-1).Draw(t, "acquire")
		h := slices.Clone(sim.b.h)
		var prev, cur LockValue
		_ = h[sim.acqs[i-1]].Decode(&prev)
		_ = h[sim.acqs[i]].Decode(&cur)
		cur.Token = prev.Token
		h[sim.acqs[i]] = h[sim.acqs[i]].WithValue(cur)
		f := NewFencingChecker().Check(h)
		if _, found := ckFind(f, "token-order"); f.Valid || !found {
			t.Fatalf("reused token at op %d missed: %s", sim.acqs[i], ckDump(f))
		}
	})
}
