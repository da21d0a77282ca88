// Package group is group membership with join and leave events, over any
// backend that keeps sessions (mem, Redis, ZooKeeper): group-redis's
// membership, done safely.
//
// A member is an entry of its process's session (see internal/lease): it
// lives as long as the session is renewed, so a member whose process dies
// or stalls leaves within its lease (Redis: a key whose expiry heartbeats
// refresh; ZooKeeper: an ephemeral node of the session). A member whose
// session is lost joins again on a new one by itself; one whose entry a
// delayed request deleted while its session lives (a removal sent by an
// earlier Leave of the same name) is added again within a third of its
// lease, unless another process holds the name by then: it stays out
// until the name is free.
//
// Events come from reads of the group's dir (backend.Sessions ReadDir),
// taken whenever the backend hints at a change and at least every third
// of a lease: each read lists the members at the dir's revision and the
// members who joined since the previous read's revision, so a member who
// joined and left between two reads is reported too (joined and left),
// and a lost notification can delay an event, never lose it. The Events
// channel is buffered; a reader that falls behind gets coalesced events
// (per name, what it has not been told: joined, left, or came and went),
// and the member's heartbeat never waits for it. The dir keeps at least
// the newest backend.MinAddLog joins; a reader whose revision is older
// than that (a watcher cut off from the backend meanwhile) gets an event
// with Gap set: members may have come and gone unreported.
//
// MembersAt returns the members with the revision they reflect, and Watch
// the events after such a snapshot: a list-then-watch that misses nothing
// and counts nothing twice.
//
// What a membership does in the background (its watcher's reads, rejoins
// and removals, its session's renewals) cannot fail a call: failures are
// logged to WithLogger's logger, by default the STM's when the store is an
// *stm.STM (stm.WithLogger), else slog.Default() (looked up at each
// record, so one set after Join is used). Its session counts its loss
// in epochal.session.lost (WithMeterProvider; by default the STM's, else
// OpenTelemetry's global provider).
//
// # Usage
//
//	g, err := group.Join(ctx, s, "workers", "host-a", group.WithData(meta))
//	defer g.Leave(ctx)
//	for ev := range g.Events() { // first: Joined with everyone present, us included
//		fmt.Println("joined", ev.Joined, "left", ev.Left)
//	}
//	members, err := group.Members(ctx, s, "workers") // sorted by name
//
//	snap, err := group.MembersAt(ctx, s, "workers") // members and revision
//	events, err := group.Watch(ctx, s, "workers", snap) // changes after it, until ctx ends
package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/internal/lease"
	"github.com/epochal/epochal/internal/names"
)

// Errors.
var (
	// ErrName: a group or member name is empty or malformed (the rules of
	// ref names; a member name has no '/').
	ErrName = errors.New("group: bad name")
	// ErrMemberExists: a live member of the group already has the name.
	ErrMemberExists = errors.New("group: member name taken")
	// ErrLeft: the member has left (Leave was called).
	ErrLeft = errors.New("group: member has left")
	// ErrRejoining: the member's session was lost and it is joining again,
	// or its entry is gone and it is being added again (Update's data is
	// sent once it is back).
	ErrRejoining = errors.New("group: member lost its session and is rejoining")
	// ErrUnsupported: the store keeps no sessions.
	ErrUnsupported = lease.ErrUnsupported
	// ErrBadLease: WithLease was given a lease that is not positive.
	ErrBadLease = lease.ErrBadLease
)

// DefaultLease is a member's lease unless WithLease says otherwise (on
// ZooKeeper the lease is the session timeout).
const DefaultLease = 10 * time.Second

// DirPrefix is the prefix of every group's dir among a backend's session
// dirs (for inspection tools); the rest is the group's name.
const DirPrefix = "group/"

// Member is one member of a group.
type Member struct {
	Name string
	// Data is the member's data as msgpack (Decode unpacks it); nil if it
	// joined without WithData.
	Data []byte
	// Joined is when it joined (its process's wall clock); Heartbeat its
	// session's last renewal, Lease the session's lease.
	Joined    time.Time
	Heartbeat time.Time
	Lease     time.Duration
	// Holder names the member's process (host/pid/program).
	Holder string
}

