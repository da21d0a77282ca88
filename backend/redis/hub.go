package redis

import (
	"context"
	"log/slog"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
)

const (
	// hubRetry is the least time between two Pub/Sub connections of a
	// hub (after an error, so that a server that is down is not dialled
	// in a loop).
	hubRetry = 100 * time.Millisecond
	// hubStall is how long a subscribe, unsubscribe or ping may go
	// unanswered before the hub drops its connection and makes another.
	hubStall = 10 * time.Second
	// hubPing is how often the hub pings its connection while it has
	// channels (a dead connection is noticed within hubPing+hubStall;
	// the waiters' polls cover the meantime).
	hubPing = 5 * time.Second
)

// hub shares one Pub/Sub connection among every WaitEntries of a Backend.
//
// Waiters never touch the connection: join registers a waiter on its
// channel and leave drops it, under mu only. One writer goroutine sends
// SUBSCRIBE for each channel that has waiters and is not subscribed, and
// UNSUBSCRIBE for each subscribed channel that has none left (so a channel
// is subscribed while it has waiters, and only then). One reader goroutine
// per connection reads the replies and the messages: a message wakes every
// waiter of its channel whose name matches (or who waits on any change),
// by a non-blocking send on a channel of capacity 1, so a slow waiter never
// holds the reader up and never loses its wake-up (a full channel means it
// is already woken).
//
// # Confirmation
//
// A waiter must not look at its dir before the server has subscribed the
// hub to the dir's channel (the ordering WaitEntries relies on: a change
// published after the look is then delivered). The writer is the only
// sender of (UN)SUBSCRIBE on a connection, and it records each command in
// the channel's state (sub: the last command sent was SUBSCRIBE; n:
// commands sent and not answered yet) before it sends it. The server
// answers a connection's commands in order, one reply per channel, so
// when a reply brings n to 0 with sub set, the server has processed every
// command the hub sent for the channel, the last being SUBSCRIBE: the
// channel is subscribed, and stays so until the writer sends UNSUBSCRIBE,
// which it does only once the channel has no waiters. Only then (sub && n
// == 0) is a waiter readied: at once if it joins such a channel, else by
// the reader when the last reply comes in. Churn on one channel is safe
// by the count: after SUBSCRIBE, UNSUBSCRIBE (last waiter gone), SUBSCRIBE
// (a new waiter), the reply to the first SUBSCRIBE leaves n at 2 and
// readies no one, although the server may unsubscribe next; the new
// waiter is readied by the reply to the second SUBSCRIBE only. A message
// is delivered to the waiters registered when the reader reads it, and a
// waiter stays registered from before its first look until it returns,
// so a message published after that look reaches it.
//
// # Connections
//
// go-redis reconnects a PubSub after an error, and subscribes again to its
// channels: the replies to commands sent on the old connection are lost,
// and so are the messages published meanwhile, which would put the counts
// out. So each connection is an epoch: when the reader or the writer gets
// an error, when a reply comes that the counts do not expect (go-redis
// reconnected without telling), or when a command goes unanswered for
// hubStall, the hub closes that PubSub, forgets every channel's state and
// makes a new PubSub, on which the writer subscribes again to every channel
// with waiters. Waiters already readied stay readied: they may miss the
// hints published between the loss and the new subscription, and their
// poll (waitPoll) notices those changes. Waiters not readied yet are
// readied by the new epoch's replies; meanwhile, and whenever the
// confirmation is late, a waiter's first poll does its first look (it does
// not wait for the confirmation for longer than a poll), so a wait never
// depends on the connection for more than a poll.
type hub struct {
	c      goredis.UniversalClient
	log    func() *slog.Logger // the backend's logger
	poll   time.Duration       // WaitEntries looks at its dir this often
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed by close
	kick   chan struct{} // capacity 1: the writer has work
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	started bool // the writer runs
	chans   map[string]*hubChan
	ps      *goredis.PubSub // this epoch's; nil until the writer needs one
	epoch   uint64
	pingAt  time.Time // when the unanswered ping was sent (zero: none)
}

