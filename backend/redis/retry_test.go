package redis_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/txn"
)

// dropProxy forwards TCP connections to a server. When armed, it lets the
// next script call (EVALSHA or EVAL) through, then drops its reply and
// closes the connection: the server has run the script, the client sees a
// broken connection, and go-redis retries the command.
type dropProxy struct {
	ln      net.Listener
	target  string
	armed   atomic.Bool
	scripts atomic.Int64 // script calls seen
	dropped atomic.Int64
	wg      sync.WaitGroup
}

func newDropProxy(t *testing.T, target string) *dropProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *dropProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		var cut atomic.Bool
		p.wg.Add(2)
		go func() { // client -> server
			defer p.wg.Done()
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if bytes.Contains(bytes.ToLower(buf[:n]), []byte("eval")) {
						p.scripts.Add(1)
						if p.armed.CompareAndSwap(true, false) {
							cut.Store(true)
						}
					}
					if _, err := s.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					s.Close()
					return
				}
			}
		}()
		go func() { // server -> client
			defer p.wg.Done()
			buf := make([]byte, 64<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 && cut.Load() {
					p.dropped.Add(1)
					c.Close()
					s.Close()
					return
				}
				if n > 0 {
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					if err != io.EOF {
						c.Close()
					}
					c.Close()
					return
				}
			}
		}()
	}
}

// TestRetriedScriptDoesNotDoubleApply: the commit script runs on the server,
// its reply is lost, and go-redis sends it again. The transfer applies once
// and the transaction is not run again.
func TestRetriedScriptDoesNotDoubleApply(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	proxy := newDropProxy(t, srv.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := redis.Open(ctx, redis.Config{Addr: proxy.ln.Addr().String(), Prefix: newPrefix("retry")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s := openSTM(t, b)
	ctr, err := refs.New(ctx, s, "ctr", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		before := proxy.scripts.Load()
		proxy.armed.Store(true)
		runs := 0
		err := s.Dosync(ctx, func(tx *txn.Tx) error {
			runs++
			ctr.Alter(tx, func(v int) int { return v + 1 })
			return nil
		})
		if err != nil {
			t.Fatalf("transfer %d: %v", i, err)
		}
		if proxy.dropped.Load() != int64(i) || proxy.scripts.Load()-before < 2 {
			t.Fatalf("transfer %d: %d replies dropped, %d script calls: the retry was not forced", i, proxy.dropped.Load(), proxy.scripts.Load()-before)
		}
		if runs != 1 {
			t.Fatalf("transfer %d ran %d times", i, runs)
		}
		if v, err := ctr.Deref(ctx); err != nil || v != i {
			t.Fatalf("after %d increments whose commit script ran twice, counter = %d, %v", i, v, err)
		}
	}
}
