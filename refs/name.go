package refs

import (
	"fmt"
	"strings"
)

// MaxNameLen is the longest ref name, in bytes.
const MaxNameLen = 256

// CheckName reports whether name is a valid reference name: 1 to 256 bytes,
// slash-separated segments of letters, digits and ._~:@+=-, no empty
// segment, no segment "." or "..". Such names are safe as Redis keys and
// ZooKeeper paths alike.
func CheckName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrName)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrName, len(name), MaxNameLen)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w: %q has an empty, \".\" or \"..\" segment", ErrName, name)
		}
		for _, c := range seg {
			if !nameChar(c) {
				return fmt.Errorf("%w: %q contains %q", ErrName, name, c)
			}
		}
	}
	return nil
}

func nameChar(c rune) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.ContainsRune("._~:@+=-", c)
}
