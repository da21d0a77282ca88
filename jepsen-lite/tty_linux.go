package jepsenlite

import "golang.org/x/sys/unix"

// isatty reports whether fd is a terminal.
func isatty(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	return err == nil
}
