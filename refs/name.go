package refs

import (
	"fmt"

	"github.com/epochal/epochal/internal/names"
)

// MaxNameLen is the longest ref name, in bytes.
const MaxNameLen = names.MaxLen

// CheckName reports whether name is a valid reference name: 1 to 256 bytes,
// slash-separated segments of letters, digits and ._~:@+=-, no empty
// segment, no segment "." or "..". Such names are safe as Redis keys and
// ZooKeeper paths alike. Locks and groups take the same names.
func CheckName(name string) error {
	if err := names.Check(name); err != nil {
		return fmt.Errorf("%w: %w", ErrName, err)
	}
	return nil
}
