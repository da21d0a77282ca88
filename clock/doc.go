// Package clock defines transaction points and the read-point source the
// engine draws them from.
//
// A [Point] is an integer drawn from the coordinator backend's clock. Points
// are totally ordered and never reused: a transaction reads at a read point
// (RP) and its writes become visible at a commit point (CP). Point 0 is the
// point at which every ref's initial value exists.
//
// # Usage
//
// The engine wraps a backend's read-point call in a [Batcher], so that many
// goroutines starting transactions at once share one round trip:
//
//	b := clock.NewBatcher(func(ctx context.Context) (clock.Point, error) { return drv.ReadPoint(ctx) })
//	rp, err := b.ReadPoint(ctx)
//
// Leases are judged by a [Wall] clock, which tests replace with a [Fake].
package clock
