package main

import (
	"io"
	"os"
	"slices"
	"strconv"
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

// TestExitCodesListed: the root's --help and the README's command-line
// section name every exit code the command has, the highest included.
func TestExitCodesListed(t *testing.T) {
	codes := []int{exitOK, exitFail, exitUsage, exitDown, exitRefused, exitUnknown, exitIncomplete}
	_, help, ok := strings.Cut(newRootCmd(io.Discard, io.Discard).Long, "Exit codes:")
	help, _, _ = strings.Cut(help, "\n\n")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, inREADME, _ := strings.Cut(string(readme), "exit codes are ")
	inREADME, _, _ = strings.Cut(inREADME, ". ")
	for where, text := range map[string]string{"epochal --help": help, "README": inREADME} {
		words := strings.Fields(strings.NewReplacer(",", " ", "(", " ").Replace(text))
		for _, c := range codes {
			if !ok || !slices.Contains(words, strconv.Itoa(c)) {
				t.Errorf("%s: its exit codes do not name %d:\n%s", where, c, text)
			}
		}
	}
}
