package jepsenlite

import (
	"strings"
	"testing"

	"github.com/epochal/epochal/jepsen-lite/check"
)

// TestReadDiffsEmptyRead: an empty read and a longer one share no
// element and the empty one is a prefix of the other; the line says
// that, not that they differ from the first element.
func TestReadDiffsEmptyRead(t *testing.T) {
	read := func(i int, l string) check.Op {
		return check.Op{Index: i, Type: check.OK, F: "txn", Value: []byte(`[["r",0,` + l + `]]`)}
	}
	got := rptReadDiffs([]check.Op{read(1, "[]"), read(3, "[4,5]")})
	if len(got) != 1 || strings.Contains(got[0], "differ from the first") || !strings.Contains(got[0], "share no element") ||
		!strings.Contains(got[0], "T1's read is a prefix of T2's, which goes on [4 5]") {
		t.Fatalf("rptReadDiffs = %q", got)
	}
}
