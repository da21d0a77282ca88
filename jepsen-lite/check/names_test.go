package check

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestEveryAnomalyExplained: every anomaly name the checkers emit (each
// Name: "..." and fail("...", ...) in this package's code, and the cycle
// names) has a sentence in AnomalyMeaning, suffixed ones too.
func TestEveryAnomalyExplained(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?:Name:\s*|fail\()"([A-Za-z0-9-]+)"`)
	names := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
	}
	if len(names) < 30 {
		t.Fatalf("found only %d anomaly names in the source: %v", len(names), names)
	}
	for _, base := range []string{"G0", "G1c", "G-single", "G-nonadjacent", "G2-item"} {
		names[base], names[base+"-process"], names[base+"-realtime"] = true, true, true
	}
	for n := range names {
		if AnomalyMeaning(n) == "" {
			t.Errorf("anomaly %q has no explanation in AnomalyMeaning", n)
		}
	}
	if AnomalyMeaning("no-such-anomaly") != "" {
		t.Errorf("an unknown name has an explanation")
	}
}
