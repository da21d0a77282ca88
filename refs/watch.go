package refs

import (
	"cmp"
	"context"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/engine"
)

// WatchFn is called after a committed change of a ref, with the value
// before and after it.
type WatchFn[T any] func(key string, r *Ref[T], old, new T)

// GapFn is told that a watcher missed the changes committed after point
// from up to and including point to: history was trimmed past them before
// the watcher read it. The watch function is then called once with the last
// value the watcher saw (or T's zero value if it never saw one) as old and
// the value at to as new.
type GapFn func(key string, from, to clock.Point)

// WatchOption configures AddWatch.
type WatchOption func(*watchConfig)

type watchConfig struct {
	gap GapFn
}

// OnGap sets the function told about gaps. Without it a gap is logged with
// at Warn level to the STM's logger (stm.WithLogger): gaps are never silent.
func OnGap(f GapFn) WatchOption { return func(c *watchConfig) { c.gap = f } }

type watch[T any] struct {
	fn  WatchFn[T]
	gap GapFn
}

// watcher follows one handle's ref and calls its watches, on a goroutine
// of its own, in commit order.
type watcher[T any] struct {
	r       *Ref[T]
	watches map[string]watch[T] // guarded by r.mu
	since   clock.Point         // the floor when the first watch was added
	cancel  context.CancelFunc
	// unregister takes cancel off the STM's close list once the watcher
	// is removed, so watching and unwatching leaves nothing behind.
	unregister func()
	ready      chan struct{} // closed after the first read of the history
	done       chan struct{}
	// start says who fixed the watcher's starting point: the first read
	// (startRead, the newest version it found) or AddWatch giving up on
	// waiting for it (startFloor, the point floor at AddWatch). Whichever
	// happens first wins, so the start is never after AddWatch returned.
	start atomic.Int32
}

const (
	startOpen int32 = iota
	startRead
	startFloor
)

// AddWatch calls fn after every change of the ref committed from now on
// (by any process), once per change, in commit order, with the old and new
// value. Callbacks run on a goroutine of this handle's own, so a slow one
// delays only later callbacks of this ref, never commits. A key already
// watched is replaced.
//
// The handle's watcher reads the ref's history before AddWatch returns
// (waiting up to 5 s): changes after that read are the ones
// delivered, to every watch, whichever AddWatch started the watcher. If
// the backend cannot be read in time, the watcher starts from the newest
// point this process has seen, and a change whose old value it never read
// comes with a gap notice.
func (r *Ref[T]) AddWatch(key string, fn WatchFn[T], opts ...WatchOption) {
	var c watchConfig
	for _, o := range opts {
		o(&c)
	}
	racy := r.s.Env().Faults.WatchStartRace
	r.mu.Lock()
	w := r.w
	if w == nil {
		ctx, cancel := context.WithCancel(context.Background())
		w = &watcher[T]{r: r, watches: map[string]watch[T]{}, since: r.floor(), cancel: cancel,
			ready: make(chan struct{}), done: make(chan struct{})}
		w.unregister = r.s.OnClose(cancel)
		r.w = w
		go w.run(ctx)
		if racy {
			r.mu.Unlock()
			w.awaitStart()
			r.mu.Lock()
			if r.w == w {
				w.watches[key] = watch[T]{fn: fn, gap: c.gap}
			}
			r.mu.Unlock()
			return
		}
	} else if racy {
		w.watches[key] = watch[T]{fn: fn, gap: c.gap}
		r.mu.Unlock()
		return
	}
	// Installed before waiting, so that a RemoveWatch of another key
	// meanwhile does not take the watcher away from under this one.
	w.watches[key] = watch[T]{fn: fn, gap: c.gap}
	r.mu.Unlock()
	// Every AddWatch, not only the one that started the watcher, returns
	// once the start point is fixed: a change committed after it returns
	// is after the start, so it is delivered.
	w.awaitStart()
}

// awaitStart waits until the watcher's start point is fixed: by its first
// read of the history or, after 5 s, by the floor.
func (w *watcher[T]) awaitStart() {
	t := time.NewTimer(engine.WatchStart)
	defer t.Stop()
	select {
	case <-w.ready:
	case <-w.done:
	case <-t.C:
		w.start.CompareAndSwap(startOpen, startFloor)
	}
}

// RemoveWatch removes the watch with key; with none left the handle stops
// following the ref. RemoveWatch does not wait for the watcher (as in
// Clojure): a call already under way, or one for the change being delivered
// when it was removed, may still run after RemoveWatch returns; later
// changes are not delivered to it.
func (r *Ref[T]) RemoveWatch(key string) {
	r.mu.Lock()
	w := r.w
	if w != nil {
		delete(w.watches, key)
		if len(w.watches) == 0 {
			r.w = nil
			w.cancel()
			w.unregister()
		}
	}
	r.mu.Unlock()
}