// Decode unpacks the member's data into v.
func (m Member) Decode(v any) error {
	if len(m.Data) == 0 {
		return fmt.Errorf("group: member %q has no data", m.Name)
	}
	if err := msgpack.Unmarshal(m.Data, v); err != nil {
		return fmt.Errorf("group: member %q data: %w", m.Name, err)
	}
	return nil
}

// Event is a change of membership since the previous event: names that
// joined and names that left (both sorted). Apply Joined first, then Left:
// a name in both joined after the previous event and has left again (it
// came and went; Members may have shown it meanwhile). A member that left
// and joined again is told as two events, Left then Joined. Gap is set
// when members may have joined and left unreported before this event: the
// group's log of joins no longer reached back to what the reader had
// been told (it keeps at least backend.MinAddLog joins); Joined and Left
// still bring the reader to the membership now.
type Event struct {
	Joined []string
	Left   []string
	Gap    bool
}

// Option configures Join.
type Option func(*options) error

type options struct {
	data    []byte
	hasData bool
	lease   time.Duration
	buffer  int
	log     *slog.Logger
	mp      metric.MeterProvider
	logFn   func() *slog.Logger // at each record (engine.LogSource)
}

// WithLogger sets the logger of the membership's background errors (its
// watcher's failed reads and rejoins, a failed removal, data the store
// refused, its session's failed renewals and loss). Default: the STM's
// (stm.WithLogger) when the store is an *stm.STM, else slog.Default(),
// looked up at each record.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// WithMeterProvider sets where the membership's session counts its loss
// (epochal.session.lost). Default: the STM's when the store is an
// *stm.STM, else otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) error { o.mp = mp; return nil }
}

// observe fills in the logger and meter provider from store (an
// *stm.STM's) or the defaults, and returns the sessions' observer.
func (o *options) observe(store backend.SessionStore) lease.Observer {
	o.logFn = engine.LogSource(o.log, store)
	if h, ok := store.(engine.Host); ok && o.mp == nil {
		o.mp = engine.Of(h).MeterProvider()
	}
	if o.mp == nil {
		o.mp = otel.GetMeterProvider()
	}
	// An instrument's error leaves a no-op one (the API's contract).
	lost, _ := o.mp.Meter(engine.ScopeName).Int64Counter(engine.MetricSessionLost, metric.WithUnit("{session}"), metric.WithDescription("Sessions (of locks and groups) lost: not renewed in time, or ended by the backend"))
	return lease.Observer{Log: o.logFn, Lost: lost}
}

// WithData sets the member's data: any msgpack-encodable value.
func WithData(v any) Option {
	return func(o *options) error {
		b, err := msgpack.Marshal(v)
		if err != nil {
			return fmt.Errorf("group: data: %w", err)
		}
		o.data, o.hasData = b, true
		return nil
	}
}

// WithLease sets the member's lease (default DefaultLease): a member whose
// process dies leaves within about this long.
func WithLease(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: %v", ErrBadLease, d)
		}
		o.lease = d
		return nil
	}
}

// WithBuffer sets the Events channel's buffer (default 64, at least 1).
func WithBuffer(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("group: buffer %d: must be at least 1", n)
		}
		o.buffer = n
		return nil
	}
}

// joined keeps this process's members, so one process cannot join the
// same name twice through one session.
var joined struct {
	mu sync.Mutex
	m  map[[3]any]bool
}

func checkNames(group, member string) error {
	if err := names.Check(group); err != nil {
		return fmt.Errorf("%w: group: %w", ErrName, err)
	}
	if err := names.CheckSegment(member); err != nil {
		return fmt.Errorf("%w: member: %w", ErrName, err)
	}
	return nil
}

// Group is a membership: this process's member of one group.
type Group struct {
	drv    backend.Sessions
	group  string
	member string
	dir    string
	lease  time.Duration
	key    [3]any
	log    func() *slog.Logger // at each record (engine.LogSource)
	obs    lease.Observer

	events chan Event
	track  *tracker
	stop   chan struct{}
	done   chan struct{} // both goroutines have ended

	mu   sync.Mutex
	sess *lease.Session // nil while rejoining
	data []byte
	ver  uint64 // data's version: every Update makes a new one
	// sent is the version of the data the member's entry holds, as far
	// as the entry of sess is known (an add or SetEntry that succeeded),
	// and acc that data: what the member goes back to when the store
	// refuses newer data for good (backend.ErrTooLarge).
	sent uint64
	acc  []byte
	// late: an add of the entry had an unknown outcome and may still
	// arrive, even after a removal: Leave abandons the entry.
	late bool
	left bool

	// write is held (a token in it) by whoever sends the member's data
	// (Update, the watcher catching up): one SetEntry at a time, each
	// with the newest data, so an older one never lands last.
	write chan struct{}

	// The watcher's runs of failures of keep and catchUp (logged at Warn
	// the first time, then at Debug): its goroutine's alone.
	keepFailing, catchUpFailing bool
}

