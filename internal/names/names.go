// Package names checks the names users give to refs, locks and groups: one
// rule for all, safe as Redis keys and ZooKeeper paths alike.
package names

import (
	"errors"
	"fmt"
	"strings"
)

// MaxLen is the longest name, in bytes.
const MaxLen = 256

// Check reports whether name is valid: 1 to MaxLen bytes, slash-separated
// segments of letters, digits and ._~:@+=-, no empty segment, no segment
// "." or "..".
func Check(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > MaxLen {
		return fmt.Errorf("%d bytes, more than %d", len(name), MaxLen)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%q has an empty, \".\" or \"..\" segment", name)
		}
		for _, c := range seg {
			if !nameChar(c) {
				return fmt.Errorf("%q contains %q", name, c)
			}
		}
	}
	return nil
}

// CheckSegment is Check for a name that must not contain '/' either (a
// group member's name).
func CheckSegment(name string) error {
	if strings.Contains(name, "/") {
		return fmt.Errorf("%q contains \"/\"", name)
	}
	return Check(name)
}

func nameChar(c rune) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.ContainsRune("._~:@+=-", c)
}
