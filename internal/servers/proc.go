package servers

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Time limits for waiting on server processes.
const (
	stopGrace   = 5 * time.Second  // SIGTERM to SIGKILL
	exitTimeout = 10 * time.Second // SIGKILL to exit
	groupGone   = 5 * time.Second  // until no process of the group is left
	pollPause   = 25 * time.Millisecond
)

// run is one execution of a server process.
type run struct {
	pid       int
	done      chan struct{} // closed once the process has exited and been reaped
	err       error         // the result of Wait, valid once done is closed
	signalled bool          // we sent a stopping signal (guarded by proc.mu)
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// proc is a server process that can be started, signalled and started again
// with the same command line.
type proc struct {
	name    string // for messages
	path    string
	args    []string
	dir     string // working directory
	logPath string // stdout and stderr go here, appended across restarts

	op sync.Mutex // serialises lifecycle operations (start, stop, kill, ...)

	closed bool // set by Close (guarded by op): the process never starts again

	mu     sync.Mutex
	cur    *run // nil before the first start
	paused bool
	starts int
	logOff int64 // size of the log when the current run started
}

// start starts the process; the previous one, if any, must have exited.
// The caller holds p.op (or nobody else knows p yet).
func (p *proc) start() error {
	if p.closed {
		return fmt.Errorf("%s: closed", p.name)
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	var off int64
	if st, err := f.Stat(); err == nil {
		off = st.Size()
	}
	p.mu.Lock()
	p.starts++
	n := p.starts
	p.logOff = off
	p.mu.Unlock()
	fmt.Fprintf(f, "=== servers: start #%d of %s at %s: %s %s\n",
		n, p.name, time.Now().Format("15:04:05.000"), p.path, strings.Join(p.args, " "))
	cmd := exec.Command(p.path, p.args...)
	cmd.Dir = p.dir
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = sysProcAttr()
	if err := startCmd(cmd); err != nil {
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	r := &run{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		r.err = err
		p.mu.Unlock()
		close(r.done)
	}()
	p.mu.Lock()
	p.cur = r
	p.paused = false
	p.mu.Unlock()
	return nil
}

// current returns the current run, or nil if the process is not running.
func (p *proc) current() *run {
	p.mu.Lock()
	r := p.cur
	p.mu.Unlock()
	if r == nil || r.exited() {
		return nil
	}
	return r
}

// pid returns the PID of the running process, or 0.
func (p *proc) pid() int {
	if r := p.current(); r != nil {
		return r.pid
	}
	return 0
}

// running reports whether the process runs and is not paused.
func (p *proc) runningUnpaused() bool {
	if p.current() == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.paused
}

// exitedOnItsOwn returns a description of the last run's exit if the process
// has exited without being signalled by us, or "".
func (p *proc) exitedOnItsOwn() string {
	p.mu.Lock()
	r := p.cur
	p.mu.Unlock()
	if r == nil || !r.exited() {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.signalled {
		return ""
	}
	if r.err == nil {
		return "exited with status 0"
	}
	return r.err.Error()
}

// signal sends sig to the process group of r.
func signalGroup(r *run, sig syscall.Signal) error {
	err := syscall.Kill(-r.pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

func (p *proc) markSignalled(r *run) {
	p.mu.Lock()
	r.signalled = true
	p.mu.Unlock()
}

// kill sends SIGKILL to the process group and waits until it has exited.
// Killing a process that is not running does nothing.
func (p *proc) kill() error {
	r := p.current()
	if r == nil {
		return nil
	}
	p.markSignalled(r)
	if err := signalGroup(r, syscall.SIGKILL); err != nil {
		return fmt.Errorf("SIGKILL %s (pgid %d): %w", p.name, r.pid, err)
	}
	return p.reap(r)
}

// stop sends SIGTERM (and SIGCONT, in case it is paused) to the process
// group, waits up to grace for it to exit, then kills it. Stopping a process
// that is not running does nothing.
func (p *proc) stop(grace time.Duration) error {
	r := p.current()
	if r == nil {
		return nil
	}
	p.markSignalled(r)
	if err := signalGroup(r, syscall.SIGTERM); err != nil {
		return fmt.Errorf("SIGTERM %s (pgid %d): %w", p.name, r.pid, err)
	}
	if err := signalGroup(r, syscall.SIGCONT); err != nil {
		return fmt.Errorf("SIGCONT %s (pgid %d): %w", p.name, r.pid, err)
	}
	select {
	case <-r.done:
	case <-time.After(grace):
		if err := signalGroup(r, syscall.SIGKILL); err != nil {
			return fmt.Errorf("SIGKILL %s (pgid %d): %w", p.name, r.pid, err)
		}
	}
	return p.reap(r)
}

// reap waits until the process has exited and no process is left in its
// group (the group of a server may hold forked children, such as a Redis
// AOF rewrite).
func (p *proc) reap(r *run) error {
	select {
	case <-r.done:
	case <-time.After(exitTimeout):
		return fmt.Errorf("%s (pid %d) has not exited %v after SIGKILL", p.name, r.pid, exitTimeout)
	}
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
	deadline := time.Now().Add(groupGone)
	for {
		err := syscall.Kill(-r.pid, 0)
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes of %s's group %d are still there %v after it exited (kill -0: %v)", p.name, r.pid, groupGone, err)
		}
		_ = syscall.Kill(-r.pid, syscall.SIGKILL)
		time.Sleep(pollPause)
	}
}

// pause sends SIGSTOP to the process group and waits until it has stopped.
func (p *proc) pause() error {
	r := p.current()
	if r == nil {
		return fmt.Errorf("pause: %s is not running", p.name)
	}
	if err := signalGroup(r, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("SIGSTOP %s (pgid %d): %w", p.name, r.pid, err)
	}
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
	return waitStopped(r.pid, true, 5*time.Second)
}

// resume sends SIGCONT to the process group and waits until it runs again.
func (p *proc) resume() error {
	r := p.current()
	if r == nil {
		return fmt.Errorf("resume: %s is not running", p.name)
	}
	if err := signalGroup(r, syscall.SIGCONT); err != nil {
		return fmt.Errorf("SIGCONT %s (pgid %d): %w", p.name, r.pid, err)
	}
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
	return waitStopped(r.pid, false, 5*time.Second)
}

// logTail returns the last lines of the process's log.
func (p *proc) logTail(lines int) string {
	return fileTail(p.logPath, lines)
}

// logContains reports whether the log of the current (or last) run holds s.
func (p *proc) logContains(s string) bool {
	p.mu.Lock()
	off := p.logOff
	p.mu.Unlock()
	b, err := os.ReadFile(p.logPath)
	if err != nil || int64(len(b)) < off {
		return false
	}
	return bytes.Contains(b[off:], []byte(s))
}

// fileTail returns the last n lines of the file at path (at most 64 KiB).
func fileTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const max = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// bindFailure reports whether the server's log tells that its last run could
// not bind a port, so that starting it again (on other ports) may help.
func bindFailure(p *proc) bool {
	return p.logContains("Address already in use")
}

// ports is a block of consecutive loopback ports reserved for one server or
// ensemble, until release.
type ports struct {
	base  int
	n     int
	locks []io.Closer
}

func (ps *ports) release() {
	for _, l := range ps.locks {
		_ = l.Close()
	}
	ps.locks = nil
}

// portRange is where ports are picked from: below the kernel's ephemeral
// range when there is room, so that outgoing connections never take a port
// a stopped server is about to bind again.
func portRange() (lo, hi int) {
	lo, hi = 10000, 65535
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	elo, err1 := strconv.Atoi(f[0])
	ehi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return lo, hi
	}
	switch {
	case elo-10000 >= 2000:
		return 10000, elo - 1
	case 65535-ehi >= 2000:
		return ehi + 1, 65535
	}
	return lo, hi
}

// reservePorts finds n consecutive free ports on 127.0.0.1 and reserves
// them (within this process and, on Linux, across processes).
func reservePorts(n int) (*ports, error) {
	lo, hi := portRange()
	for attempt := 0; attempt < 500; attempt++ {
		base := lo + rand.IntN(hi-lo+1-n)
		ps := &ports{base: base, n: n}
		ok := true
		for port := base; port < base+n; port++ {
			l, locked := lockPort(port)
			if !locked {
				ok = false
				break
			}
			ps.locks = append(ps.locks, l)
			if !portFree(port) {
				ok = false
				break
			}
		}
		if ok {
			return ps, nil
		}
		ps.release()
	}
	return nil, fmt.Errorf("no %d consecutive free ports found on 127.0.0.1", n)
}

// portFree reports whether something could listen on 127.0.0.1:port now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// inProcessLocks reserves ports within this process (on every OS; on Linux
// the abstract socket would do alone, but this keeps lockPort simple).
var inProcessLocks sync.Map // port -> struct{}

type inProcessLock int

func (l inProcessLock) Close() error {
	inProcessLocks.Delete(int(l))
	return nil
}

// lockPort reserves port for this process and, where possible, across
// processes. It returns false if somebody else holds it.
func lockPort(port int) (io.Closer, bool) {
	if _, taken := inProcessLocks.LoadOrStore(port, struct{}{}); taken {
		return nil, false
	}
	cross, ok := lockPortAcrossProcesses(port)
	if !ok {
		inProcessLocks.Delete(port)
		return nil, false
	}
	return multiCloser{cross, inProcessLock(port)}, true
}

type multiCloser []io.Closer

func (m multiCloser) Close() error {
	var errs []error
	for _, c := range m {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// waitUntil polls cond every pollPause until it returns true, returns an
// error, or timeout passes; it also gives up early when gone reports true
// (the process died).
func waitUntil(timeout time.Duration, gone func() bool, cond func() (bool, error)) (bool, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return true, nil
		}
		if err != nil {
			last = err
		}
		if gone != nil && gone() {
			return false, last
		}
		if time.Now().After(deadline) {
			return false, last
		}
		time.Sleep(pollPause)
	}
}

// awaitReady polls cond like waitUntil until it holds, the process exits,
// or timeout passes, and says why it did not hold.
func (p *proc) awaitReady(timeout time.Duration, cond func() (bool, error)) error {
	ok, err := waitUntil(timeout, func() bool { return p.current() == nil }, cond)
	if ok {
		return nil
	}
	if why := p.exitedOnItsOwn(); why != "" {
		return fmt.Errorf("server exited (%s); last check: %v", why, err)
	}
	if err == nil {
		err = errors.New("timed out")
	}
	return err
}

// locked runs one lifecycle operation (kill, stop, pause, resume) under p's
// lifecycle lock.
func (p *proc) locked(op func(*proc) error) error {
	p.op.Lock()
	defer p.op.Unlock()
	return op(p)
}

// close stops the process for good (SIGTERM, then SIGKILL after grace):
// it is never started again.
func (p *proc) close(grace time.Duration) error {
	p.op.Lock()
	defer p.op.Unlock()
	p.closed = true
	if err := p.stop(grace); err != nil {
		return fmt.Errorf("stopping %s: %w", p.name, err)
	}
	return nil
}

func (p *proc) stopGracefully() error { return p.stop(stopGrace) }

// NotServingError is the error of a server that did not come up or serve in
// time: Err says what was waited for, Logs holds the tail of the server's
// log (of every node's, for an ensemble).
type NotServingError struct {
	Err  error
	Logs string
}

func (e *NotServingError) Error() string { return fmt.Sprintf("%v\n%s", e.Err, e.Logs) }

func (e *NotServingError) Unwrap() error { return e.Err }

// notReady is a restarted server that did not answer in time: the
// readiness error, and that of killing it.
type notReady struct{ err, kill error }

func (e *notReady) Error() string { return fmt.Sprintf("%v (kill: %v)", e.err, e.kill) }

func (e *notReady) Unwrap() error { return e.err }

// restart stops p if it runs and starts it again with the same port and
// directory, until ready accepts it. Something outside this helper may have
// grabbed the port meanwhile (it stays reserved by us only among the
// processes using this package): a bind failure is tried again a few times. The caller holds
// p.op. A server that starts but is not ready is a *notReady.
func (p *proc) restart(ready func(*proc) error) error {
	if err := p.stop(stopGrace); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		if err := p.start(); err != nil {
			return err
		}
		err := ready(p)
		if err == nil {
			return nil
		}
		stopErr := p.kill()
		if bindFailure(p) && attempt < 5 && stopErr == nil {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		return &notReady{err: err, kill: stopErr}
	}
}