// Join adds member to group in store (an *stm.STM or a driver that keeps
// sessions: a backend.SessionStore) and returns the membership.
// ErrMemberExists if a live member has the name already.
func Join(ctx context.Context, store backend.SessionStore, group, member string, opts ...Option) (*Group, error) {
	if err := checkNames(group, member); err != nil {
		return nil, err
	}
	o := options{lease: DefaultLease, buffer: 64}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	drv, err := lease.Resolve(store)
	if err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	obs := o.observe(store)
	g := &Group{
		drv: drv, group: group, member: member, dir: DirPrefix + group, lease: o.lease,
		log: o.logFn, obs: obs,
		key:    [3]any{drv, group, member},
		events: make(chan Event, o.buffer),
		stop:   make(chan struct{}), done: make(chan struct{}),
		data: o.data, write: make(chan struct{}, 1),
	}
	joined.mu.Lock()
	if joined.m[g.key] {
		joined.mu.Unlock()
		return nil, fmt.Errorf("%w: %q in %q (by this process)", ErrMemberExists, member, group)
	}
	if joined.m == nil {
		joined.m = make(map[[3]any]bool)
	}
	joined.m[g.key] = true
	joined.mu.Unlock()

	sess, ver, data, err := g.join(ctx)
	if err != nil {
		g.forget()
		return nil, err
	}
	st, err := drv.ReadDir(ctx, backend.DirRequest{Dir: g.dir})
	if err != nil {
		if rerr := g.remove(ctx, sess); rerr != nil {
			removalFailed(ctx, g.log(), rerr, "epochal: a member that failed to join could not yet remove its entry; it keeps trying", "group", group, "member", member, "err", rerr)
		}
		g.forget()
		return nil, fmt.Errorf("group: %q: %w", group, err)
	}
	g.sess, g.sent, g.acc = sess, ver, data
	// The first event: everyone present, this member included.
	g.track = newTracker(st.Rev, nil)
	g.track.apply(st)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); g.watch() }()
	go func() { defer wg.Done(); g.track.send(g.events, g.stop) }()
	go func() { wg.Wait(); close(g.events); close(g.done) }()
	return g, nil
}

func (g *Group) forget() {
	joined.mu.Lock()
	delete(joined.m, g.key)
	joined.mu.Unlock()
}

// join adds the member's entry with a session; ver is the version of the
// data it carries. If the store refuses the newest data for good (an
// Update while the member rejoined), it adds the data it last accepted.
func (g *Group) join(ctx context.Context) (*lease.Session, uint64, []byte, error) {
	for {
		sess, err := lease.AcquireWith(ctx, g.drv, g.lease, g.obs)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("group: %q: %w", g.group, err)
		}
		g.mu.Lock()
		data, ver := g.data, g.ver
		g.mu.Unlock()
		// The session's AddEntry first stops what it still removes of
		// this name in the background: an earlier Leave's retries, or the
		// repeated removal of an earlier join whose outcome was unknown
		// (a delayed request), which would delete the new entry.
		_, err = sess.AddEntry(ctx, backend.AddEntryRequest{Dir: g.dir, Name: g.member, Data: data, Time: time.Now()})
		switch {
		case err == nil:
			return sess, ver, data, nil
		case errors.Is(err, backend.ErrSessionGone):
			sess.Lose(err)
			sess.Release()
			continue
		case errors.Is(err, backend.ErrEntryExists):
			sess.Release()
			return nil, 0, nil, fmt.Errorf("%w: %q in %q", ErrMemberExists, g.member, g.group)
		case errors.Is(err, backend.ErrTooLarge) && g.refused(ver, err):
			sess.Release()
			continue // with the data last accepted
		case errors.Is(err, backend.ErrNotApplied):
			sess.Release() // nothing was added: nothing to remove
			return nil, 0, nil, fmt.Errorf("group: %q in %q: %w", g.member, g.group, err)
		}
		// The outcome is unknown: the add may even arrive after its
		// removal. Abandon goes on in the background.
		if aerr := sess.Abandon(ctx, g.dir, g.member); aerr != nil && !errors.Is(aerr, backend.ErrEntryGone) {
			removalFailed(ctx, g.log(), aerr, "epochal: a member could not yet remove an entry whose addition failed; it keeps trying", "group", g.group, "member", g.member, "session", sess.ID(), "err", aerr)
		}
		sess.Release()
		return nil, 0, nil, fmt.Errorf("group: %q in %q: %w", g.member, g.group, err)
	}
}

