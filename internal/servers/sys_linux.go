//go:build linux

package servers

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// sysProcAttr puts a server in a process group of its own and has the kernel
// SIGKILL it when this program dies without closing it (a test binary on a
// -timeout panic, a killed CLI).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// Pdeathsig fires when the thread that forked the child exits, not the
// process, so every server is started from one goroutine locked to its OS
// thread for the life of the program.
var (
	starterOnce sync.Once
	starter     chan startReq
)

type startReq struct {
	cmd  *exec.Cmd
	done chan error
}

func startCmd(cmd *exec.Cmd) error {
	starterOnce.Do(func() {
		starter = make(chan startReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the program
			for req := range starter {
				req.done <- req.cmd.Start()
			}
		}()
	})
	req := startReq{cmd: cmd, done: make(chan error, 1)}
	starter <- req
	return <-req.done
}

// lockPortAcrossProcesses reserves port among the processes of this machine
// (of this network namespace) by listening on an abstract unix socket, which
// the kernel releases when the process dies and which leaves no file behind.
func lockPortAcrossProcesses(port int) (io.Closer, bool) {
	l, err := net.Listen("unix", fmt.Sprintf("@epochal-servers-port-%d", port))
	if err != nil {
		return nil, false
	}
	return l, true
}

// waitStopped waits until every thread of pid is in the stopped state (when
// stopped is true) or none is (when false), as /proc reports it.
func waitStopped(pid int, stopped bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		all, none, err := threadStates(pid)
		if err != nil {
			return nil // gone, or no /proc: nothing to wait for
		}
		if (stopped && all) || (!stopped && none) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d: threads not %s after %v", pid, map[bool]string{true: "stopped", false: "running"}[stopped], timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// threadStates reports whether all threads of pid are stopped, and whether
// none is.
func threadStates(pid int) (all, none bool, err error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return false, false, fmt.Errorf("no tasks for pid %d", pid)
	}
	all, none = true, true
	for _, path := range tasks {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the thread has just exited
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			continue
		}
		switch s[i+2] {
		case 'T', 't':
			none = false
		case 'Z', 'X':
		default:
			all = false
		}
	}
	return all, none, nil
}