// watchValue is a stored value as watches see it: ok is false for a state
// that holds no T (see Ref.view).
func (r *Ref[T]) watchValue(data []byte) (T, bool, error) {
	if r.view != nil {
		return r.view(r, data)
	}
	v, err := r.decode(data, "for watch")
	return v, err == nil, err
}

// floor is the newest point of the clock r's versions come from that this
// process has seen.
func (r *Ref[T]) floor() clock.Point { return r.s.Env().FloorOf(r.clock()) }

// clock is the backend whose clock numbers r's versions: a ref's versions
// are committed by transactions at the coordinator's points, wherever the
// ref lives; an atom's, promise's or delay's by compare-and-sets on its
// own backend, at that backend's points.
func (r *Ref[T]) clock() backend.Driver {
	if r.kind == backend.KindRef {
		return r.s.Coordinator()
	}
	return r.drv
}

func (w *watcher[T]) run(ctx context.Context) {
	defer close(w.done)
	var sub backend.Subscription
	var feed backend.Feed
	var hints <-chan struct{}
	last, seen, known := w.since, []byte(nil), false
	// fed: the feed has every version appended since the watcher's start
	// (it subscribed before its first read of the history).
	fed := false
	first := true
	// pending holds the versions drained from the feed and not yet
	// delivered; feedMax is the newest point the feed has given. Versions
	// arrive in order, so once feedMax reaches the history's newest point
	// the feed has given every version before it too.
	var pending []backend.Version
	// breaks are the pending versions drained first after the feed lost
	// some (the versions of one drain follow one another, but two drains
	// with a loss between them do not); lostSince says the next version
	// drained is one.
	breaks := map[clock.Point]bool{}
	lostSince := false
	var feedMax clock.Point
	var catchUp time.Time // when the watcher began to wait for the feed
	failing := false      // the last read of the history failed (logged)
	tick := time.NewTicker(engine.WatchPoll)
	defer tick.Stop()
	for {
		if sub == nil {
			if s, err := w.r.drv.Subscribe(ctx, w.r.name); err == nil {
				sub, hints = s, s.C()
				feed, _ = s.(backend.Feed)
				fed = feed != nil && first
				defer sub.Close()
			}
		}
		// The history first, then the feed: every version appended before
		// the history was read is in it, or was trimmed from it after its
		// message was published, so it reaches the feed, in order, before
		// any later version's message.
		vr, err := w.r.versions(ctx)
		if err != nil && !failing && ctx.Err() == nil {
			// Once per run of failures: the watcher tries again at each
			// tick, and delivers (or announces a gap) once it reads.
			w.r.s.Logger().Warn("epochal: watch cannot read the ref's history; it tries again", "ref", w.r.name, "err", err)
		}
		failing = err != nil
		if feed != nil {
			fresh, complete := feed.Drain()
			fed = fed && complete
			lostSince = lostSince || !complete
			if lostSince && len(fresh) > 0 {
				breaks[fresh[0].Point], lostSince = true, false
			}
			for _, v := range fresh {
				feedMax = max(feedMax, v.Point)
			}
			pending = append(pending, fresh...)
		}
		if err == nil {
			if first {
				if w.start.CompareAndSwap(startOpen, startRead) {
					// In time: start from the newest version now.
					last, seen, known = vr.Versions[0].Point, vr.Versions[0].Value, true
				} else {
					// Too late: start from the floor AddWatch saw, with
					// the value then, if history still holds it. The feed
					// began after that point: it cannot vouch for the
					// versions between.
					fed = false
					for _, v := range vr.Versions {
						if v.Point <= last {
							seen, known = v.Value, true
							break
						}
					}
				}
			}
			lagging := fed && vr.Trimmed > last && feedMax < vr.Versions[0].Point
			if lagging && catchUp.IsZero() {
				catchUp = time.Now()
			}
			if lagging && time.Since(catchUp) < engine.WatchFeedWait {
				// History was trimmed past what this watcher saw and the
				// feed has not yet given the versions in between: wait
				// for it rather than skip them (or, after
				// engine.WatchFeedWait, announce a gap).
				select {
				case <-ctx.Done():
					return
				case <-hints:
				case <-time.After(10 * time.Millisecond):
				}
				continue
			}
			last, seen, known = w.deliver(vr, pending, breaks, fed && !lagging, last, seen, known)
			pending, catchUp = nil, time.Time{}
			clear(breaks)
			// Once caught up, the feed vouches for what follows if it is
			// complete from here on.
			fed = feed != nil
		}
		if first {
			first = false
			close(w.ready)
		}
		select {
		case <-ctx.Done():
			return
		case <-hints:
		case <-tick.C:
		}
	}
}

