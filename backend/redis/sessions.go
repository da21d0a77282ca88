package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/epochal/epochal/backend"
)

// idKeep is how long an ended session's id is remembered (so that it is
// not opened again) after the session ended.
const idKeep = 10 * time.Minute

// Sessions returns b: a driver is a backend.SessionStore, so locks and
// groups can be built over it.
func (b *Backend) Sessions() backend.Sessions { return b }

// OpenSession starts session id, whose key expires after lease unless
// renewed. The effective lease is lease rounded up to a millisecond (at
// least 1ms). Opening a live session again (a retry) renews it; opening an
// id whose session has ended is backend.ErrSessionGone (for idKeep after
// the end, after which the server forgets the id: callers draw random ids).
func (b *Backend) OpenSession(ctx context.Context, id string, lease time.Duration, holder string) (time.Duration, error) {
	if err := b.check(ctx); err != nil {
		return 0, err
	}
	if err := backend.CheckSessionName("session id", id); err != nil {
		return 0, fmt.Errorf("redis: open session: %w", err)
	}
	if lease < time.Millisecond {
		return 0, fmt.Errorf("redis: open session %q: lease %v is less than 1ms (%w)", id, lease, backend.ErrNotApplied)
	}
	leaseMs := (lease + time.Millisecond - 1).Milliseconds()
	res, err := b.run(ctx, scriptOpenSession, id, leaseMs, holder, ms(time.Now()), idKeep.Milliseconds())
	if err != nil {
		return 0, fmt.Errorf("redis: open session %q: %w", id, err)
	}
	if res.(int64) < 0 {
		return 0, fmt.Errorf("redis: open session %q: %w", id, backend.ErrSessionGone)
	}
	return time.Duration(leaseMs) * time.Millisecond, nil
}

// RenewSession restarts the lease's countdown (PEXPIRE) and records now as
// the heartbeat.
func (b *Backend) RenewSession(ctx context.Context, id string, now time.Time) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if err := backend.CheckSessionName("session id", id); err != nil {
		return fmt.Errorf("redis: renew session: %w", err)
	}
	res, err := b.run(ctx, scriptRenewSession, id, ms(now), idKeep.Milliseconds())
	if err != nil {
		return fmt.Errorf("redis: renew session %q: %w", id, err)
	}
	if res.(int64) < 0 {
		return fmt.Errorf("redis: renew session %q: %w", id, backend.ErrSessionGone)
	}
	return nil
}

// CloseSession deletes the session and its entries, in one script.
func (b *Backend) CloseSession(ctx context.Context, id string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if err := backend.CheckSessionName("session id", id); err != nil {
		return fmt.Errorf("redis: close session: %w", err)
	}
	if _, err := b.run(ctx, scriptCloseSession, id, idKeep.Milliseconds()); err != nil {
		return fmt.Errorf("redis: close session %q: %w", id, err)
	}
	return nil
}

func checkNames(session, dir, name string) error {
	return backend.CheckSessionNames("session id", session, "dir", dir, "entry name", name)
}