// removalFailed logs the failure err of a removal made with ctx: at
// Warn, but at Debug when it is only that ctx that ended first (the
// caller gave up; the removal goes on in the background, and the session
// logs it if it keeps failing).
func removalFailed(ctx context.Context, log *slog.Logger, err error, msg string, args ...any) {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		log.Debug(msg, args...)
		return
	}
	log.Warn(msg, args...)
}

// remove removes the member's entry and releases the session, waiting
// while ctx lasts: a removal that fails, or outlasts ctx, goes on in the
// background until the entry or the session is gone (the session may be
// shared with the process's locks and other members: it is not closed).
func (g *Group) remove(ctx context.Context, sess *lease.Session) error {
	defer sess.Release()
	g.mu.Lock()
	late := g.late
	g.mu.Unlock()
	rm := sess.RemoveEntry
	if late {
		rm = sess.Abandon // an add of the watcher's may still arrive
	}
	err := rm(ctx, g.dir, g.member)
	if err != nil && !errors.Is(err, backend.ErrEntryGone) {
		return err
	}
	return nil
}

// watch reads the group on hints and at least every third of a lease,
// rejoins when the member's session is lost, and adds the member's entry
// again when a read finds it gone while the session lives (keep).
func (g *Group) watch() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-g.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	every := g.lease / 3
	backoff := 10 * time.Millisecond
	failing := false     // the last read failed (logged once per run of failures)
	waitFailing := false // the last wait failed (likewise)
	for ctx.Err() == nil {
		g.mu.Lock()
		sess := g.sess
		g.mu.Unlock()
		if sess == nil || sess.Lost() {
			if sess != nil {
				sess.Release()
				g.mu.Lock()
				g.sess = nil
				g.mu.Unlock()
			}
			s, ver, data, err := g.join(ctx)
			if err != nil {
				if ctx.Err() == nil {
					g.log().Warn("epochal: a member whose session was lost could not rejoin; it tries again", "group", g.group, "member", g.member, "err", err)
				}
				if !sleep(ctx, backoff) {
					return
				}
				backoff = min(2*backoff, every)
				continue
			}
			g.mu.Lock()
			g.sess, g.sent, g.acc = s, ver, data
			g.mu.Unlock()
			backoff = 10 * time.Millisecond
		}
		st, err := g.drv.ReadDir(ctx, backend.DirRequest{Dir: g.dir, Adds: true, Since: g.track.revision()})
		if err != nil && !failing && ctx.Err() == nil {
			g.log().Warn("epochal: a member's watcher cannot read its group; it tries again", "group", g.group, "member", g.member, "err", err)
		}
		failing = err != nil
		if err == nil {
			g.track.apply(st)
			if s := g.current(); s != nil && !s.Lost() {
				g.keep(ctx, s, st)
			}
		}
		var lost <-chan struct{}
		if s := g.current(); s != nil {
			lost = s.Done()
		}
		wctx, wcancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-lost:
				wcancel()
			case <-wctx.Done():
			}
		}()
		werr := g.drv.WaitEntries(wctx, g.dir, "", every)
		waitFailed := werr != nil && wctx.Err() == nil // not the session's loss, nor Leave
		wcancel()
		if waitFailed && !waitFailing {
			// The next read still comes, after a pause: hints are lost.
			g.log().Warn("epochal: a member's watcher cannot wait for its group's changes; it reads it again after a pause", "group", g.group, "member", g.member, "err", werr)
		}
		waitFailing = waitFailed
		if err == nil && !waitFailed {
			backoff = 10 * time.Millisecond
			continue
		}
		// A failed read or wait: pause (growing up to a third of the
		// lease) before the next read, so a wait that fails at once
		// does not spin.
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, every)
	}
}

