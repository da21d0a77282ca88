package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
)

// call runs f, go-redis calls on behalf of one of the Backend's methods,
// so that the method returns by the time ctx ends, whatever the client's
// options. go-redis bounds a command by its ctx's deadline only with
// ContextTimeoutEnabled (Open sets it; a client given to New may not), and
// never by a ctx canceled without a deadline: it then waits out its own
// ReadTimeout and retries up to MaxRetries times. So when ctx can end, f
// runs on a goroutine of its own, and the caller returns when ctx ends
// with an error wrapping ctx's; f finishes in the background, bounded by
// the client's own timeouts, and a change it asked for may still apply
// (the error does not wrap backend.ErrNotApplied: the outcome is
// unknown). f hands its results back only through its return values.
// Each call counts as one round trip of b (RoundTrips): f sends one
// command, pipeline or script and waits for its answer.
func call[T any](ctx context.Context, b *Backend, f func(ctx context.Context) (T, error)) (T, error) {
	b.trips.Add(1)
	if ctx.Done() == nil {
		v, err := f(ctx)
		return v, closedErr(err)
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f(ctx)
		ch <- result{v, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		select {
		case r = <-ch: // it has just returned
		default:
			var zero T
			return zero, fmt.Errorf("%w (no reply from the server in time)", ctx.Err())
		}
	}
	return r.v, closedErr(ctxErr(ctx, r.err))
}

// closedErr makes go-redis's "client is closed" (a command the client
// never sent) wrap backend.ErrClosed: Close closed the client while the
// call was on its way (or the caller did, for a client given to New).
func closedErr(err error) error {
	if err != nil && errors.Is(err, goredis.ErrClosed) && !errors.Is(err, backend.ErrClosed) {
		return fmt.Errorf("%w (%w)", backend.ErrClosed, err)
	}
	return err
}

// do is call for f without a result.
func do(ctx context.Context, b *Backend, f func(ctx context.Context) error) error {
	_, err := call(ctx, b, func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx) })
	return err
}

// ctxErr makes an error that came as ctx ended wrap ctx's error: go-redis
// reports a deadline it honoured as a network timeout, and a command cut
// short by it as a retry's backoff that ctx ended.
func ctxErr(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, goredis.Nil) {
		return err
	}
	cerr := ctx.Err()
	if d, ok := ctx.Deadline(); cerr == nil && ok && !time.Now().Before(d) {
		cerr = context.DeadlineExceeded // the socket's deadline fired first
	}
	if cerr == nil || errors.Is(err, cerr) {
		return err
	}
	return fmt.Errorf("%w (%w)", cerr, err)
}

// run runs a script with the prefix, the backend's identity and the newest
// point seen as ARGV[1] (see epochLib).
func (b *Backend) run(ctx context.Context, s *goredis.Script, args ...any) (any, error) {
	head := b.p + "\x00" + b.id + "\x00" + strconv.FormatUint(b.seen.Load(), 10)
	res, err := call(ctx, b, func(ctx context.Context) (any, error) {
		return s.Run(ctx, b.c, []string{b.clockK}, append([]any{head}, args...)...).Result()
	})
	if err != nil && strings.Contains(err.Error(), "EPOCHAL_LOST") {
		return nil, b.fail(strings.TrimPrefix(err.Error(), "EPOCHAL_LOST "))
	}
	return res, err
}

// RoundTrips returns how many requests this Backend has sent to its server
// and waited on (a command, a pipeline, a script; backend.RoundTripCounter).
// A script the server no longer caches costs one more, uncounted.
func (b *Backend) RoundTrips() uint64 { return b.trips.Load() }

// logger returns the backend's logger (Config.Logger or slog.Default()).
func (b *Backend) logger() *slog.Logger {
	if b.cfg.Logger != nil {
		return b.cfg.Logger
	}
	return slog.Default()
}

// fail records that the server lost this backend's data (why says how it
// showed) and returns the error every call now returns.
func (b *Backend) fail(why string) error {
	err := fmt.Errorf("redis: prefix %q on %s: %s: %w; reopen the backend once the data is restored or deliberately recreated",
		b.cfg.Prefix, b.cfg.Addr, why, backend.ErrDataLost)
	if b.lost.CompareAndSwap(nil, &err) {
		b.logger().Error("epochal: Redis lost this backend's data; every later call fails", "prefix", b.cfg.Prefix, "addr", b.cfg.Addr, "why", why)
	}
	return *b.lost.Load()
}

// observe records a point of the clock the server showed.
func (b *Backend) observe(p clock.Point) {
	for {
		cur := b.seen.Load()
		if uint64(p) <= cur || b.seen.CompareAndSwap(cur, uint64(p)) {
			return
		}
	}
}

// verify checks what a read returned of the identity key and the clock
// against what this client knew when it sent the read (seen: b.seen then;
// concurrent reads may have seen newer points since), as epochLib does,
// and records the clock.
func (b *Backend) verify(seen uint64, id *goredis.StringCmd, clk *goredis.StringCmd) error {
	if got, err := id.Result(); err != nil && !errors.Is(err, goredis.Nil) {
		return err
	} else if got != b.id {
		return b.fail(fmt.Sprintf("the identity key %sid no longer holds %s: the data was emptied or replaced", b.p, b.id))
	}
	if clk == nil {
		return nil
	}
	n, err := clk.Uint64()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return err
	}
	if n < seen {
		return b.fail(fmt.Sprintf("the clock %sclock is at %d, behind point %d, which this client saw: the data went back in time", b.p, n, seen))
	}
	b.observe(clock.Point(n))
	return nil
}

func ms(t time.Time) int64 { return t.UnixMilli() }
