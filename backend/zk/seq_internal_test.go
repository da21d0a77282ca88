package zk

import (
	"fmt"
	"testing"
)

// TestFencingTokenPast2to32DoesNotWrap: the Seqs of a lock's successive
// entries keep increasing when the dir's child version passes 2^32 (the
// server names a sequential znode after it, an int32 printed with %010d,
// which wraps) and when the zxid's counter passes 2^32 (a new epoch), and
// stay above every Seq of the scheme before (at most 2^32). The starting
// values are injected: a real dir would need 2^32 child changes.
func TestFencingTokenPast2to32DoesNotWrap(t *testing.T) {
	const oldMax = uint64(1) << 32 // uint32(cversion) + 1, the old Seq
	last := oldMax
	zxid := int64(1)<<32 - 3 // epoch 0, counter near its end
	for i := uint64(0); i < 8; i++ {
		cversion := uint64(1)<<32 - 3 + i
		node := fmt.Sprintf("w.x%s%010d", seqMark, int32(uint32(cversion)))
		name, sequential, ok := parseNode(node)
		if !ok || !sequential || name != "w.x" {
			t.Fatalf("parseNode(%q) = %q, %v, %v", node, name, sequential, ok)
		}
		seq := seqOf(zxid)
		if seq <= last {
			t.Fatalf("entry %d (child version %d, node %s, zxid %#x): Seq %d, not above the previous %d", i, cversion, node, zxid, seq, last)
		}
		last = seq
		zxid += int64(i%3 + 1)
		if i == 4 {
			zxid = 2<<32 | 1 // a leader change: epoch 2, counter restarts
		}
	}
}