// keep makes sure, after a read of the group (st), that the member's
// entry is there and holds its newest data. A removal of the name by this
// process's pooled session that was delayed in the network (a Leave whose
// removal got no answer in time, then a Join of the same name, whose add
// found the old entry still there and kept it) can delete the entry of a
// live session. The entry is added again: Members misses the member for
// about a third of its lease at most, and its events tell it Left, then
// Joined. If another process has taken the name meanwhile, the member
// stays out (Update says ErrRejoining) until the name is free, and is
// added again at the first read that finds it free.
func (g *Group) keep(ctx context.Context, sess *lease.Session, st backend.DirState) {
	if slices.ContainsFunc(st.Entries, func(e backend.Entry) bool { return e.Name == g.member }) {
		g.kept(sess)
		g.catchUp(ctx, sess)
		return
	}
	g.mu.Lock()
	data, ver := g.data, g.ver
	g.mu.Unlock()
	_, err := sess.AddEntry(ctx, backend.AddEntryRequest{Dir: g.dir, Name: g.member, Data: data, Time: time.Now()})
	switch {
	case err == nil:
		g.kept(sess)
		g.accepted(sess, ver, data)
		g.catchUp(ctx, sess)
	case ctx.Err() != nil:
		// Leave: the member goes anyway.
	case errors.Is(err, backend.ErrTooLarge):
		g.refused(ver, err) // the next read adds the data last accepted (logged)
	case errors.Is(err, backend.ErrEntryExists):
		// Taken since the read: tried again once a read finds it free.
		g.failed(&g.keepFailing, "epochal: a member's entry is gone and another process holds its name; it stays out until the name is free", sess, err)
	case errors.Is(err, backend.ErrSessionGone):
		sess.Lose(err) // the next turn rejoins (the session logs its loss)
	default:
		// The outcome is unknown: the add may arrive later, even after
		// a Leave's removal.
		g.mu.Lock()
		g.late = true
		g.mu.Unlock()
		g.failed(&g.keepFailing, "epochal: a member's entry is gone and adding it again failed; the next read tries again", sess, err)
	}
}

// kept ends a run of keep's failures: the member's entry is there.
func (g *Group) kept(sess *lease.Session) {
	if g.keepFailing {
		g.keepFailing = false
		g.log().Info("epochal: a member's entry that was gone is back", "group", g.group, "member", g.member, "session", sess.ID())
	}
}

// failed logs a failure of the watcher's background step whose run of
// failures *run tracks: at Warn the first of a run, at Debug the repeats
// (the step is tried again after each read).
func (g *Group) failed(run *bool, msg string, sess *lease.Session, err error) {
	if *run {
		g.log().Debug(msg, "group", g.group, "member", g.member, "session", sess.ID(), "err", err)
		return
	}
	*run = true
	g.log().Warn(msg, "group", g.group, "member", g.member, "session", sess.ID(), "err", err)
}

// catchUp sends the member's newest data if its entry (of sess) may hold
// older: the data an Update stored while the member rejoined (the add
// carried what it read before), or an Update whose SetEntry failed. A
// failure is tried again after the next read.
func (g *Group) catchUp(ctx context.Context, sess *lease.Session) {
	select {
	case g.write <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-g.write }()
	for {
		g.mu.Lock()
		data, ver, sent, cur := g.data, g.ver, g.sent, g.sess
		g.mu.Unlock()
		if ver == sent || cur != sess {
			return
		}
		if err := g.drv.SetEntry(ctx, sess.ID(), g.dir, g.member, data); err != nil {
			switch {
			case ctx.Err() != nil: // Leave
			case errors.Is(err, backend.ErrSessionGone):
				sess.Lose(err) // the session logs its loss
			case errors.Is(err, backend.ErrTooLarge):
				g.refused(ver, err) // logged
			case errors.Is(err, backend.ErrEntryGone):
				// The next read adds it again (keep).
				g.log().Debug("epochal: a member's entry was gone when it sent its newest data; the next read adds it again", "group", g.group, "member", g.member, "session", sess.ID(), "err", err)
			default:
				g.failed(&g.catchUpFailing, "epochal: a member could not send its newest data; the next read tries again", sess, err)
			}
			return
		}
		g.catchUpFailing = false
		g.accepted(sess, ver, data)
	}
}

// accepted records that the entry of sess holds data, of version ver.
func (g *Group) accepted(sess *lease.Session, ver uint64, data []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sess == sess && ver > g.sent {
		g.sent, g.acc = ver, data
	}
}

