package history_test

import (
	"errors"
	"testing"

	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
)

func vs(points ...clock.Point) []history.Version {
	out := make([]history.Version, len(points))
	for i, p := range points {
		out[i] = history.Version{Point: p, Value: []byte{byte(p)}}
	}
	return out
}

func TestPick(t *testing.T) {
	h := vs(30, 20, 10)
	for _, c := range []struct {
		rp   clock.Point
		want clock.Point
		res  history.Result
	}{{35, 30, history.Found}, {30, 30, history.Found}, {29, 20, history.Found}, {10, 10, history.Found}, {9, 0, history.Fault}} {
		v, res := history.Pick(h, c.rp)
		if res != c.res || (res == history.Found && v.Point != c.want) {
			t.Errorf("Pick at %d = %d, %v; want %d, %v", c.rp, v.Point, res, c.want, c.res)
		}
	}
}

func TestTrimKeepsNewestPlusKeep(t *testing.T) {
	for _, c := range []struct {
		name        string
		in          []history.Version
		keep        int
		prevTrimmed clock.Point
		wantLen     int
		wantTrimmed clock.Point
	}{
		{"keep0", vs(40, 30, 20), 0, 0, 1, 30},
		{"keep1", vs(40, 30, 20), 1, 0, 2, 20},
		{"nothing to trim", vs(40, 30), 5, 7, 2, 7},
		{"trimmed never goes back", vs(40, 30, 20), 1, 25, 2, 25},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, tr := history.Trim(c.in, c.keep, c.prevTrimmed)
			if len(out) != c.wantLen || tr != c.wantTrimmed || out[0].Point != 40 {
				t.Fatalf("Trim = %d versions (newest %d), trimmed %d; want %d, trimmed %d", len(out), out[0].Point, tr, c.wantLen, c.wantTrimmed)
			}
		})
	}
}

func TestGrowAndCheck(t *testing.T) {
	if history.Grow(0, 10) != 1 || history.Grow(10, 10) != 10 {
		t.Fatal("Grow must add one up to the maximum")
	}
	for _, c := range []struct {
		min, max int
		ok       bool
	}{{0, 10, true}, {3, 3, true}, {-1, 10, false}, {5, 4, false}, {0, history.Limit + 1, false}} {
		err := history.Check(c.min, c.max)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, history.ErrBounds)) {
			t.Errorf("Check(%d, %d) = %v", c.min, c.max, err)
		}
	}
}
