package jepsenlite_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	jepsenlite "github.com/epochal/epochal/jepsen-lite"
)

// TestProgressPlainLines: a run's progress to something that is not a
// terminal (a file, a pipe, a buffer) is plain lines, never a bar
// redrawn with carriage returns: one as the clients start (the seed, the
// run directory), one as they stop, one as the check starts.
func TestProgressPlainLines(t *testing.T) {
	var buf bytes.Buffer
	sum, err := jepsenlite.Run(t.Context(), jepsenlite.Config{Backend: "mem", Workload: "bank", Time: time.Second, Workers: 1, Clients: 2,
		Seed: 99, Dir: t.TempDir(), Progress: &buf})
	if err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if strings.ContainsAny(out, "\r\033") || !strings.HasSuffix(out, "\n") || len(lines) < 3 ||
		lines[0] != fmt.Sprintf("jepsen: bank on mem for 1s, nemesis none, seed 99: clients started; run directory %s", sum.Dir) ||
		!strings.Contains(lines[len(lines)-2], "clients stopped  ok ") ||
		!strings.HasPrefix(lines[len(lines)-1], "jepsen: checking the history (") || !strings.HasSuffix(lines[len(lines)-1], " operations; ^C stops)") {
		t.Fatalf("progress to a buffer:\n%q", out)
	}
}

// openPTY opens a pseudo-terminal: its controller and its terminal end.
func openPTY(t *testing.T) (ctl, tty *os.File) {
	ctl, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no pseudo-terminals here (under CI=true the terminal progress bar must be tested): %v", err)
		}
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(ctl.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ctl.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return ctl, tty
}

// TestProgressBarOnTerminal: on a terminal the progress is a bar redrawn
// in place, cleared when the clients stop, then a line while the history
// is checked, cleared too; no plain lines.
func TestProgressBarOnTerminal(t *testing.T) {
	ctl, tty := openPTY(t)
	defer ctl.Close()
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(ctl) // ends with EIO once the terminal end is closed
		got <- string(b)
	}()
	_, err := jepsenlite.Run(t.Context(), jepsenlite.Config{Backend: "mem", Workload: "bank", Time: time.Second, Workers: 1, Clients: 2,
		Seed: 99, Dir: t.TempDir(), Progress: tty})
	tty.Close()
	if err != nil {
		t.Fatal(err)
	}
	out := <-got
	if !strings.Contains(out, "\r\033[K[") || !strings.Contains(out, "\r\033[Kjepsen: checking the history (") ||
		!strings.HasSuffix(out, "^C stops)\r\033[K") || strings.Contains(out, "clients started") || strings.Contains(out, "\n") {
		t.Fatalf("progress to a terminal:\n%q", out)
	}
}
