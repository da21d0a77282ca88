package main

import (
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestHelpNoRepeats: no paragraph of help (longer than a pointer to
// another command's help) is written in two commands: what several share
// is said once, where they meet, and pointed to.
func TestHelpNoRepeats(t *testing.T) {
	seen := map[string]string{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, p := range strings.Split(c.Long, "\n\n") {
			p = strings.TrimSpace(p)
			if len(p) < 100 {
				continue
			}
			if first, ok := seen[p]; ok {
				t.Errorf("%q and %q both say:\n%s", first, c.CommandPath(), p)
				continue
			}
			seen[p] = c.CommandPath()
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd(io.Discard, io.Discard))
}
