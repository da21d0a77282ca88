package jepsenlite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ProxyMode is what a Proxy does with the traffic it carries.
type ProxyMode int

// Proxy modes.
const (
	// ProxyPass forwards every byte as it comes.
	ProxyPass ProxyMode = iota
	// ProxyDelay forwards every chunk read, in both directions, once the
	// delay has passed since it was read.
	ProxyDelay
	// ProxyDrop is a partition: nothing is forwarded. Bytes are read and
	// discarded, so writers do not block and readers wait; new
	// connections are accepted but not connected upstream. A connection
	// that lost bytes, or was accepted meanwhile, carries a broken stream:
	// it is reset when the mode changes, and forwards nothing until then.
	ProxyDrop
	// ProxyReset resets every connection (RST) and every new one at once.
	ProxyReset
	// ProxyJitter forwards every chunk read, in both directions, after a
	// delay drawn anew for each chunk between 0 and the jitter; a chunk
	// never overtakes an earlier one of its connection and direction, but
	// one connection's traffic overtakes another's.
	ProxyJitter
	// ProxySlow delays every chunk of some connections (each, existing
	// or new, picked with even odds when the mode is set or it connects)
	// by the delay, in both directions; the others pass: one connection
	// crawls while the rest work.
	ProxySlow
)

func (m ProxyMode) String() string {
	switch m {
	case ProxyPass:
		return "pass"
	case ProxyDelay:
		return "delay"
	case ProxyDrop:
		return "drop"
	case ProxyReset:
		return "reset"
	case ProxyJitter:
		return "jitter"
	case ProxySlow:
		return "slow"
	}
	return fmt.Sprintf("ProxyMode(%d)", int(m))
}

// proxyDialTimeout bounds connecting upstream.
const proxyDialTimeout = 5 * time.Second

// Proxy is a TCP proxy in this process: it listens on a free 127.0.0.1 port
// and forwards each connection to one upstream address, in the mode set
// last, which may change at any time. Its methods are safe for concurrent
// use.
type Proxy struct {
	ln       net.Listener
	upstream string
	ctx      context.Context // ends at Close: aborts dials upstream
	cancel   context.CancelFunc
	wg       sync.WaitGroup // the accept loop and every connection's goroutines

	mu     sync.Mutex
	mode   ProxyMode
	delay  time.Duration
	conns  map[*proxyConn]struct{}
	closed bool
}

