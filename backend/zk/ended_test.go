package zk_test

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/internal/testkit/testserver"
)

func init() {
	standaloneTests = append(standaloneTests, serverTest{"EndedSessionIDsStayBounded", testEndedIDsBounded})
}

// testEndedIDsBounded: sessions opened and closed in a loop leave a
// memory of ended ids bounded by those ended in the last EndedKeep; an id
// is refused while remembered. The clock of that memory is advanced by
// hand (EndedKeep/50 a cycle): no test waits minutes.
func testEndedIDsBounded(t *testing.T, srv *testserver.ZK) {
	b := open(t, srv, zk.Config{})
	var now atomic.Int64
	now.Store(time.Unix(1e9, 0).UnixNano())
	zk.SetEndedClock(b, func() time.Time { return time.Unix(0, now.Load()) })
	const cycles, bound = 400, 51
	for i := range cycles {
		id := fmt.Sprintf("soak%d", i)
		if _, err := b.OpenSession(sctx(t), id, time.Minute, "soak"); err != nil {
			t.Fatal(err)
		}
		if err := b.CloseSession(sctx(t), id); err != nil {
			t.Fatal(err)
		}
		now.Add(int64(zk.EndedKeep / 50))
		if m, q := zk.EndedIDs(b); m > bound || q > bound {
			t.Fatalf("cycle %d: %d ended ids kept (%d queued), want at most %d", i, m, q, bound)
		}
	}
	last := fmt.Sprintf("soak%d", cycles-1)
	if _, err := b.OpenSession(sctx(t), last, time.Minute, "retry"); !errors.Is(err, backend.ErrSessionGone) {
		t.Fatalf("OpenSession of an id ended %v ago: %v, want ErrSessionGone", zk.EndedKeep/50, err)
	}
}
