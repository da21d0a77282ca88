//go:build !linux

package servers

import (
	"io"
	"os/exec"
	"syscall"
	"time"
)

// sysProcAttr puts a server in a process group of its own.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func startCmd(cmd *exec.Cmd) error { return cmd.Start() }

// lockPortAcrossProcesses has no cheap, residue-free mechanism here; ports
// are only reserved within the process.
func lockPortAcrossProcesses(int) (io.Closer, bool) { return nil, true }

// waitStopped cannot observe the process state without /proc; give the
// signal a moment to land.
func waitStopped(int, bool, time.Duration) error {
	time.Sleep(50 * time.Millisecond)
	return nil
}