// NewProxy starts a proxy to upstream (host:port) in ProxyPass mode. The
// caller must Close it.
func NewProxy(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{ln: ln, upstream: upstream, ctx: ctx, cancel: cancel, conns: map[*proxyConn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is where clients connect: "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Upstream is the address connections are forwarded to.
func (p *Proxy) Upstream() string { return p.upstream }

// Mode returns the current mode and, in ProxyDelay, the delay (in
// ProxyJitter, the jitter).
func (p *Proxy) Mode() (ProxyMode, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.delay
}

// Conns returns the number of live connections.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Pass forwards traffic again (see ProxyPass).
func (p *Proxy) Pass() { p.setMode(ProxyPass, 0) }

// Heal is Pass.
func (p *Proxy) Heal() { p.Pass() }

// Delay delays every chunk by d in both directions (see ProxyDelay).
func (p *Proxy) Delay(d time.Duration) { p.setMode(ProxyDelay, d) }

// Jitter delays every chunk by a random 0 to d in both directions, in
// order within a connection (see ProxyJitter).
func (p *Proxy) Jitter(d time.Duration) { p.setMode(ProxyJitter, d) }

// Slow delays every chunk of about half the connections by d in both
// directions (see ProxySlow).
func (p *Proxy) Slow(d time.Duration) { p.setMode(ProxySlow, d) }

// Drop stops forwarding (see ProxyDrop).
func (p *Proxy) Drop() { p.setMode(ProxyDrop, 0) }

// Reset resets every live connection and refuses new ones (see
// ProxyReset). It returns once the live ones are closed.
func (p *Proxy) Reset() { p.setMode(ProxyReset, 0) }

// setMode switches modes. Leaving ProxyDrop resets the connections whose
// stream it broke; entering ProxyReset resets them all. It returns once
// those are closed.
func (p *Proxy) setMode(m ProxyMode, d time.Duration) {
	var reset []*proxyConn
	p.mu.Lock()
	p.mode, p.delay = m, d
	for c := range p.conns {
		c.slow = m == ProxySlow && rand.IntN(2) == 0
	}
	if m != ProxyDrop {
		for c := range p.conns {
			if m == ProxyReset || c.broken {
				reset = append(reset, c)
			}
		}
	}
	p.mu.Unlock()
	for _, c := range reset {
		c.end(true)
	}
}

// Close stops the proxy: it no longer accepts connections, and resets those
// it carries. It returns once all of its goroutines have ended.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	for _, c := range conns {
		c.end(true)
	}
	p.wg.Wait()
	return err
}

// abortTCP closes c with a RST.
func abortTCP(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil { // out of file descriptors, say: back off
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.mu.Lock()
		switch {
		case p.closed || p.mode == ProxyReset:
			p.mu.Unlock()
			abortTCP(nc)
		case p.mode == ProxyDrop:
			c := &proxyConn{p: p, client: nc, broken: true, done: make(chan struct{})}
			p.conns[c] = struct{}{}
			p.wg.Add(1)
			p.mu.Unlock()
			go c.discard()
		default:
			p.wg.Add(1)
			p.mu.Unlock()
			go p.connect(nc)
		}
	}
}

// connect connects client upstream and starts forwarding.
func (p *Proxy) connect(client net.Conn) {
	defer p.wg.Done()
	d := net.Dialer{Timeout: proxyDialTimeout}
	server, err := d.DialContext(p.ctx, "tcp", p.upstream)
	if err != nil {
		abortTCP(client) // as a refused connection would be
		return
	}
	c := &proxyConn{p: p, client: client, server: server, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed || p.mode == ProxyReset {
		p.mu.Unlock()
		abortTCP(client)
		abortTCP(server)
		return
	}
	// A partition that began while dialing: the stream is intact, so the
	// connection is kept; its bytes are dropped like everyone's.
	c.slow = p.mode == ProxySlow && rand.IntN(2) == 0
	p.conns[c] = struct{}{}
	p.wg.Add(4)
	p.mu.Unlock()
	up := make(chan proxyChunk, 16)
	down := make(chan proxyChunk, 16)
	go c.read(client, up)
	go c.write(server, up)
	go c.read(server, down)
	go c.write(client, down)
}

// proxyConn is one connection through a Proxy.
type proxyConn struct {
	p      *Proxy
	client net.Conn
	server net.Conn // nil when accepted during a partition

	broken bool // guarded by p.mu: bytes were dropped; it never forwards again
	slow   bool // guarded by p.mu: delayed in ProxySlow

	halves atomic.Int32 // directions that ended with EOF
	once   sync.Once
	done   chan struct{} // closed by end
}

// proxyChunk is bytes read, to be written at due (zero: at once).
type proxyChunk struct {
	b   []byte
	due time.Time
}

// delayNow returns the delay of a chunk of c read now.
func (c *proxyConn) delayNow() time.Duration {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.mode == ProxyDelay, p.mode == ProxySlow && c.slow:
		return p.delay
	case p.mode == ProxyJitter:
		return rand.N(p.delay + 1)
	}
	return 0
}

// forward reports whether a chunk of c may be written now; if not, it is
// dropped and the connection's stream is broken.
func (p *Proxy) forward(c *proxyConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == ProxyDrop {
		c.broken = true
	}
	return !c.broken
}

// read reads src into q until EOF (then closes q) or an error (then resets
// the connection).
func (c *proxyConn) read(src net.Conn, q chan<- proxyChunk) {
	defer c.p.wg.Done()
	defer close(q)
	buf := make([]byte, 32<<10)
	var lastDue time.Time // chunks leave in the order they came
	for {
		n, err := src.Read(buf)
		if n > 0 {
			ch := proxyChunk{b: append([]byte(nil), buf[:n]...)}
			if d := c.delayNow(); d > 0 {
				ch.due = time.Now().Add(d)
			}
			if !ch.due.IsZero() && ch.due.Before(lastDue) {
				ch.due = lastDue
			}
			lastDue = ch.due
			select {
			case q <- ch:
			case <-c.done:
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				c.end(true)
			}
			return
		}
	}
}

// write writes the chunks of q to dst, each at its time, and passes EOF on
// when q is closed.
func (c *proxyConn) write(dst net.Conn, q <-chan proxyChunk) {
	defer c.p.wg.Done()
	for ch := range q {
		if !ch.due.IsZero() {
			t := time.NewTimer(time.Until(ch.due))
			select {
			case <-t.C:
			case <-c.done:
				t.Stop()
				return
			}
		}
		if !c.p.forward(c) {
			continue
		}
		if _, err := dst.Write(ch.b); err != nil {
			c.end(true)
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	if c.halves.Add(1) == 2 {
		c.end(false)
	}
}

// discard reads and drops what the client of a connection accepted during
// a partition sends, until the connection ends.
func (c *proxyConn) discard() {
	defer c.p.wg.Done()
	_, err := io.Copy(io.Discard, c.client)
	if err == nil { // EOF: the client is done; nothing will answer it
		c.end(false)
		return
	}
	c.end(true)
}

// end closes both sides of the connection, with a RST when reset, and
// forgets it.
func (c *proxyConn) end(reset bool) {
	c.once.Do(func() {
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
		close(c.done)
		for _, nc := range []net.Conn{c.client, c.server} {
			switch {
			case nc == nil:
			case reset:
				abortTCP(nc)
			default:
				_ = nc.Close()
			}
		}
	})
}
