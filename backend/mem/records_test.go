package mem

import (
	"testing"
	"time"
)

func TestGenerationsKeepAtLeastAPeriod(t *testing.T) {
	var g generations[string, int]
	g.init(time.Minute)
	t0 := time.Unix(1000, 0)
	g.put("a", 1, t0)
	g.put("b", 2, t0.Add(59*time.Second)) // just before the first rotation
	for _, c := range []struct {
		at   time.Duration
		id   string
		want bool
	}{
		{59 * time.Second, "a", true},
		{61 * time.Second, "a", true}, // rotated into old
		{61 * time.Second, "b", true},
		{119 * time.Second, "b", true}, // b has lived a full minute
		{122 * time.Second, "a", false},
		{122 * time.Second, "b", false},
	} {
		if _, ok := g.get(c.id, t0.Add(c.at)); ok != c.want {
			t.Fatalf("at +%v, %s present = %v, want %v", c.at, c.id, ok, c.want)
		}
	}
	// Idle for two periods: all gone at once.
	g.put("c", 3, t0.Add(130*time.Second))
	if _, ok := g.get("c", t0.Add(10*time.Minute)); ok {
		t.Fatal("an entry survived ten idle minutes")
	}
}
