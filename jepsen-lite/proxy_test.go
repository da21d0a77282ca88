package jepsenlite

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxyEcho is a TCP echo server that counts the connections it accepted.
type proxyEcho struct {
	ln       net.Listener
	accepted atomic.Int32
	wg       sync.WaitGroup
}

func startProxyEcho(t *testing.T) *proxyEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &proxyEcho{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				_, _ = io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); e.wg.Wait() })
	return e
}

func startTestProxy(t *testing.T, upstream string) *Proxy {
	t.Helper()
	p, err := NewProxy(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Proxy.Close: %v", err)
		}
	})
	return p
}

func proxyDial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// proxyRoundTrip writes msg and reads as many bytes back, within timeout.
func proxyRoundTrip(c net.Conn, msg []byte, timeout time.Duration) ([]byte, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		errc <- err
	}()
	got := make([]byte, len(msg))
	n, err := io.ReadFull(c, got)
	if werr := <-errc; err == nil {
		err = werr
	}
	return got[:n], err
}

// proxyTestSetup starts an echo server, a proxy to it and a connection
// through the proxy that has carried a round trip.
func proxyTestSetup(t *testing.T) (*proxyEcho, *Proxy, *net.TCPConn) {
	t.Helper()
	echo := startProxyEcho(t)
	p := startTestProxy(t, echo.ln.Addr().String())
	c := proxyDial(t, p.Addr())
	if got, err := proxyRoundTrip(c, []byte("hello"), 2*time.Second); err != nil || string(got) != "hello" {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	return echo, p, c
}

// proxyTimedOut reports whether err is a timeout.
func proxyTimedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// proxyWaitConns waits until p has n live connections.
func proxyWaitConns(t *testing.T, p *Proxy, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.Conns() != n {
		if time.Now().After(deadline) {
			t.Fatalf("proxy has %d connections, want %d", p.Conns(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProxyPassesBytesAndEOF(t *testing.T) {
	t.Parallel()
	echo, p, c := proxyTestSetup(t)
	if m, _ := p.Mode(); m != ProxyPass || p.Upstream() != echo.ln.Addr().String() {
		t.Errorf("new proxy: mode %v, upstream %s", m, p.Upstream())
	}
	big := make([]byte, 4<<20)
	_, _ = rand.Read(big)
	if got, err := proxyRoundTrip(c, big, 10*time.Second); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("round trip of 4 MiB: %d bytes, equal %v, %v", len(got), bytes.Equal(got, big), err)
	}
	// EOF goes through both ways: the echo server closes when it sees it.
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read after CloseWrite: %d, %v; want EOF", n, err)
	}
	proxyWaitConns(t, p, 0)

	// An upstream that is down: the client is reset.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	p2 := startTestProxy(t, down)
	if c2, err := net.DialTimeout("tcp", p2.Addr(), 2*time.Second); err == nil { // the reset may come first
		_ = c2.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c2.Read(make([]byte, 1)); err == nil || proxyTimedOut(err) {
			t.Errorf("read through a proxy to nothing: %v, want reset or EOF", err)
		}
		c2.Close()
	}

	// Close ends live connections and the listener.
	c3 := proxyDial(t, p.Addr())
	if _, err := proxyRoundTrip(c3, []byte("x"), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c3.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c3.Read(make([]byte, 1)); err == nil || proxyTimedOut(err) {
		t.Errorf("read after Close: %v, want reset or EOF", err)
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Errorf("dial after Close succeeded")
	}
}

func TestProxyDelay(t *testing.T) {
	t.Parallel()
	_, p, c := proxyTestSetup(t)
	const d = 100 * time.Millisecond
	p.Delay(d)
	if m, got := p.Mode(); m != ProxyDelay || got != d {
		t.Errorf("Mode() = %v, %v", m, got)
	}
	start := time.Now()
	if got, err := proxyRoundTrip(c, []byte("slow"), 5*time.Second); err != nil || string(got) != "slow" {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	if rt := time.Since(start); rt < 2*d || rt > 2*time.Second {
		t.Errorf("round trip with %v each way took %v", d, rt)
	}
	// The delay is a latency, not a throughput limit: chunks sent close
	// together arrive close together.
	start = time.Now()
	for i := range 5 {
		if _, err := c.Write([]byte{byte('a' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	if rt := time.Since(start); rt < 2*d || rt > 5*d {
		t.Errorf("5 pipelined writes took %v, want about %v", rt, 2*d)
	}
	p.Heal()
	start = time.Now()
	if _, err := proxyRoundTrip(c, []byte("fast"), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if rt := time.Since(start); rt >= d {
		t.Errorf("round trip after Heal took %v", rt)
	}
}

// TestProxyJitter: each chunk waits a random 0 to d, never overtaking an
// earlier one of its connection, so bytes arrive in order, while one
// connection's traffic overtakes another's.
func TestProxyJitter(t *testing.T) {
	t.Parallel()
	_, p, a := proxyTestSetup(t)
	b := proxyDial(t, p.Addr())
	const d = 40 * time.Millisecond
	p.Jitter(d)
	if m, got := p.Mode(); m != ProxyJitter || got != d {
		t.Errorf("Mode() = %v, %v", m, got)
	}
	// In order within a connection: 50 one-byte writes, each its own
	// chunk (the echo's reply to the previous one read first).
	for i := range 50 {
		if got, err := proxyRoundTrip(a, []byte{byte(i)}, 5*time.Second); err != nil || got[0] != byte(i) {
			t.Fatalf("round trip %d: %v, %v", i, got, err)
		}
	}
	var pipelined []byte
	for i := range 50 {
		pipelined = append(pipelined, byte(i))
		if _, err := a.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, 50)
	_ = a.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(a, got); err != nil || !bytes.Equal(got, pipelined) {
		t.Fatalf("pipelined writes came back as %v, %v", got, err)
	}
	_ = a.SetReadDeadline(time.Time{})
	// Across connections: a round trip started later on b finishes
	// first now and then.
	_ = a.SetReadDeadline(time.Time{})
	overtaken := 0
	for range 30 {
		// a's byte is written before b's; each echo is read as it comes.
		if _, err := a.Write([]byte("a")); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Write([]byte("b")); err != nil {
			t.Fatal(err)
		}
		done := make(chan string, 2)
		for _, c := range []*net.TCPConn{a, b} {
			go func() {
				buf := make([]byte, 1)
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err := io.ReadFull(c, buf)
				done <- fmt.Sprint(string(buf), err)
			}()
		}
		first, second := <-done, <-done
		if first != "a<nil>" && first != "b<nil>" || second != "a<nil>" && second != "b<nil>" {
			t.Fatalf("round trips: %s, %s", first, second)
		}
		if first == "b<nil>" {
			overtaken++
		}
	}
	if overtaken == 0 {
		t.Errorf("in 30 tries a later round trip on another connection never finished first")
	}
	t.Logf("overtaken %d times in 30", overtaken)
}

// TestProxySlow: about half the connections, old and new, crawl; the
// others pass.
func TestProxySlow(t *testing.T) {
	t.Parallel()
	_, p, first := proxyTestSetup(t)
	conns := []*net.TCPConn{first}
	for range 9 {
		conns = append(conns, proxyDial(t, p.Addr()))
	}
	const d = 150 * time.Millisecond
	p.Slow(d)
	for range 10 {
		conns = append(conns, proxyDial(t, p.Addr())) // new ones too
	}
	slow, fast := 0, 0
	for i, c := range conns {
		start := time.Now()
		if got, err := proxyRoundTrip(c, []byte("x"), 5*time.Second); err != nil || string(got) != "x" {
			t.Fatalf("connection %d: %q, %v", i, got, err)
		}
		switch rt := time.Since(start); {
		case rt >= 2*d:
			slow++
		case rt < d:
			fast++
		default:
			t.Errorf("connection %d: a round trip took %v, neither slowed by %v each way nor not", i, rt, d)
		}
	}
	if slow == 0 || fast == 0 {
		t.Errorf("of %d connections %d were slow and %d fast, want some of each", len(conns), slow, fast)
	}
	p.Heal()
	for i, c := range conns {
		start := time.Now()
		if _, err := proxyRoundTrip(c, []byte("y"), 2*time.Second); err != nil {
			t.Fatal(err)
		}
		if rt := time.Since(start); rt >= d {
			t.Errorf("connection %d: a round trip after Heal took %v", i, rt)
		}
	}
}

func TestProxyDropIsAPartition(t *testing.T) {
	t.Parallel()
	echo, p, c1 := proxyTestSetup(t)
	p.Drop()
	if _, err := proxyRoundTrip(c1, []byte("lost"), 300*time.Millisecond); !proxyTimedOut(err) {
		t.Errorf("round trip during the partition: %v, want a timeout", err)
	}
	c2 := proxyDial(t, p.Addr()) // accepted, never connected upstream
	if _, err := proxyRoundTrip(c2, []byte("new"), 300*time.Millisecond); !proxyTimedOut(err) {
		t.Errorf("round trip of a new connection during the partition: %v, want a timeout", err)
	}
	if n := echo.accepted.Load(); n != 1 {
		t.Errorf("upstream accepted %d connections, want 1 (none during the partition)", n)
	}
	proxyWaitConns(t, p, 2)

	// Healing resets the connections whose stream lost bytes.
	p.Heal()
	for i, c := range []net.Conn{c1, c2} {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 16)); err == nil || proxyTimedOut(err) {
			t.Errorf("connection %d after Heal: %v, want it reset", i+1, err)
		}
	}
	c3 := proxyDial(t, p.Addr())
	if got, err := proxyRoundTrip(c3, []byte("after"), 2*time.Second); err != nil || string(got) != "after" {
		t.Fatalf("round trip after Heal: %q, %v", got, err)
	}
}

func TestProxyReset(t *testing.T) {
	t.Parallel()
	_, p, c1 := proxyTestSetup(t)
	p.Reset()
	if p.Conns() != 0 {
		t.Errorf("%d connections after Reset", p.Conns())
	}
	_ = c1.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c1.Read(make([]byte, 1)); err == nil || proxyTimedOut(err) || errors.Is(err, io.EOF) {
		t.Errorf("read of a live connection after Reset: %v, want a reset", err)
	}
	for range 3 {
		c, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
		if err != nil {
			continue // refused: fine too
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || proxyTimedOut(err) {
			t.Errorf("read of a new connection during Reset: %v, want it closed", err)
		}
		c.Close()
	}
	p.Heal()
	c2 := proxyDial(t, p.Addr())
	if got, err := proxyRoundTrip(c2, []byte("after"), 2*time.Second); err != nil || string(got) != "after" {
		t.Fatalf("round trip after Heal: %q, %v", got, err)
	}
}
