package mem

import (
	"context"
	"fmt"
	"slices"

	"github.com/epochal/epochal/backend"
)

// Meta returns a ref's meta and its version.
func (b *Backend) Meta(ctx context.Context, name string) ([]byte, uint64, error) {
	if err := b.check(ctx); err != nil {
		return nil, 0, err
	}
	st := &b.refs[b.refStripe(name)]
	st.mu.RLock()
	defer st.mu.RUnlock()
	r := st.refs[name]
	if r == nil {
		return nil, 0, fmt.Errorf("mem: meta of %q: %w", name, backend.ErrNotFound)
	}
	return slices.Clone(r.meta), r.metaVer, nil
}

// SetMeta replaces meta if its version is still expect.
func (b *Backend) SetMeta(ctx context.Context, name string, expect uint64, meta []byte) (bool, error) {
	if err := b.check(ctx); err != nil {
		return false, err
	}
	st := &b.refs[b.refStripe(name)]
	st.mu.Lock()
	defer st.mu.Unlock()
	r := st.refs[name]
	if r == nil {
		return false, fmt.Errorf("mem: set meta of %q: %w", name, backend.ErrNotFound)
	}
	if r.metaVer != expect {
		return false, nil
	}
	r.meta, r.metaVer = slices.Clone(meta), r.metaVer+1
	return true, nil
}
