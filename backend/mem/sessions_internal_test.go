package mem

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
)

// TestEndedSessionIDsStayBounded: sessions opened and closed in a loop
// leave a memory of ended ids bounded by those ended in the last
// EndedKeep; an id is refused while remembered. The clock of that memory
// is advanced by hand (EndedKeep/100 a cycle): no test waits minutes.
func TestEndedSessionIDsStayBounded(t *testing.T) {
	b := New()
	defer b.Close()
	ctx := context.Background()
	s := b.sess()
	now := time.Unix(1e9, 0)
	s.mu.Lock()
	s.ended.now = func() time.Time { return now }
	s.mu.Unlock()
	size := func() (int, int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.ended.at), len(s.ended.order)
	}
	const cycles, bound = 5000, 101
	for i := range cycles {
		id := fmt.Sprintf("s%d", i)
		if _, err := b.OpenSession(ctx, id, time.Minute, "soak"); err != nil {
			t.Fatal(err)
		}
		if err := b.CloseSession(ctx, id); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		now = now.Add(EndedKeep / 100)
		s.mu.Unlock()
		if m, q := size(); m > bound || q > bound {
			t.Fatalf("cycle %d: %d ended ids kept (%d queued), want at most %d", i, m, q, bound)
		}
	}
	last := fmt.Sprintf("s%d", cycles-1)
	if _, err := b.OpenSession(ctx, last, time.Minute, "retry"); !errors.Is(err, backend.ErrSessionGone) {
		t.Fatalf("OpenSession of an id ended %v ago: %v, want ErrSessionGone", EndedKeep/100, err)
	}
	s.mu.Lock()
	now = now.Add(EndedKeep)
	s.mu.Unlock()
	if _, err := b.OpenSession(ctx, last, time.Minute, "much later"); err != nil {
		t.Fatalf("OpenSession of an id ended more than EndedKeep ago: %v", err)
	}
	if m, q := size(); m != 0 || q != 0 {
		t.Fatalf("%d ended ids kept (%d queued) past EndedKeep, want 0", m, q)
	}
}