// refused handles the store's refusal, for good (err wraps
// backend.ErrTooLarge), of the member's data of version ver: if it is
// still the newest, the member goes back to the data it last had
// accepted, and refused reports true. The Update that asked for it was
// told already (its own SetEntry failed, or it returned ErrRejoining).
func (g *Group) refused(ver uint64, err error) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ver != ver || ver == g.sent {
		return false
	}
	g.data, g.ver = g.acc, g.sent
	g.log().Warn("epochal: the store refused a group member's data; the member keeps the data it had", "group", g.group, "member", g.member, "err", err)
	return true
}

func (g *Group) current() *lease.Session {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sess
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Events returns the membership's events. The first is a Joined event
// listing the members present at Join, this one included. It is closed
// after Leave.
func (g *Group) Events() <-chan Event { return g.events }

// Name is the group's name; Member this member's.
func (g *Group) Name() string   { return g.group }
func (g *Group) Member() string { return g.member }

// Update replaces the member's data (any msgpack-encodable value). The
// data is the member's from then on, whatever Update returns: while the
// member rejoins (ErrRejoining) it is sent once the rejoin's add is in,
// and if the backend failed, the member's watcher sends it again after
// its next read of the group (within a third of the lease). Only data the
// store refuses for good (an error wrapping backend.ErrTooLarge: larger
// than a ZooKeeper request may be) is dropped: the member keeps the data
// it had, and a rejoin carrying the refused data adds the older instead
// (logged).
func (g *Group) Update(ctx context.Context, v any) error {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return fmt.Errorf("group: data: %w", err)
	}
	g.mu.Lock()
	if g.left {
		g.mu.Unlock()
		return fmt.Errorf("%w (member %q)", ErrLeft, g.member)
	}
	g.data = b
	g.ver++
	sess := g.sess
	g.mu.Unlock()
	if sess == nil || sess.Lost() {
		return fmt.Errorf("%w (member %q; the new data goes with it)", ErrRejoining, g.member)
	}
	select {
	case g.write <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("group: %q: update: %w (the data is sent in the background)", g.member, ctx.Err())
	}
	defer func() { <-g.write }()
	g.mu.Lock()
	data, ver := g.data, g.ver // the newest: a later Update may have come
	g.mu.Unlock()
	if err := g.drv.SetEntry(ctx, sess.ID(), g.dir, g.member, data); err != nil {
		switch {
		case errors.Is(err, backend.ErrEntryGone):
			return fmt.Errorf("%w (member %q; the new data goes with it)", ErrRejoining, g.member)
		case errors.Is(err, backend.ErrTooLarge):
			g.refused(ver, err)
			return fmt.Errorf("group: %q: update: %w (the member keeps its data)", g.member, err)
		}
		return fmt.Errorf("group: %q: update: %w", g.member, err)
	}
	g.accepted(sess, ver, data)
	return nil
}

// Leave removes the member and closes Events. A second Leave returns
// ErrLeft. It waits for the removal while ctx lasts; if ctx ends first
// (the backend does not answer), the error wraps ctx's and the removal
// goes on in the background until the member is gone (or its session:
// the member leaves within its lease at worst).
func (g *Group) Leave(ctx context.Context) error {
	g.mu.Lock()
	if g.left {
		g.mu.Unlock()
		return fmt.Errorf("%w (member %q)", ErrLeft, g.member)
	}
	g.left = true
	g.mu.Unlock()
	close(g.stop)
	leave := func(ctx context.Context) error {
		<-g.done // the watcher no longer rejoins
		defer g.forget()
		g.mu.Lock()
		sess := g.sess
		g.sess = nil
		g.mu.Unlock()
		if sess == nil {
			return nil
		}
		return g.remove(ctx, sess)
	}
	select {
	case <-g.done:
	case <-ctx.Done():
		select {
		case <-g.done:
		default:
			// The watcher is still in a call: leave once it is out.
			go func() {
				if err := leave(context.Background()); err != nil {
					g.log().Warn("epochal: a member's removal in the background failed; its session's end removes it", "group", g.group, "member", g.member, "err", err)
				}
			}()
			return fmt.Errorf("group: %q: leave: %w (the member is removed in the background)", g.member, ctx.Err())
		}
	}
	if err := leave(ctx); err != nil {
		return fmt.Errorf("group: %q: leave: %w", g.member, err)
	}
	return nil
}