// hubChan is one channel's waiters and its state in this epoch.
type hubChan struct {
	waiters map[*hubWaiter]struct{}
	sub     bool      // the last command sent this epoch was SUBSCRIBE
	n       int       // commands sent this epoch and not answered yet
	since   time.Time // when n last moved (while n > 0)
}

type hubWaiter struct {
	ch      string
	name    string        // "" wakes on any message
	ready   chan struct{} // closed once the subscription is confirmed
	readied bool
	wake    chan struct{} // capacity 1: a matching message came
}

func newHub(c goredis.UniversalClient, log func() *slog.Logger) *hub {
	ctx, cancel := context.WithCancel(context.Background())
	return &hub{
		c: c, log: log, poll: waitPoll, ctx: ctx, cancel: cancel,
		done: make(chan struct{}), kick: make(chan struct{}, 1),
		chans: make(map[string]*hubChan),
	}
}

// poke tells the writer to look (mu need not be held).
func (h *hub) poke() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// join registers a waiter on channel ch (backend.ErrClosed once the hub is
// closed). The caller must leave.
func (h *hub) join(ch, name string) (*hubWaiter, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, backend.ErrClosed
	}
	if !h.started {
		h.started = true
		h.wg.Add(1)
		go h.writer()
	}
	w := &hubWaiter{ch: ch, name: name, ready: make(chan struct{}), wake: make(chan struct{}, 1)}
	c := h.chans[ch]
	if c == nil {
		c = &hubChan{waiters: make(map[*hubWaiter]struct{})}
		h.chans[ch] = c
	}
	c.waiters[w] = struct{}{}
	switch {
	case c.sub && c.n == 0:
		w.readied = true
		close(w.ready)
	case !c.sub:
		h.poke()
	}
	return w, nil
}

func (h *hub) leave(w *hubWaiter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.chans[w.ch]
	if c == nil {
		return // closed
	}
	delete(c.waiters, w)
	if len(c.waiters) > 0 {
		return
	}
	if c.sub {
		h.poke() // to unsubscribe
	} else if c.n == 0 {
		delete(h.chans, w.ch)
	}
}

// restartLocked ends the epoch: it returns the PubSub for the caller to
// close (outside mu), and has the writer subscribe again.
func (h *hub) restartLocked() *goredis.PubSub {
	old := h.ps
	h.ps = nil
	h.epoch++
	h.pingAt = time.Time{}
	for ch, c := range h.chans {
		c.sub, c.n = false, 0
		if len(c.waiters) == 0 {
			delete(h.chans, ch)
		}
	}
	h.poke()
	return old
}

func closePS(ps *goredis.PubSub) {
	if ps != nil {
		_ = ps.Close()
	}
}

// writer sends every (UN)SUBSCRIBE and ping of the hub, in the order it
// records them.
func (h *hub) writer() {
	defer h.wg.Done()
	tick := time.NewTicker(hubPing)
	defer tick.Stop()
	var made time.Time // when the last PubSub was made
	for {
		ping, fresh := false, false
		select {
		case <-h.done:
			return
		case <-h.kick:
		case <-tick.C:
			ping = true
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return
		}
		if h.stalledLocked() {
			old := h.restartLocked()
			h.mu.Unlock()
			closePS(old)
			continue
		}
		if h.ps == nil {
			if !h.wantLocked() {
				h.mu.Unlock()
				continue
			}
			if wait := hubRetry - time.Since(made); !made.IsZero() && wait > 0 {
				h.mu.Unlock()
				t := time.NewTimer(wait)
				select {
				case <-h.done:
					t.Stop()
					return
				case <-t.C:
				}
				h.poke() // look again
				continue
			}
			h.ps = h.c.Subscribe(h.ctx) // no channel: no I/O yet
			made = time.Now()
			fresh = true
		}
		ps, epoch := h.ps, h.epoch
		var subs, unsubs []string
		now := time.Now()
		for ch, c := range h.chans {
			want := len(c.waiters) > 0
			if want == c.sub {
				continue
			}
			c.sub = want
			c.n++
			c.since = now
			if want {
				subs = append(subs, ch)
			} else {
				unsubs = append(unsubs, ch)
			}
		}
		ping = ping && len(h.chans) > 0 && h.pingAt.IsZero()
		if ping {
			h.pingAt = now
		}
		h.mu.Unlock()
		var err error
		if len(subs) > 0 {
			err = ps.Subscribe(h.ctx, subs...)
		}
		if err == nil && len(unsubs) > 0 { // never with no channel: that is all of them
			err = ps.Unsubscribe(h.ctx, unsubs...)
		}
		if err == nil && ping {
			err = ps.Ping(h.ctx)
		}
		if fresh {
			// Started after the first SUBSCRIBE, which dials: on a
			// Cluster, go-redis picks the node by the first channel's
			// slot (all of ours share the prefix's hash tag).
			h.wg.Add(1)
			go h.reader(ps, epoch)
		}
		if err != nil {
			h.mu.Lock()
			var old *goredis.PubSub
			if !h.closed && h.epoch == epoch {
				old = h.restartLocked()
			}
			h.mu.Unlock()
			if old != nil {
				h.log().Debug("epochal: the lock and group hints' connection failed; starting it again (waiters poll meanwhile)", "err", err)
			}
			closePS(old)
		}
	}
}

