package zk

import (
	"context"
	"fmt"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/clock"
)

// point converts a zxid.
func point(zxid int64) clock.Point { return clock.Point(uint64(zxid)) }

// ReadPoint returns the zxid of the newest commit this session sees: every
// commit creates or changes the clock node in its Multi, so every commit at
// or below that zxid is in the session's view, and every later one gets a
// larger zxid.
func (b *Backend) ReadPoint(ctx context.Context) (clock.Point, error) {
	if err := b.check(ctx); err != nil {
		return 0, err
	}
	return b.readPoint(ctx)
}

func (b *Backend) readPoint(ctx context.Context) (clock.Point, error) {
	if b.cfg.SyncReads {
		if err := b.sync(ctx); err != nil {
			return 0, err
		}
	}
	var st, est *gozk.Stat
	err := b.consistent(ctx, func() error {
		return b.wait(ctx, func() error {
			return b.getAll([]string{b.clockP, b.epochP}, func(i int) (err error) {
				if i == 0 {
					_, st, err = b.conn.Exists(b.clockP)
				} else {
					_, est, err = b.conn.Exists(b.epochP)
				}
				return err
			})
		})
	})
	if err != nil {
		return 0, fmt.Errorf("zk: read point: %w", err)
	}
	if est == nil {
		return 0, fmt.Errorf("zk: read point: %w", b.fail())
	}
	if st == nil || st.Mzxid == 0 {
		return 0, fmt.Errorf("zk: read point: %s is missing", b.clockP)
	}
	b.observe(st)
	return point(st.Mzxid), nil
}

// clockOp is the clock's part of every committing Multi.
func (b *Backend) clockOp() *gozk.SetDataRequest {
	return &gozk.SetDataRequest{Path: b.clockP, Version: -1}
}
