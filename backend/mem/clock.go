package mem

import (
	"context"

	"github.com/epochal/epochal/clock"
)

// LocalClock marks the clock as in-process: reading it costs no round trip.
func (b *Backend) LocalClock() {}

// ReadPoint returns the current point.
func (b *Backend) ReadPoint(ctx context.Context) (clock.Point, error) {
	if err := b.check(ctx); err != nil {
		return 0, err
	}
	return clock.Point(b.clock.Load()), nil
}
