package redis

import (
	"context"
	"time"
)

// SetWaitPoll sets how often b's waits look at their dir; call it before
// b's first wait. A long poll leaves waits to the hints alone.
func SetWaitPoll(b *Backend, d time.Duration) { b.hub.poll = d }

// HubChannels is how many channels b's hub holds (waited on, or with a
// command unanswered).
func HubChannels(b *Backend) int { return b.hub.channels() }

// HubEpoch counts the hub's lost connections.
func HubEpoch(b *Backend) uint64 {
	b.hub.mu.Lock()
	defer b.hub.mu.Unlock()
	return b.hub.epoch
}

// HubConfirmed: the server has confirmed the hub's subscription to dir's
// channel in this epoch.
func HubConfirmed(b *Backend, dir string) bool {
	b.hub.mu.Lock()
	defer b.hub.mu.Unlock()
	c := b.hub.chans[b.p+"dc:"+dir]
	return c != nil && c.sub && c.n == 0
}

// RenewWatchMark renews the watch mark of s, a subscription of a Redis
// backend, now.
func RenewWatchMark(ctx context.Context, s any) error { return s.(*sub).renew(ctx) }