// deliver calls the watches for every version newer than last, from the
// history and the feed, oldest first. A gap is announced where history was
// trimmed past last and the feed cannot vouch for the versions in between.
func (w *watcher[T]) deliver(vr backend.VersionsResult, fresh []backend.Version, breaks map[clock.Point]bool, fed bool, last clock.Point, seen []byte, known bool) (clock.Point, []byte, bool) {
	byPoint := map[clock.Point]backend.Version{}
	for _, v := range vr.Versions {
		if v.Point > last {
			byPoint[v.Point] = v
		}
	}
	// The versions one Drain gives follow one another (backend.Feed):
	// whatever an incomplete feed lost came before the first of them. So
	// do the versions of successive drains, but for those after a loss
	// (breaks).
	fromFeed := make(map[clock.Point]bool, len(fresh))
	for _, v := range fresh {
		if v.Point > last {
			byPoint[v.Point] = v
			fromFeed[v.Point] = true
		}
	}
	if len(byPoint) == 0 {
		return last, seen, known
	}
	newer := make([]backend.Version, 0, len(byPoint))
	for _, v := range byPoint {
		newer = append(newer, v)
	}
	slices.SortFunc(newer, func(a, b backend.Version) int { return cmp.Compare(a.Point, b.Point) })
	firstOnly := w.r.s.Env().Faults.WatchGapFirstOnly
	for i, v := range newer {
		// A version may be missing between the last one delivered and v
		// when history was trimmed past the last one (so what followed
		// it is not all in the history) and the feed cannot vouch for
		// the interval: it is incomplete, and v does not follow the
		// last one in one drain of it. That holds before the first
		// version of a round and equally inside it: between the newest
		// version of a lagging, incomplete feed and the oldest the
		// history still keeps, say.
		vouched := fed || (i > 0 && fromFeed[last] && fromFeed[v.Point] && !breaks[v.Point])
		hole := vr.Trimmed > last && !vouched && (i == 0 || !firstOnly)
		w.call(v, seen, !known || hole, last)
		last, seen, known = v.Point, v.Value, true
	}
	return last, seen, known
}

func (w *watcher[T]) call(v backend.Version, old []byte, gap bool, from clock.Point) {
	r := w.r
	r.mu.Lock()
	if r.w != w {
		r.mu.Unlock()
		return
	}
	keys := make([]string, 0, len(w.watches))
	for k := range w.watches {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ws := make([]watch[T], len(keys))
	for i, k := range keys {
		ws[i] = w.watches[k]
	}
	r.mu.Unlock()

	if r.view != nil {
		// Only the final state holds a T (see Ref.view): whatever the
		// watcher missed before it, no watch-visible change was lost.
		// A state that holds no T (an undelivered promise, a running
		// delay) is not a change watches see, and neither are versions
		// missed before it.
		gap = false
	}
	announced := false
	announce := func() {
		announced = true
		r.s.Env().Tel.Gap(context.Background())
		for i, wt := range ws {
			if wt.gap != nil {
				wt.gap(keys[i], from, v.Point)
			} else {
				r.s.Logger().Warn("epochal: watch missed changes: history was trimmed before it read them", "ref", r.name, "key", keys[i], "after", from, "upto", v.Point)
			}
		}
	}
	if gap {
		// Announced even if v itself is skipped below: the versions
		// missed before it are missed all the same.
		announce()
	}
	if v.Omitted > 0 {
		// Larger than the limit: the history left it out (not read).
		_, err := r.decodeVersion(v)
		r.s.Logger().Warn("epochal: watch skipped a value larger than the limit", "ref", r.name, "point", v.Point, "err", err)
		return
	}
	nv, ok, err := r.watchValue(v.Value)
	if err != nil {
		r.s.Logger().Warn("epochal: watch skipped a value it cannot decode", "ref", r.name, "point", v.Point, "err", err)
		return
	}
	if !ok {
		return // no T in this state (see above)
	}
	var ov T
	if old != nil {
		var isT bool
		if ov, isT, err = r.watchValue(old); err != nil {
			// The old value was skipped: a change the watches missed.
			if !announced {
				announce()
			}
		} else if !isT {
			var zero T
			ov = zero
		}
	}
	for i, wt := range ws {
		wt.fn(keys[i], r, ov, nv)
	}
}
