package group

import (
	"fmt"
	"testing"

	"github.com/epochal/epochal/backend"
)

func read(rev uint64, members []string, adds ...string) backend.DirState {
	st := backend.DirState{Rev: rev}
	for _, m := range members {
		st.Entries = append(st.Entries, backend.Entry{Name: m})
	}
	for i, a := range adds {
		st.Adds = append(st.Adds, backend.Added{Name: a, Rev: rev - uint64(len(adds)-i)})
	}
	return st
}

// next builds and delivers the next event (ok false: nothing to tell).
func next(t *tracker) (Event, bool) {
	b, ok := t.build()
	if ok {
		t.delivered(b)
	}
	return b.ev, ok
}

func TestTrackerReducesPerName(t *testing.T) {
	tr := newTracker(10, []string{"a", "b"})
	// c came and went; b left; a left and came back; d joined twice and
	// is there (it was not before: one Joined).
	tr.apply(read(20, []string{"a", "d"}, "c", "a", "d", "d"))
	ev, _ := next(tr)
	want := Event{Joined: []string{"c", "d"}, Left: []string{"a", "b", "c"}}
	if fmt.Sprint(ev) != fmt.Sprint(want) {
		t.Fatalf("event %+v, want %+v", ev, want)
	}
	ev, _ = next(tr)
	if fmt.Sprint(ev) != fmt.Sprint(Event{Joined: []string{"a"}}) {
		t.Fatalf("second event %+v, want Joined [a] (it came back)", ev)
	}
	if ev, ok := next(tr); ok {
		t.Fatalf("a third event %+v", ev)
	}
	// A read older than what the tracker has is ignored.
	tr.apply(read(15, nil))
	if ev, ok := next(tr); ok {
		t.Fatalf("an event %+v from an older read", ev)
	}
}

// TestTrackerCoalescesWhileUndelivered: changes that arrive while an
// event waits are folded into what is untold, never lost or doubled.
func TestTrackerCoalescesWhileUndelivered(t *testing.T) {
	tr := newTracker(1, nil)
	tr.apply(read(2, []string{"x"}, "x"))
	b, _ := tr.build() // Joined [x], not delivered yet
	tr.apply(read(3, nil))
	tr.delivered(b) // the reader got Joined [x]; x's leave is untold
	ev, _ := next(tr)
	if fmt.Sprint(ev) != fmt.Sprint(Event{Left: []string{"x"}}) {
		t.Fatalf("event %+v, want Left [x]", ev)
	}
	tr.apply(read(5, nil, "y"))
	b, _ = tr.build() // Joined and Left [y]
	tr.apply(read(7, []string{"y"}, "y"))
	tr.delivered(b)
	ev, _ = next(tr)
	if fmt.Sprint(ev) != fmt.Sprint(Event{Joined: []string{"y"}}) {
		t.Fatalf("event %+v, want Joined [y]", ev)
	}
}

// TestTrackerMemoryStaysBounded: many members joining and leaving leave
// nothing behind once told.
func TestTrackerMemoryStaysBounded(t *testing.T) {
	tr := newTracker(0, []string{"stay"})
	rev := uint64(0)
	for i := range 5000 {
		rev += 2
		tr.apply(read(rev, []string{"stay"}, fmt.Sprintf("m%d", i)))
		if i%100 == 99 {
			for {
				if _, ok := next(tr); !ok {
					break
				}
			}
			tr.mu.Lock()
			n := len(tr.present) + len(tr.told) + len(tr.pend)
			tr.mu.Unlock()
			if n > 3 {
				t.Fatalf("after %d members came and went: %d names kept", i+1, n)
			}
		}
	}
	tr.apply(backend.DirState{Rev: rev + 1, Entries: []backend.Entry{{Name: "stay"}}, Truncated: true})
	ev, ok := next(tr)
	if !ok || !ev.Gap || len(ev.Joined)+len(ev.Left) != 0 {
		t.Fatalf("after a truncated read: %+v, %v; want an event with Gap only", ev, ok)
	}
}
