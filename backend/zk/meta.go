package zk

import (
	"context"
	"errors"
	"fmt"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend"
)

func (b *Backend) metaPath(name string) string { return b.metaP + "/" + escape(name) }

// Meta returns a ref's meta and its version (the meta znode's version).
func (b *Backend) Meta(ctx context.Context, name string) ([]byte, uint64, error) {
	if err := b.check(ctx); err != nil {
		return nil, 0, err
	}
	data, stats, err := b.get(ctx, []string{b.metaPath(name)})
	if err != nil {
		return nil, 0, fmt.Errorf("zk: meta of %q: %w", name, err)
	}
	if stats[0] == nil {
		return nil, 0, fmt.Errorf("zk: meta of %q: %w", name, backend.ErrNotFound)
	}
	if len(data[0]) == 0 {
		data[0] = nil
	}
	return data[0], uint64(stats[0].Version), nil
}

// SetMeta replaces meta if its version is still expect: one conditional
// SetData.
func (b *Backend) SetMeta(ctx context.Context, name string, expect uint64, meta []byte) (bool, error) {
	if err := b.check(ctx); err != nil {
		return false, err
	}
	if len(meta) > b.MaxValueSize() {
		return false, fmt.Errorf("%w: meta of %q is %d bytes", ErrTooLarge, name, len(meta))
	}
	_, err := b.multi(ctx, []any{&gozk.SetDataRequest{Path: b.metaPath(name), Data: meta, Version: int32(expect)}})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, gozk.ErrBadVersion):
		return false, nil
	case errors.Is(err, gozk.ErrNoNode):
		return false, fmt.Errorf("zk: set meta of %q: %w", name, backend.ErrNotFound)
	}
	return false, fmt.Errorf("zk: set meta of %q: %w", name, err)
}
