package redis

import (
	"context"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
)

// Meta returns a ref's meta and its version.
func (b *Backend) Meta(ctx context.Context, name string) ([]byte, uint64, error) {
	if err := b.check(ctx); err != nil {
		return nil, 0, err
	}
	var idCmd *goredis.StringCmd
	var hCmd *goredis.SliceCmd
	err := do(ctx, b, func(ctx context.Context) error {
		_, err := b.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			idCmd, hCmd = p.Get(ctx, b.p+"id"), p.HMGet(ctx, b.p+"r:"+name, "metaver", "meta")
			return nil
		})
		return err
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, 0, fmt.Errorf("redis: meta of %q: %w", name, err)
	}
	if err := b.verify(0, idCmd, nil); err != nil {
		return nil, 0, fmt.Errorf("redis: meta of %q: %w", name, err)
	}
	h := hCmd.Val()
	if h[0] == nil {
		return nil, 0, fmt.Errorf("redis: meta of %q: %w", name, backend.ErrNotFound)
	}
	var meta []byte
	if s, ok := h[1].(string); ok {
		meta = []byte(s)
	}
	return meta, uint64(atoi(h[0])), nil
}

// SetMeta replaces meta if its version is still expect.
func (b *Backend) SetMeta(ctx context.Context, name string, expect uint64, meta []byte) (bool, error) {
	if err := b.check(ctx); err != nil {
		return false, err
	}
	res, err := b.run(ctx, scriptSetMeta, name, expect, meta)
	if err != nil {
		return false, fmt.Errorf("redis: set meta of %q: %w", name, err)
	}
	switch res.(int64) {
	case -1:
		return false, fmt.Errorf("redis: set meta of %q: %w", name, backend.ErrNotFound)
	case 1:
		return true, nil
	}
	return false, nil
}
