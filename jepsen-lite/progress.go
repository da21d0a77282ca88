package jepsenlite

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress is how a run tells its progress on Config.Progress: a bar
// redrawn in place on a terminal, plain lines otherwise.
type progress struct {
	started bool
	tty     bool
	every   time.Duration // between plain lines
	next    time.Duration // elapsed time of the next plain line
	done    sync.Once
}

// progressLineEvery is the period of the plain progress lines of a run
// of duration d: d/10, from 2s to 30s.
func progressLineEvery(d time.Duration) time.Duration {
	return min(max(d/10, 2*time.Second), 30*time.Second)
}

// progressStart tells that the clients have started: on a terminal the
// bar is drawn, otherwise a line says what runs (seed, run directory).
func (r *run) progressStart() {
	w := r.cfg.Progress
	if w == nil || r.prog.started {
		return
	}
	r.prog.started = true
	r.prog.tty = isTerminal(w)
	r.prog.every = progressLineEvery(r.cfg.Time)
	r.prog.next = r.prog.every
	if r.prog.tty {
		r.drawProgress()
		return
	}
	nem := strings.Join(r.cfg.Nemesis, ",")
	if nem == "" {
		nem = "none"
	}
	fmt.Fprintf(w, "jepsen: %s on %s for %v, nemesis %s, seed %d: clients started; run directory %s\n",
		r.cfg.Workload, r.cfg.Backend, r.cfg.Time, nem, r.cfg.Seed, r.dir)
}

// drawProgress redraws the bar (terminal), or writes a plain line if one
// is due.
func (r *run) drawProgress() {
	w := r.cfg.Progress
	if w == nil || !r.prog.started {
		return
	}
	el := time.Since(r.start)
	r.mu.Lock()
	fault := r.current
	r.mu.Unlock()
	if fault == "" {
		fault = "none"
	}
	if r.prog.tty {
		frac := min(float64(el)/float64(r.cfg.Time), 1)
		const width = 30
		bar := strings.Repeat("=", int(frac*width)) + strings.Repeat(" ", width-int(frac*width))
		fmt.Fprintf(w, "\r\033[K[%s] %5.1fs/%v  ok %d  fail %d  info %d  fault: %s", bar, el.Seconds(), r.cfg.Time,
			r.ok.Load(), r.fail.Load(), r.info.Load(), fault)
		return
	}
	if el < r.prog.next {
		return
	}
	for r.prog.next <= el {
		r.prog.next += r.prog.every
	}
	fmt.Fprintf(w, "jepsen: %.1fs/%v  ok %d  fail %d  info %d  fault: %s\n", el.Seconds(), r.cfg.Time,
		r.ok.Load(), r.fail.Load(), r.info.Load(), fault)
}

// progressDone tells that the clients have stopped (once): the bar is
// cleared, or a last line written.
func (r *run) progressDone() {
	w := r.cfg.Progress
	if w == nil || !r.prog.started {
		return
	}
	r.prog.done.Do(func() {
		if r.prog.tty {
			fmt.Fprint(w, "\r\033[K")
			return
		}
		fmt.Fprintf(w, "jepsen: %.1fs: clients stopped  ok %d  fail %d  info %d\n", time.Since(r.start).Seconds(),
			r.ok.Load(), r.fail.Load(), r.info.Load())
	})
}

// progressChecking tells that n operations are being checked (^C stops
// it): on a terminal a line that the returned function clears once the
// check ends, otherwise a plain line. Recheck's runs have no Progress.
func (r *run) progressChecking(n int) (done func()) {
	w := r.cfg.Progress
	if w == nil {
		return func() {}
	}
	msg := fmt.Sprintf("jepsen: checking the history (%d operations; ^C stops)", n)
	if r.prog.tty || !r.prog.started && isTerminal(w) {
		fmt.Fprint(w, "\r\033[K"+msg)
		return func() { fmt.Fprint(w, "\r\033[K") }
	}
	fmt.Fprintln(w, msg)
	return func() {}
}

// isTerminal reports whether w is a terminal (not merely a character
// device, as /dev/null is).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty(f.Fd())
}
