package redis

import (
	"context"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/clock"
)

// ReadPoint returns the clock.
func (b *Backend) ReadPoint(ctx context.Context) (clock.Point, error) {
	if err := b.check(ctx); err != nil {
		return 0, err
	}
	var idCmd, clk *goredis.StringCmd
	seen := b.seen.Load()
	err := do(ctx, b, func(ctx context.Context) error {
		_, err := b.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			idCmd, clk = p.Get(ctx, b.p+"id"), p.Get(ctx, b.clockK)
			return nil
		})
		return err
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return 0, fmt.Errorf("redis: read point: %w", err)
	}
	if err := b.verify(seen, idCmd, clk); err != nil {
		return 0, fmt.Errorf("redis: read point: %w", err)
	}
	n, _ := clk.Uint64()
	return clock.Point(n), nil
}
