package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/epochal/epochal/backend"
)

// waitPoll is how often WaitEntries looks at the dir itself: a session
// that expires publishes nothing, and a hint may be lost.
const waitPoll = 250 * time.Millisecond

// WaitEntries has the Backend's hub (one Pub/Sub connection for every
// wait, see hub) subscribe to dir's channel, then looks at the dir once the
// subscription is confirmed (so that a change just before it is not missed
// when name is given: an entry already gone returns at once), and returns
// on a hint for dir (for name only, if name is given), when max has
// passed, or when ctx ends. Meanwhile it looks at the dir every 250ms,
// whatever max (0 included): an expired session publishes nothing, and a
// hint can be lost when the connection is lost; if the confirmation takes
// longer than that, the first look is done without it. The look drops
// entries of ended sessions; it returns when name is no longer there (or
// dead), or (name == "") when the dir's change counter has moved since the
// first look. A read-only backend's look drops nothing, and counts the
// dead entries instead: a change of that count is a change of the dir too.
// Close makes it return backend.ErrClosed.
func (b *Backend) WaitEntries(ctx context.Context, dir, name string, max time.Duration) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if err := backend.CheckSessionName("dir", dir); err != nil {
		return fmt.Errorf("redis: wait entries: %w", err)
	}
	if name != "" {
		if err := backend.CheckSessionName("entry name", name); err != nil {
			return fmt.Errorf("redis: wait entries: %w", err)
		}
	}
	var deadline <-chan time.Time
	if max > 0 {
		t := time.NewTimer(max)
		defer t.Stop()
		deadline = t.C
	}
	w, err := b.hub.join(b.p+"dc:"+dir, name)
	if err != nil {
		return err
	}
	defer b.hub.leave(w)
	poll := time.NewTicker(b.hub.poll)
	defer poll.Stop()
	// From the confirmation on (ready), a hint is lost only to a lost
	// connection, which the polling covers.
	ready := w.ready
	first, ver0 := true, ""
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return nil
		case <-b.hub.done:
			return backend.ErrClosed
		case <-w.wake:
			return nil
		case <-ready:
			ready = nil
		case <-poll.C:
		}
		ver, there, err := b.waitCheck(ctx, dir, name)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if first {
				return fmt.Errorf("redis: wait entries of %q: %w", dir, err)
			}
			continue // the server may be back at the next look
		}
		if name != "" && !there {
			return nil
		}
		if first {
			// Done (on the confirmation, or on a poll before it):
			// later looks compare with this one.
			first, ver0, ready = false, ver, nil
			continue
		}
		if name == "" && ver != ver0 {
			return nil
		}
	}
}

func (b *Backend) waitCheck(ctx context.Context, dir, name string) (string, bool, error) {
	res, err := b.run(ctx, scriptWaitCheck, dir, name, b.roArg())
	if err != nil {
		return "", false, err
	}
	r, _ := res.([]any)
	if len(r) != 2 {
		return "", false, fmt.Errorf("malformed reply %v", res)
	}
	ver, _ := r[0].(string)
	n, _ := r[1].(int64)
	return ver, n == 1, nil
}