// wantLocked: some channel has waiters.
func (h *hub) wantLocked() bool {
	for _, c := range h.chans {
		if len(c.waiters) > 0 {
			return true
		}
	}
	return false
}

// stalledLocked: a command of this epoch has gone unanswered for hubStall.
func (h *hub) stalledLocked() bool {
	if h.ps == nil {
		return false
	}
	if !h.pingAt.IsZero() && time.Since(h.pingAt) > hubStall {
		return true
	}
	for _, c := range h.chans {
		if c.n > 0 && time.Since(c.since) > hubStall {
			return true
		}
	}
	return false
}

// reader reads one epoch's connection until it fails or the epoch ends.
func (h *hub) reader(ps *goredis.PubSub, epoch uint64) {
	defer h.wg.Done()
	for {
		msg, err := ps.Receive(h.ctx)
		h.mu.Lock()
		if h.closed || h.epoch != epoch {
			// close or restartLocked's caller closes ps.
			h.mu.Unlock()
			return
		}
		if err == nil && !h.handleLocked(msg) {
			err = errUnexpected
		}
		if err != nil {
			old := h.restartLocked()
			h.mu.Unlock()
			h.log().Debug("epochal: the lock and group hints' connection failed; starting it again (waiters poll meanwhile)", "err", err)
			closePS(old)
			return
		}
		h.mu.Unlock()
	}
}

type hubError string

func (e hubError) Error() string { return string(e) }

const errUnexpected = hubError("redis: unexpected pubsub reply")

// handleLocked takes in a reply or a message; false if the counts did not
// expect it (go-redis subscribed again on a connection of its own).
func (h *hub) handleLocked(msg any) bool {
	switch m := msg.(type) {
	case *goredis.Subscription:
		c := h.chans[m.Channel]
		if c == nil || c.n == 0 {
			return false
		}
		c.n--
		c.since = time.Now()
		if c.n > 0 {
			return true
		}
		if c.sub {
			for w := range c.waiters {
				if !w.readied {
					w.readied = true
					close(w.ready)
				}
			}
		} else if len(c.waiters) == 0 {
			delete(h.chans, m.Channel)
		}
	case *goredis.Message:
		c := h.chans[m.Channel]
		if c == nil {
			return true
		}
		for w := range c.waiters {
			if w.name == "" || w.name == m.Payload {
				select {
				case w.wake <- struct{}{}:
				default:
				}
			}
		}
	case *goredis.Pong:
		h.pingAt = time.Time{}
	}
	return true
}

// close ends the hub: waiters return backend.ErrClosed, and the
// connection and the goroutines are gone when it returns.
func (h *hub) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	close(h.done)
	h.cancel()
	ps := h.ps
	h.ps = nil
	h.chans = nil
	h.mu.Unlock()
	closePS(ps)
	h.wg.Wait()
}

// channels is how many channels the hub holds (tests).
func (h *hub) channels() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.chans)
}