// Members lists the live members of a group in store, sorted by name.
func Members(ctx context.Context, store backend.SessionStore, group string) ([]Member, error) {
	snap, err := MembersAt(ctx, store, group)
	return snap.Members, err
}

// Snapshot is a group's membership as one read saw it.
type Snapshot struct {
	// Members are the live members at Rev, sorted by name.
	Members []Member
	// Rev is the group's revision the list reflects: a number of the
	// backend's that grows with every join and leave (see
	// backend.Sessions ReadDir); compare it only with revisions of the
	// same group and backend.
	Rev uint64
}

// MembersAt lists the live members of a group in store with the revision
// the list reflects: Watch from it reports every change after it.
func MembersAt(ctx context.Context, store backend.SessionStore, group string) (Snapshot, error) {
	if err := names.Check(group); err != nil {
		return Snapshot{}, fmt.Errorf("%w: group: %w", ErrName, err)
	}
	drv, err := lease.Resolve(store)
	if err != nil {
		return Snapshot{}, fmt.Errorf("group: %w", err)
	}
	st, err := drv.ReadDir(ctx, backend.DirRequest{Dir: DirPrefix + group, Details: true})
	if err != nil {
		return Snapshot{}, fmt.Errorf("group: %q: %w", group, err)
	}
	return Snapshot{Members: members(st.Entries), Rev: st.Rev}, nil
}

func members(es []backend.Entry) []Member {
	out := make([]Member, len(es))
	for i, e := range es {
		out[i] = Member{
			Name: e.Name, Data: e.Data, Joined: e.Created,
			Heartbeat: e.Session.Heartbeat, Lease: e.Session.Lease, Holder: e.Session.Holder,
		}
	}
	slices.SortFunc(out, func(a, b Member) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Watch returns the events of a group in store after a snapshot (from
// MembersAt, or one kept from earlier: only the members' names and the
// revision are used), as Group.Events gives them: applied to the
// snapshot's members they give the membership, and a member who came and
// went after the snapshot is reported. It reads the group on the
// backend's hints and at least every third of the lease (WithLease; the
// other options but WithBuffer are ignored). The channel is closed when
// ctx ends. A snapshot older than the group's log of joins reaches (more
// than backend.MinAddLog joins ago) gives a first event with Gap set.
func Watch(ctx context.Context, store backend.SessionStore, group string, from Snapshot, opts ...Option) (<-chan Event, error) {
	if err := names.Check(group); err != nil {
		return nil, fmt.Errorf("%w: group: %w", ErrName, err)
	}
	o := options{lease: DefaultLease, buffer: 64}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	drv, err := lease.Resolve(store)
	if err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("group: %q: %w", group, err)
	}
	log := engine.LogSource(o.log, store)
	present := make([]string, len(from.Members))
	for i, m := range from.Members {
		present[i] = m.Name
	}
	t := newTracker(from.Rev, present)
	out := make(chan Event, o.buffer)
	dir := DirPrefix + group
	every := o.lease / 3
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		backoff := 10 * time.Millisecond
		failing := false     // the last read failed (logged once per run of failures)
		waitFailing := false // the last wait failed (likewise)
		for ctx.Err() == nil {
			st, err := drv.ReadDir(ctx, backend.DirRequest{Dir: dir, Adds: true, Since: t.revision()})
			if err != nil && !failing && ctx.Err() == nil {
				log().Warn("epochal: a group watch cannot read its group; it tries again", "group", group, "err", err)
			}
			failing = err != nil
			if err == nil {
				t.apply(st)
			}
			werr := drv.WaitEntries(ctx, dir, "", every)
			waitFailed := werr != nil && ctx.Err() == nil
			if waitFailed && !waitFailing {
				log().Warn("epochal: a group watch cannot wait for its group's changes; it reads it again after a pause", "group", group, "err", werr)
			}
			waitFailing = waitFailed
			if err == nil && !waitFailed {
				backoff = 10 * time.Millisecond
				continue
			}
			// A failed read or wait: pause before the next read, so a
			// wait that fails at once does not spin.
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, every)
		}
	}()
	go func() { defer wg.Done(); t.send(out, ctx.Done()) }()
	go func() { wg.Wait(); close(out) }()
	return out, nil
}
