package group

import (
	"slices"
	"sync"

	"github.com/epochal/epochal/backend"
)

// tracker follows a group's membership from read to read and turns it
// into events for one reader, coalesced while the reader is slow.
//
// Per name it counts the joins and leaves (transitions) the reader has
// not been told yet. A read at revision R' after one at R gives the
// members at R' and the joins in (R, R']: a name with k joins went
// through 2k-1 transitions between them, plus a leave first if it was a
// member at R and a leave last if it is not at R'; with no join, one
// transition if its presence changed. Transitions alternate, starting
// from what the reader was told, so an event tells them in reduced form:
// an odd count ends opposite to what the reader knows (Joined, or Left);
// an even one from absent is Joined and Left (came and went); an even one
// from present is Left now and Joined in the next event (left and came
// back). Memory: the names present, or with something untold.
type tracker struct {
	mu      sync.Mutex
	rev     uint64          // the revision of the newest read
	present map[string]bool // the members at rev
	told    map[string]bool // the members the reader has been told of
	pend    map[string]int  // transitions the reader has not been told
	gaps    int             // reads that found the log truncated
	toldGap int             // gaps the reader has been told of
	kick    chan struct{}   // something new to tell
}

// newTracker starts at revision rev with the members the reader knows.
func newTracker(rev uint64, members []string) *tracker {
	t := &tracker{rev: rev, present: make(map[string]bool), told: make(map[string]bool),
		pend: make(map[string]int), kick: make(chan struct{}, 1)}
	for _, m := range members {
		t.present[m], t.told[m] = true, true
	}
	return t
}

func (t *tracker) revision() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rev
}

// apply takes a read (with the joins after t's revision, if it asked).
func (t *tracker) apply(st backend.DirState) {
	t.mu.Lock()
	if st.Rev < t.rev {
		t.mu.Unlock()
		return // older than what it has (cannot happen with a sane backend)
	}
	now := make(map[string]bool, len(st.Entries))
	for _, e := range st.Entries {
		now[e.Name] = true
	}
	joins := make(map[string]int)
	for _, a := range st.Adds {
		joins[a.Name]++
	}
	changed := false
	count := func(x string) {
		k, was, is := joins[x], t.present[x], now[x]
		n := 0
		switch {
		case k > 0:
			n = 2*k - 1
			if was {
				n++
			}
			if !is {
				n++
			}
		case was != is:
			n = 1
		}
		if n > 0 {
			t.pend[x] += n
			changed = true
		}
	}
	for x := range t.present {
		count(x)
	}
	for x := range now {
		if !t.present[x] {
			count(x)
		}
	}
	for x := range joins {
		if !t.present[x] && !now[x] {
			count(x)
		}
	}
	if st.Truncated {
		t.gaps++
		changed = true
	}
	t.present, t.rev = now, st.Rev
	t.mu.Unlock()
	if changed {
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
}

// built is an event and what telling it consumes.
type built struct {
	ev   Event
	used map[string]int  // transitions told, per name
	told map[string]bool // the reader's knowledge after it
	gaps int
}

// build makes the next event from what is untold; ok false if nothing is.
func (t *tracker) build() (b built, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b = built{used: make(map[string]int), told: make(map[string]bool), gaps: t.gaps}
	for x, n := range t.pend {
		switch {
		case n == 0:
			continue
		case t.told[x] && n%2 == 1: // gone
			b.ev.Left = append(b.ev.Left, x)
			b.used[x], b.told[x] = n, false
		case t.told[x]: // left and came back: Left now, Joined next
			b.ev.Left = append(b.ev.Left, x)
			b.used[x], b.told[x] = n-1, false
		case n%2 == 1: // joined
			b.ev.Joined = append(b.ev.Joined, x)
			b.used[x], b.told[x] = n, true
		default: // came and went
			b.ev.Joined = append(b.ev.Joined, x)
			b.ev.Left = append(b.ev.Left, x)
			b.used[x], b.told[x] = n, false
		}
	}
	b.ev.Gap = t.gaps > t.toldGap
	slices.Sort(b.ev.Joined)
	slices.Sort(b.ev.Left)
	return b, len(b.used) > 0 || b.ev.Gap
}

// delivered records that the reader has b's event.
func (t *tracker) delivered(b built) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for x, n := range b.used {
		t.pend[x] -= n
		if t.pend[x] == 0 {
			delete(t.pend, x)
		}
		if b.told[x] {
			t.told[x] = true
		} else {
			delete(t.told, x)
		}
	}
	t.toldGap = b.gaps
}

// send delivers events on out until stop is closed: the untold, rebuilt
// whenever something new comes while the reader keeps it waiting.
func (t *tracker) send(out chan<- Event, stop <-chan struct{}) {
	for {
		b, ok := t.build()
		if !ok {
			select {
			case <-t.kick:
				continue
			case <-stop:
				return
			}
		}
		select {
		case out <- b.ev:
			t.delivered(b)
		case <-t.kick:
		case <-stop:
			return
		}
	}
}
