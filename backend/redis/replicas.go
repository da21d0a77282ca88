package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ErrNotReplicated reports that a step applied on the master but fewer
// than Config.WaitReplicas replicas acknowledged it within
// Config.WaitTimeout. It does not wrap backend.ErrNotApplied: the write
// is on the master, and a failover to a replica that lacks it would lose
// it, so its outcome is unknown to the caller. The engine settles it as
// any unknown outcome (I7): it looks the record up with AbortRecord, which
// waits for the replicas too; if they have caught up, the commit stands
// and Dosync succeeds, and otherwise Dosync returns stm.ErrOutcomeUnknown
// wrapping this error. A step that was refused (a conflict) does not
// report it. An error wrapping it but not stm.ErrOutcomeUnknown comes
// from an AbortRecord on another's behalf (a read confirming a missing
// record, a commit aborting an expired holder): nothing of the caller's
// committed, and it could not act on an abort a failover may lose.
var ErrNotReplicated = errors.New("redis: not acknowledged by enough replicas")

// defaultWaitTimeout is Config.WaitTimeout's default.
const defaultWaitTimeout = time.Second

func (c *Config) validateWait() error {
	switch {
	case c.WaitReplicas < 0:
		return fmt.Errorf("%w: WaitReplicas is %d, want 0 (no waiting) or more", ErrConfig, c.WaitReplicas)
	case c.WaitTimeout < 0:
		return fmt.Errorf("%w: WaitTimeout is %v, want more than 0 (0: the default, %v)", ErrConfig, c.WaitTimeout, defaultWaitTimeout)
	case c.WaitTimeout == 0:
		c.WaitTimeout = defaultWaitTimeout
	}
	return nil
}

// runAcked is run for a step whose acknowledgement callers rely on: with
// Config.WaitReplicas, the script, a write of the marker key {P}:ack and
// WAIT go in one pipeline, on one connection. WAIT waits for the replicas
// to reach that connection's last write; the marker makes it the newest
// in the replication stream even when the script wrote nothing (a
// repeat, or AbortRecord finding a record committed by another
// connection), so WAIT covers every write before it. A WAIT that falls
// short or fails is an error (wrapping ErrNotReplicated, or WAIT's) only
// with an answer the caller relies on (relied); a refusal comes back as it
// is, with no error.
func (b *Backend) runAcked(ctx context.Context, s *goredis.Script, args ...any) (any, error) {
	if b.cfg.WaitReplicas <= 0 {
		return b.run(ctx, s, args...)
	}
	head := b.p + "\x00" + b.id + "\x00" + strconv.FormatUint(b.seen.Load(), 10)
	argv := append([]any{head}, args...)
	type result struct {
		v       any
		acked   int64
		waitErr error
	}
	r, err := call(ctx, b, func(ctx context.Context) (result, error) {
		for attempt := 0; ; attempt++ {
			var ev *goredis.Cmd
			var wait *goredis.Cmd
			_, _ = b.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
				ev = s.EvalSha(ctx, p, []string{b.clockK}, argv...)
				p.Set(ctx, b.p+"ack", "", 0)
				wait = p.Do(ctx, "WAIT", b.cfg.WaitReplicas, b.cfg.WaitTimeout.Milliseconds())
				return nil
			})
			v, err := ev.Result()
			if err != nil && attempt == 0 && goredis.HasErrorPrefix(err, "NOSCRIPT") {
				if err := s.Load(ctx, b.c).Err(); err != nil {
					return result{}, err
				}
				continue
			}
			if err != nil {
				return result{}, err
			}
			n, err := wait.Int64()
			return result{v, n, err}, nil
		}
	})
	if err != nil && strings.Contains(err.Error(), "EPOCHAL_LOST") {
		return nil, b.fail(strings.TrimPrefix(err.Error(), "EPOCHAL_LOST "))
	}
	if err != nil {
		return nil, err
	}
	if !relied(s, r.v) {
		return r.v, nil
	}
	if r.waitErr != nil {
		return nil, fmt.Errorf("WAIT: %w", r.waitErr)
	}
	if r.acked < int64(b.cfg.WaitReplicas) {
		return r.v, fmt.Errorf("%w: WAIT %d: %d acknowledged within %v; the step's write applied on the master, and a failover may lose it",
			ErrNotReplicated, b.cfg.WaitReplicas, r.acked, b.cfg.WaitTimeout)
	}
	return r.v, nil
}

// relied reports whether the answer v of script s is one its caller acts
// on as a write that must survive a failover, so that a WAIT that fell
// short (or failed) makes it an unknown outcome. A refusal is not: a
// one-phase commit's conflicts (nothing written) or aborted (a tombstone
// refused it), CommitRecord finding the record aborted or gone. It
// certainly did not commit, whatever a failover keeps, and is returned as
// it is, so that the caller retries (before, a conflict met while a
// replica lagged became stm.ErrOutcomeUnknown). Every AbortRecord answer
// is relied on: committed settles an unknown outcome as committed, and
// aborted (or the tombstone it wrote) lets the caller retry a commit or
// roll another transaction's intents back, which an abort lost in a
// failover would undo (the holder could then commit). Any other script,
// or an answer of a shape not known here, counts as relied on.
func relied(s *goredis.Script, v any) bool {
	switch s {
	case scriptOnePhase:
		r, ok := v.([]any)
		if !ok || len(r) == 0 {
			return true
		}
		st, ok := r[0].(int64)
		return !ok || st != 0 && st != 3
	case scriptCommitRecord:
		st := flat(v)["status"]
		return st != "aborted" && st != ""
	}
	return true
}

// probeWait checks at Open and New, with Config.WaitReplicas, that the
// server lets this client run WAIT: WAIT 0 0 writes nothing and returns
// at once. Without the check, a user whose ACL lacks WAIT opened fine and
// then had every acknowledged step apply and its WAIT refused after it:
// each commit ended in ErrOutcomeUnknown although it applied.
func (b *Backend) probeWait(ctx context.Context) error {
	if b.cfg.WaitReplicas <= 0 {
		return nil
	}
	err := do(ctx, b, func(ctx context.Context) error { return b.c.Do(ctx, "WAIT", 0, 0).Err() })
	if err != nil {
		return fmt.Errorf("redis: open %s: WaitReplicas %d needs the WAIT command, and WAIT 0 0 failed (an ACL user needs +wait, see docs/operations.md): %w",
			b.cfg.Addr, b.cfg.WaitReplicas, err)
	}
	return nil
}
