package zk_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/backendtest"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

func init() {
	standaloneTests = append(standaloneTests,
		serverTest{"SessionExpiry", testSessionExpiry},
		serverTest{"ACL", testACL},
		serverTest{"RefusedCommitIsNotUnknown", testRefusedCommitIsNotUnknown},
		serverTest{"RootDeletedUnderLiveProcess", testRootDeleted},
		serverTest{"BadInput", testBadInput},
		serverTest{"New", testNew},
		serverTest{"SameID", testSameID},
		serverTest{"MixedWithRedisAndMem", testMixedWithRedisAndMem},
		serverTest{"ValueAndHistoryLimits", testValueAndHistoryLimits},
	)
}

// sessLog discards go-zookeeper's log lines.
type sessLog struct{}

func (sessLog) Printf(string, ...any) {}

// expirable opens a backend with zk.New over a connection whose session a
// test can make expire (killSession with d's password; d.blocked keeps it
// from reconnecting meanwhile).
func expirable(t *testing.T, srv *testserver.ZK, root string) (*gozk.Conn, *sessDialer, *zk.Backend) {
	t.Helper()
	d := &sessDialer{}
	conn := sessConnect(t, srv.Servers, d)
	b, err := zk.New(conn, zk.Config{Root: root})
	if err != nil {
		t.Fatalf("zk.New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return conn, d, b
}

// sessConnect opens a plain go-zookeeper connection (no Epochal), through d
// if not nil, waits for its session and closes it when the test ends.
func sessConnect(t testing.TB, servers []string, d ...*sessDialer) *gozk.Conn {
	t.Helper()
	var conn *gozk.Conn
	var events <-chan gozk.Event
	var err error
	if len(d) > 0 {
		conn, events, err = gozk.Connect(servers, 4*time.Second, gozk.WithLogger(sessLog{}), gozk.WithDialer(d[0].dial))
	} else {
		conn, events, err = gozk.Connect(servers, 4*time.Second, gozk.WithLogger(sessLog{}))
	}
	if err != nil {
		t.Fatalf("gozk.Connect: %v", err)
	}
	go func() {
		for range events {
		}
	}()
	t.Cleanup(conn.Close)
	sessPoll(t, 20*time.Second, "a session of the plain connection", func() bool { return conn.State() == gozk.StateHasSession })
	return conn
}

// sessPoll waits until cond holds, failing the test after timeout.
func sessPoll(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sessSet commits r = v, retrying a failed attempt (the backend may be
// between sessions) until a deadline.
func sessSet[T any](t testing.TB, s *stm.STM, r *refs.Ref[T], v T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, v); return nil })
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("set %s to %v: %v", r.Name(), v, err)
		}
	}
}

// sessDialer dials ZooKeeper for one go-zookeeper connection. It can refuse
// to dial (block), and it reads along the connect response of every
// connection it made, so the test learns each session's password, which
// go-zookeeper keeps to itself.
type sessDialer struct {
	blocked atomic.Bool
	mu      sync.Mutex
	pw      map[int64][]byte // session id -> password
}

func (d *sessDialer) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	if d.blocked.Load() {
		return nil, errors.New("sessDialer: blocked by the test")
	}
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, d: d}, nil
}

func (d *sessDialer) password(sid int64) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pw[sid]
}

// sniffConn records the first packet the server sends: the connect
// response (int32 length; int32 protocol version, int32 timeout, int64
// session id, int32 length + password bytes, ...).
type sniffConn struct {
	net.Conn
	d    *sessDialer
	buf  []byte
	done bool
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.done && n > 0 {
		c.buf = append(c.buf, p[:n]...)
		if len(c.buf) >= 4 {
			blen := int(binary.BigEndian.Uint32(c.buf))
			if len(c.buf) >= 4+blen {
				c.done = true
				body := c.buf[4 : 4+blen]
				if len(body) >= 20 {
					sid := int64(binary.BigEndian.Uint64(body[8:]))
					pl := int(int32(binary.BigEndian.Uint32(body[16:])))
					if sid != 0 && pl >= 0 && 20+pl <= len(body) {
						c.d.mu.Lock()
						if c.d.pw == nil {
							c.d.pw = map[int64][]byte{}
						}
						c.d.pw[sid] = append([]byte(nil), body[20:20+pl]...)
						c.d.mu.Unlock()
					}
				}
				c.buf = nil
			}
		}
	}
	return n, err
}

// killSession expires a session server-side, as Curator's KillSession
// does: it connects with the session's id and password (the server moves
// the session to this connection, closing the owner's) and closes it.
func killSession(t testing.TB, addr string, sid int64, pw []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("killSession: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	packet := func(body []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	}
	var req []byte
	req = binary.BigEndian.AppendUint32(req, 0)    // protocol version
	req = binary.BigEndian.AppendUint64(req, 0)    // last zxid seen
	req = binary.BigEndian.AppendUint32(req, 4000) // timeout (ms)
	req = binary.BigEndian.AppendUint64(req, uint64(sid))
	req = binary.BigEndian.AppendUint32(req, uint32(len(pw)))
	req = append(req, pw...)
	if _, err := c.Write(packet(req)); err != nil {
		t.Fatalf("killSession: send connect: %v", err)
	}
	read := func() []byte {
		var l [4]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			t.Fatalf("killSession: read: %v", err)
		}
		body := make([]byte, binary.BigEndian.Uint32(l[:]))
		if _, err := io.ReadFull(c, body); err != nil {
			t.Fatalf("killSession: read: %v", err)
		}
		return body
	}
	resp := read()
	if len(resp) < 16 || int64(binary.BigEndian.Uint64(resp[8:])) != sid {
		t.Fatalf("killSession: the server did not hand session %#x over (response % x)", sid, resp)
	}
	// Close request: xid, opcode closeSession (-11).
	var cl []byte
	cl = binary.BigEndian.AppendUint32(cl, 1)
	cl = binary.BigEndian.AppendUint32(cl, uint32(0xFFFFFFF5))
	if _, err := c.Write(packet(cl)); err != nil {
		t.Fatalf("killSession: send close: %v", err)
	}
	// Reply header: xid, zxid, error.
	if rh := read(); len(rh) < 16 || binary.BigEndian.Uint32(rh[12:]) != 0 {
		t.Fatalf("killSession: close answered % x", rh)
	}
}

// testSessionExpiry: the backend's session is expired server-side while a
// watch is on a ref and another client changes the ref. The connection
// gets a new session, transactions commit again, and the watch (and the
// driver's subscription under it) sees both the change made while the
// session was gone and the ones after.
func testSessionExpiry(t *testing.T, srv *testserver.ZK) {
	ctx := context.Background()
	root := newRoot("sess")
	conn, d, b := expirable(t, srv, root)
	s := openSTM(t, b)
	r, err := refs.New(ctx, s, "w/x", 0)
	if err != nil {
		t.Fatal(err)
	}
	other := openSTM(t, open(t, srv, zk.Config{Root: root}))
	ro, err := refs.New(ctx, other, "w/x", 0)
	if err != nil {
		t.Fatal(err)
	}

	vals := make(chan int, 100)
	r.AddWatch("w", func(_ string, _ *refs.Ref[int], _, new int) { vals <- new },
		refs.OnGap(func(string, clock.Point, clock.Point) {}))
	defer r.RemoveWatch("w")
	// The driver's own hints, which the watcher's polling would otherwise
	// hide.
	sub, err := b.Subscribe(ctx, "w/x")
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer sub.Close()
	last := 0
	// waitWatch waits for the watch to report want; values come in commit
	// order (changes may merge into one call).
	waitWatch := func(want int) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case v := <-vals:
				if v <= last {
					t.Fatalf("watch reported %d after %d: out of commit order", v, last)
				}
				last = v
				if v == want {
					return
				}
				if v > want {
					t.Fatalf("watch reported %d, never %d", v, want)
				}
			case <-timeout:
				t.Fatalf("the watch did not report %d within 20s (last %d)", want, last)
			}
		}
	}
	drainHints := func() {
		for {
			select {
			case <-sub.C():
			default:
				return
			}
		}
	}
	waitHint := func(what string) {
		t.Helper()
		select {
		case <-sub.C():
		case <-time.After(10 * time.Second):
			t.Fatalf("no subscription hint within 10s for %s", what)
		}
	}

	sessSet(t, s, r, 1)
	waitWatch(1)

	old := conn.SessionID()
	pw := d.password(old)
	if old == 0 || pw == nil {
		t.Fatalf("session %#x, password %v: the dialer did not see the connect response", old, pw)
	}
	start := time.Now()
	d.blocked.Store(true) // the backend cannot reconnect until the change below is in
	killSession(t, srv.Servers[0], old, pw)
	sessPoll(t, 10*time.Second, "the backend's connection to drop", func() bool { return conn.State() != gozk.StateHasSession })
	// While the backend has no session, another client changes the ref.
	sessSet(t, other, ro, 2)
	d.blocked.Store(false)
	sessPoll(t, 20*time.Second, "a new session", func() bool {
		return conn.State() == gozk.StateHasSession && conn.SessionID() != 0 && conn.SessionID() != old
	})
	t.Logf("new session after %v", time.Since(start).Round(time.Millisecond))
	if conn.SessionID() == old {
		t.Fatalf("session id unchanged (%#x): the session did not expire", old)
	}
	waitWatch(2) // the change made while the session was gone

	// The subscription is armed on the new session: a change by another
	// client hints.
	for v := 3; v <= 4; v++ {
		drainHints()
		sessSet(t, other, ro, v)
		waitHint(fmt.Sprintf("a change to %d after expiry", v))
	}
	waitWatch(4)

	// Transactions on the backend whose session expired commit.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := s.Dosync(cctx, func(tx *txn.Tx) error { r.Alter(tx, func(v int) int { return v + 10 }); return nil }); err != nil {
		t.Fatalf("Dosync after the session expired: %v", err)
	}
	if v, err := ro.Deref(ctx); err != nil || v != 14 {
		t.Fatalf("another client reads %d, %v; want 14", v, err)
	}
	if v, err := r.Deref(ctx); err != nil || v != 14 {
		t.Fatalf("the backend reads %d, %v; want 14", v, err)
	}
	waitWatch(14)
}

// testACL: with Auth, every node under the root is closed to clients
// without that identity, a wrong password is a clear error at Open, and a
// client with the right one shares the refs.
func testACL(t *testing.T, srv *testserver.ZK) {
	ctx := context.Background()
	root := newRoot("acl")
	b := open(t, srv, zk.Config{Root: root, Auth: "alice:secret"})
	s := openSTM(t, b)
	r, err := refs.New(ctx, s, "acct/1", 41)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Alter(tx, func(v int) int { return v + 1 }); return nil }); err != nil {
		t.Fatal(err)
	}
	refNode := root + "/r/acct%2F1"
	paths := []string{refNode, root + "/id", root + "/clock", root + "/m/acct%2F1"}

	// The identity itself can read, and the ACL names alice alone.
	owner := sessConnect(t, srv.Servers)
	if err := owner.AddAuth("digest", []byte("alice:secret")); err != nil {
		t.Fatal(err)
	}
	for _, p := range append([]string{root, root + "/r"}, paths...) {
		acl, _, err := owner.GetACL(p)
		if err != nil {
			t.Fatalf("GetACL %s as alice: %v", p, err)
		}
		if len(acl) != 1 || acl[0].Scheme != "digest" || !strings.HasPrefix(acl[0].ID, "alice:") || acl[0].Perms != gozk.PermAll {
			t.Fatalf("ACL of %s: %+v; want digest alice:... with all permissions only", p, acl)
		}
	}
	data, st, err := owner.Get(refNode)
	if err != nil {
		t.Fatalf("Get %s as alice: %v", refNode, err)
	}

	noAuth := sessConnect(t, srv.Servers)
	wrong := sessConnect(t, srv.Servers)
	if err := wrong.AddAuth("digest", []byte("alice:wrong")); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*gozk.Conn{"no auth": noAuth, "wrong password": wrong} {
		for _, p := range paths {
			if _, _, err := c.Get(p); !errors.Is(err, gozk.ErrNoAuth) {
				t.Errorf("%s: Get %s: %v, want ErrNoAuth", name, p, err)
			}
			if _, err := c.Set(p, []byte("x"), -1); !errors.Is(err, gozk.ErrNoAuth) {
				t.Errorf("%s: Set %s: %v, want ErrNoAuth", name, p, err)
			}
		}
		if _, _, err := c.Children(root + "/r"); !errors.Is(err, gozk.ErrNoAuth) {
			t.Errorf("%s: Children %s/r: %v, want ErrNoAuth", name, root, err)
		}
		if _, err := c.Create(root+"/r/evil", nil, 0, gozk.WorldACL(gozk.PermAll)); !errors.Is(err, gozk.ErrNoAuth) {
			t.Errorf("%s: Create under %s/r: %v, want ErrNoAuth", name, root, err)
		}
		if err := c.Delete(refNode, -1); !errors.Is(err, gozk.ErrNoAuth) {
			t.Errorf("%s: Delete %s: %v, want ErrNoAuth", name, refNode, err)
		}
	}
	// Nothing changed.
	if data2, st2, err := owner.Get(refNode); err != nil || !bytes.Equal(data, data2) || st2.Version != st.Version {
		t.Fatalf("%s changed by clients without the identity (version %d -> %v, %v)", refNode, st.Version, st2, err)
	}

	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	bad, err := zk.Open(octx, zk.Config{Servers: srv.Servers, Root: root, Auth: "alice:wrong"})
	if err == nil {
		_ = bad.Close()
		t.Fatal("Open with a wrong password succeeded")
	}
	if !strings.Contains(err.Error(), "Auth") || !errors.Is(err, gozk.ErrNoAuth) {
		t.Fatalf("Open with a wrong password: %v; want an error naming Config.Auth and wrapping ErrNoAuth", err)
	}
	bad, err = zk.Open(octx, zk.Config{Servers: srv.Servers, Root: root})
	if err == nil {
		_ = bad.Close()
		t.Fatal("Open without Auth of a root with an ACL succeeded")
	}
	if !strings.Contains(err.Error(), "Auth") {
		t.Fatalf("Open without Auth: %v; want an error naming Config.Auth", err)
	}

	// Another client with the right identity shares the ref both ways.
	b2 := open(t, srv, zk.Config{Root: root, Auth: "alice:secret"})
	if b2.ID() != b.ID() {
		t.Fatalf("IDs %q and %q for one root", b.ID(), b2.ID())
	}
	s2 := openSTM(t, b2)
	r2, err := refs.New(ctx, s2, "acct/1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := r2.Deref(ctx); err != nil || v != 42 {
		t.Fatalf("second client reads %d, %v; want 42", v, err)
	}
	if err := s2.Dosync(ctx, func(tx *txn.Tx) error { r2.Set(tx, 43); return nil }); err != nil {
		t.Fatal(err)
	}
	if v, err := r.Deref(ctx); err != nil || v != 43 {
		t.Fatalf("first client reads %d, %v; want 43", v, err)
	}
	// New nodes (the second client's refs, records) carry the ACL too.
	if _, err := refs.New(ctx, s2, "acct/2", 7); err != nil {
		t.Fatal(err)
	}
	if _, _, err := noAuth.Get(root + "/r/acct%2F2"); !errors.Is(err, gozk.ErrNoAuth) {
		t.Fatalf("a ref created by the second client is readable without auth: %v", err)
	}
}

// testBadInput: an unreachable ensemble, bad roots, values over the limit
// and node data corrupted by hand each get a clear error, and nothing is
// written or broken.
func testBadInput(t *testing.T, srv *testserver.ZK) {
	ctx := context.Background()
	t.Run("Unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		_ = l.Close()
		octx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		start := time.Now()
		b, err := zk.Open(octx, zk.Config{Servers: []string{addr}, Root: "/x"})
		took := time.Since(start)
		if err == nil {
			_ = b.Close()
			t.Fatal("Open of an unreachable server succeeded")
		}
		if took > 5*time.Second {
			t.Fatalf("Open ignored its ctx of 1s: returned after %v", took)
		}
		if !strings.Contains(err.Error(), addr) {
			t.Fatalf("Open of an unreachable server: %q does not name the server %s", err, addr)
		}
		t.Logf("unreachable: %v after %v", err, took.Round(time.Millisecond))
	})
	t.Run("Config", func(t *testing.T) {
		for _, root := range []string{"relative", "/", "/a/", "/a//b", "/zookeeper", "/zookeeper/x", "/a/./b", "/a/../b", "/a/\x00b"} {
			b, err := zk.Open(ctx, zk.Config{Servers: srv.Servers, Root: root})
			if !errors.Is(err, zk.ErrConfig) {
				if err == nil {
					_ = b.Close()
				}
				t.Errorf("Open with Root %q: %v, want ErrConfig", root, err)
			}
		}
		for name, cfg := range map[string]zk.Config{
			"no servers":     {Root: "/x"},
			"empty server":   {Servers: []string{""}, Root: "/x"},
			"server list":    {Servers: []string{"a:1,b:2"}, Root: "/x"},
			"auth no colon":  {Servers: srv.Servers, Root: "/x", Auth: "alice"},
			"tiny request":   {Servers: srv.Servers, Root: "/x", MaxRequest: 100},
			"relative (New)": {Root: "rel"},
		} {
			var err error
			if name == "relative (New)" {
				conn := sessConnect(t, srv.Servers)
				_, err = zk.New(conn, cfg)
			} else {
				var b *zk.Backend
				if b, err = zk.Open(ctx, cfg); err == nil {
					_ = b.Close()
				}
			}
			if !errors.Is(err, zk.ErrConfig) {
				t.Errorf("%s: %v, want ErrConfig", name, err)
			}
		}
		if _, err := zk.New(nil, zk.Config{}); !errors.Is(err, zk.ErrConfig) {
			t.Errorf("New(nil): %v, want ErrConfig", err)
		}
		// An empty Root is the default, /epochal.
		octx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		b, err := zk.Open(octx, zk.Config{Servers: srv.Servers})
		if err != nil {
			t.Fatalf("Open with the default Root: %v", err)
		}
		defer b.Close()
		if !strings.HasSuffix(b.ID(), "/epochal") {
			t.Fatalf("default Root: ID %q does not end in /epochal", b.ID())
		}
		conn := sessConnect(t, srv.Servers)
		if ok, _, err := conn.Exists("/epochal/id"); err != nil || !ok {
			t.Fatalf("default Root: /epochal/id exists %v, %v", ok, err)
		}
		if _, err := b.ReadPoint(octx); err != nil {
			t.Fatalf("default Root: ReadPoint: %v", err)
		}
	})
	t.Run("TooLarge", func(t *testing.T) {
		root := newRoot("big")
		b := open(t, srv, zk.Config{Root: root})
		s := openSTM(t, b)
		conn := sessConnect(t, srv.Servers)
		huge := bytes.Repeat([]byte{'h'}, 1_100_000)        // over the STM's limit too
		over := bytes.Repeat([]byte{'o'}, b.MaxValueSize()) // encoded, a few bytes over the backend's
		if b.MaxValueSize() >= s.MaxValueSize() {
			t.Fatalf("MaxValueSize %d is not below the STM's %d", b.MaxValueSize(), s.MaxValueSize())
		}
		for name, v := range map[string][]byte{"huge": huge, "over": over} {
			if _, err := refs.New(ctx, s, name, v); !errors.Is(err, refs.ErrTooLarge) {
				t.Errorf("refs.New with %d bytes: %v, want refs.ErrTooLarge", len(v), err)
			}
			if ok, _, err := conn.Exists(root + "/r/" + name); err != nil || ok {
				t.Errorf("refs.New with %d bytes left a node (%v, %v)", len(v), ok, err)
			}
		}
		r, err := refs.New(ctx, s, "small", []byte("small"))
		if err != nil {
			t.Fatal(err)
		}
		_, st0, err := conn.Get(root + "/r/small")
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range [][]byte{huge, over} {
			err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, v); return nil })
			if !errors.Is(err, refs.ErrTooLarge) {
				t.Errorf("Set of %d bytes: %v, want refs.ErrTooLarge", len(v), err)
			}
		}
		if v, err := r.Deref(ctx); err != nil || string(v) != "small" {
			t.Fatalf("after refused Sets: %q, %v", v, err)
		}
		if _, st, err := conn.Get(root + "/r/small"); err != nil || st.Version != st0.Version {
			t.Fatalf("refused Sets wrote the node: version %d -> %v (%v)", st0.Version, st, err)
		}
		// Values that each fit but together do not fit one request: the
		// transaction fails with ErrTooLarge (retrying cannot help), on
		// the one-phase and on the general path, and writes nothing.
		gs := openSTM(t, open(t, srv, zk.Config{Root: root}), stm.WithGeneralPath())
		for _, c := range []struct {
			name string
			s    *stm.STM
		}{{"one-phase", s}, {"general", gs}} {
			var rs []*refs.Ref[[]byte]
			for i := range 3 {
				ri, err := refs.New(ctx, c.s, fmt.Sprintf("part%d", i), []byte{byte(i)})
				if err != nil {
					t.Fatal(err)
				}
				rs = append(rs, ri)
			}
			part := bytes.Repeat([]byte{'p'}, 400_000)
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			start := time.Now()
			err = c.s.Dosync(cctx, func(tx *txn.Tx) error {
				for _, ri := range rs {
					ri.Set(tx, part)
				}
				return nil
			})
			cancel()
			if !errors.Is(err, zk.ErrTooLarge) {
				t.Errorf("%s path: a transaction writing 3 x 400 KB: %v after %v, want zk.ErrTooLarge", c.name, err, time.Since(start).Round(time.Millisecond))
			}
			for i, ri := range rs {
				if v, err := ri.Deref(ctx); err != nil || !bytes.Equal(v, []byte{byte(i)}) {
					t.Errorf("%s path: part%d after the refused transaction: %d bytes, %v", c.name, i, len(v), err)
				}
			}
		}
	})
	t.Run("Corrupted", func(t *testing.T) {
		root := newRoot("corrupt")
		b := open(t, srv, zk.Config{Root: root})
		s := openSTM(t, b)
		conn := sessConnect(t, srv.Servers)
		garbage, err := refs.New(ctx, s, "a/garbage", 7)
		if err != nil {
			t.Fatal(err)
		}
		// A handle on it through an STM that takes the general path.
		gs := openSTM(t, open(t, srv, zk.Config{Root: root}), stm.WithGeneralPath())
		ggarbage, err := refs.New(ctx, gs, "a/garbage", 0)
		if err != nil {
			t.Fatal(err)
		}
		badValue, err := refs.New(ctx, s, "a/value", 7)
		if err != nil {
			t.Fatal(err)
		}
		str, err := refs.New(ctx, s, "str", "text")
		if err != nil {
			t.Fatal(err)
		}
		good, err := refs.New(ctx, s, "good", 7)
		if err != nil {
			t.Fatal(err)
		}
		// Not msgpack at all.
		if _, err := conn.Set(root+"/r/a%2Fgarbage", []byte("garbage"), -1); err != nil {
			t.Fatal(err)
		}
		// A well-formed node whose newest value is not msgpack (0xc1 is
		// never used).
		p := root + "/r/a%2Fvalue"
		data, _, err := conn.Get(p)
		if err != nil {
			t.Fatal(err)
		}
		// The node is a msgpack array or map of refNode's fields (Versions
		// is the 8th, each version's Value its 4th); both are handled.
		var node any
		if err := msgpack.Unmarshal(data, &node); err != nil {
			t.Fatalf("ref node: %v", err)
		}
		field := func(x any, name string, i int) (any, func(any)) {
			switch x := x.(type) {
			case []any:
				if i < len(x) {
					return x[i], func(v any) { x[i] = v }
				}
			case map[string]any:
				if v, ok := x[name]; ok {
					return v, func(v any) { x[name] = v }
				}
			}
			t.Fatalf("ref node layout changed: no field %s in %T %v", name, x, x)
			return nil, nil
		}
		versions, _ := field(node, "Versions", 7)
		vs, ok := versions.([]any)
		if !ok || len(vs) == 0 {
			t.Fatalf("ref node versions: %T %v", versions, versions)
		}
		value, set := field(vs[0], "Value", 3)
		if b, ok := value.([]byte); !ok || len(b) == 0 {
			t.Fatalf("ref node value: %T %v", value, value)
		}
		set([]byte{0xc1})
		if data, err = msgpack.Marshal(node); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Set(p, data, -1); err != nil {
			t.Fatal(err)
		}

		noPanic := func(name string, f func() error) error {
			t.Helper()
			var err error
			func() {
				defer func() {
					if v := recover(); v != nil {
						t.Fatalf("%s panicked: %v", name, v)
					}
				}()
				err = f()
			}()
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err = noPanic("Deref of garbage", func() error { _, err := garbage.Deref(cctx); return err })
		if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "malformed") {
			t.Errorf("Deref of a node holding garbage: %v; want a clear 'malformed' error", err)
		}
		err = noPanic("History of garbage", func() error { _, err := garbage.History(cctx); return err })
		if err == nil || !strings.Contains(err.Error(), "malformed") {
			t.Errorf("History of a node holding garbage: %v; want a clear 'malformed' error", err)
		}
		if _, err := refs.New(ctx, s, "a/garbage", 0); err == nil || !strings.Contains(err.Error(), "malformed") {
			t.Errorf("refs.New joining a node holding garbage: %v; want a clear 'malformed' error", err)
		}
		// A write of the corrupted ref fails at once (retrying cannot
		// help), on the one-phase and on the general path.
		for _, c := range []struct {
			name string
			s    *stm.STM
			r    *refs.Ref[int]
		}{{"one-phase", s, garbage}, {"general", gs, ggarbage}} {
			wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			start := time.Now()
			err = noPanic("Dosync on garbage", func() error {
				return c.s.Dosync(wctx, func(tx *txn.Tx) error { c.r.Set(tx, 8); return nil })
			})
			cancel()
			if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "malformed") {
				t.Errorf("%s path: Dosync writing a node holding garbage: %v after %v; want a clear 'malformed' error at once",
					c.name, err, time.Since(start).Round(time.Millisecond))
			}
		}
		err = noPanic("Deref of a bad value", func() error { _, err := badValue.Deref(cctx); return err })
		if !errors.Is(err, refs.ErrCorrupt) || errors.Is(err, refs.ErrType) {
			t.Errorf("Deref of a value that is not msgpack: %v, want refs.ErrCorrupt (not ErrType: the bytes are no msgpack at all)", err)
		}
		// A string ref read as an int.
		asInt, err := refs.New(ctx, s, "str", 0)
		if err != nil {
			t.Fatal(err)
		}
		err = noPanic("Deref of a string as int", func() error { _, err := asInt.Deref(cctx); return err })
		if !errors.Is(err, refs.ErrType) {
			t.Errorf("Deref of a string ref as int: %v, want refs.ErrType", err)
		}
		if v, err := str.Deref(ctx); err != nil || v != "text" {
			t.Errorf("the string ref as a string: %q, %v", v, err)
		}
		// Intact refs still work.
		if err := s.Dosync(cctx, func(tx *txn.Tx) error { good.Set(tx, good.Get(tx)+1); return nil }); err != nil {
			t.Fatalf("an intact ref after others were corrupted: %v", err)
		}
		if v, err := good.Deref(ctx); err != nil || v != 8 {
			t.Fatalf("good = %d, %v", v, err)
		}
	})
}

// testNew: a backend over the caller's connection; Close leaves it usable
// and makes every later call fail with backend.ErrClosed.
func testNew(t *testing.T, srv *testserver.ZK) {
	ctx := context.Background()
	root := newRoot("new")
	conn := sessConnect(t, srv.Servers)
	b, err := zk.New(conn, zk.Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	s := openSTM(t, b)
	r, err := refs.New(ctx, s, "x", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, 2); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if conn.State() != gozk.StateHasSession {
		t.Fatalf("Close closed the caller's connection: state %v", conn.State())
	}
	if _, _, err := conn.Get(root + "/id"); err != nil {
		t.Fatalf("the caller's connection after Close: %v", err)
	}
	calls := map[string]func() error{
		"ReadPoint": func() error { _, err := b.ReadPoint(ctx); return err },
		"Read": func() error {
			_, err := b.Read(ctx, backend.ReadRequest{Names: []string{"x"}, Current: true})
			return err
		},
		"Versions": func() error { _, err := b.Versions(ctx, "x"); return err },
		"Create": func() error {
			_, err := b.Create(ctx, backend.CreateRequest{Name: "y", Kind: backend.KindRef, Value: []byte{1}, MaxHistory: 10})
			return err
		},
		"List":      func() error { _, err := b.List(ctx, ""); return err },
		"Subscribe": func() error { _, err := b.Subscribe(ctx, "x"); return err },
		"Meta":      func() error { _, _, err := b.Meta(ctx, "x"); return err },
		"Records":   func() error { _, err := b.Records(ctx, []string{"t1"}); return err },
	}
	for name, f := range calls {
		if err := f(); !errors.Is(err, backend.ErrClosed) {
			t.Errorf("%s after Close: %v, want backend.ErrClosed", name, err)
		}
	}
	if ok, _, err := conn.Exists(root + "/r/y"); err != nil || ok {
		t.Errorf("Create after Close made a node (%v, %v)", ok, err)
	}
	// A second backend over the same connection still works.
	b2, err := zk.New(conn, zk.Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	s2 := openSTM(t, b2)
	r2, err := refs.New(ctx, s2, "x", 0)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := r2.Deref(ctx); err != nil || v != 2 {
		t.Fatalf("a new backend over the same connection reads %d, %v", v, err)
	}

	// New waits for a session at most DialTimeout.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	_ = l.Close()
	dc, events, err := gozk.Connect([]string{dead}, 4*time.Second, gozk.WithLogger(sessLog{}))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range events {
		}
	}()
	defer dc.Close()
	start := time.Now()
	if _, err := zk.New(dc, zk.Config{Root: root, DialTimeout: 500 * time.Millisecond}); err == nil {
		t.Fatal("New over a connection without a session succeeded")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("New ignored DialTimeout of 500ms: returned after %v", took)
	}
}

// testSameID: clients of one root agree on the ID (so intents name the same
// coordinator), whether by Open or New; two roots do not.
func testSameID(t *testing.T, srv *testserver.ZK) {
	root := newRoot("id")
	a := open(t, srv, zk.Config{Root: root})
	b := open(t, srv, zk.Config{Root: root})
	c := open(t, srv, zk.Config{Root: newRoot("id")})
	n, err := zk.New(sessConnect(t, srv.Servers), zk.Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if a.ID() == "" || a.ID() != b.ID() || a.ID() != n.ID() || a.ID() == c.ID() {
		t.Fatalf("IDs %q, %q, %q (same root), %q (another)", a.ID(), b.ID(), n.ID(), c.ID())
	}
	// A nested root is another root.
	d := open(t, srv, zk.Config{Root: root + "/nested"})
	if d.ID() == a.ID() {
		t.Fatalf("a nested root shares its parent's ID %q", a.ID())
	}
}

// testMixedWithRedisAndMem: transfers between a ref in ZooKeeper and a ref
// in another backend (the embedded one, or Redis) commit atomically,
// whichever backend coordinates, and concurrent readers never see a torn
// total.
func testMixedWithRedisAndMem(t *testing.T, srv *testserver.ZK) {
	rsrv := testserver.StartRedis(t, testserver.RedisOptions{})
	redisBackend := func(t *testing.T) backend.Driver {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rb, err := redis.Open(ctx, redis.Config{Addr: rsrv.Addr, Prefix: fmt.Sprintf("mixed%d", roots.Add(1))})
		if err != nil {
			t.Fatalf("redis.Open: %v", err)
		}
		t.Cleanup(func() { _ = rb.Close() })
		return rb
	}
	memBackend := func(t *testing.T) backend.Driver {
		mb := mem.New()
		t.Cleanup(func() { _ = mb.Close() })
		return mb
	}
	for _, tc := range []struct {
		name     string
		other    func(t *testing.T) backend.Driver
		zkCoords bool
	}{
		{"zk-coordinates-mem", memBackend, true},
		{"mem-coordinates-zk", memBackend, false},
		{"zk-coordinates-redis", redisBackend, true},
		{"redis-coordinates-zk", redisBackend, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			zb := open(t, srv, zk.Config{Root: newRoot("mixed")})
			ob := tc.other(t)
			coord, other := backend.Driver(zb), ob
			if !tc.zkCoords {
				coord, other = ob, zb
			}
			s := openSTM(t, coord)
			a, err := refs.New(ctx, s, "a", 500)
			if err != nil {
				t.Fatal(err)
			}
			b, err := refs.New(ctx, s, "b", 500, refs.On(other))
			if err != nil {
				t.Fatal(err)
			}
			if a.Backend().ID() != coord.ID() || b.Backend().ID() != other.ID() {
				t.Fatalf("refs on %s and %s", a.Backend().ID(), b.Backend().ID())
			}
			// An aborted transaction writes neither.
			boom := errors.New("boom")
			if err := s.Dosync(ctx, func(tx *txn.Tx) error {
				a.Set(tx, 0)
				b.Set(tx, 0)
				return boom
			}); !errors.Is(err, boom) {
				t.Fatalf("aborted transaction: %v", err)
			}
			var stop atomic.Bool
			var torn, reads atomic.Int64
			readErr := make(chan error, 1)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					err := s.Dosync(ctx, func(tx *txn.Tx) error {
						if a.Get(tx)+b.Get(tx) != 1000 {
							torn.Add(1)
						}
						return nil
					})
					if err != nil {
						select {
						case readErr <- err:
						default:
						}
						return
					}
					reads.Add(1)
				}
			}()
			const workers, transfers = 3, 15
			errs := make(chan error, workers*transfers)
			var w sync.WaitGroup
			for g := 0; g < workers; g++ {
				w.Add(1)
				go func() {
					defer w.Done()
					for i := 0; i < transfers; i++ {
						if err := s.Dosync(ctx, func(tx *txn.Tx) error {
							a.Alter(tx, func(v int) int { return v - 3 })
							b.Commute(tx, func(v int) int { return v + 3 })
							return nil
						}); err != nil {
							errs <- err
						}
					}
				}()
			}
			w.Wait()
			stop.Store(true)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("transfer: %v", err)
			}
			select {
			case err := <-readErr:
				t.Errorf("reader: %v", err)
			default:
			}
			const moved = 3 * workers * transfers
			va, erra := a.Deref(ctx)
			vb, errb := b.Deref(ctx)
			if erra != nil || errb != nil || torn.Load() > 0 || va != 500-moved || vb != 500+moved {
				t.Fatalf("a=%d b=%d (%v, %v), %d torn reads of %d; want %d, %d, none", va, vb, erra, errb, torn.Load(), reads.Load(), 500-moved, 500+moved)
			}
			if st := s.Stats(); st.General == 0 {
				t.Fatalf("no general-path commit: %+v", st)
			}
			// Both backends hold what the other reads: a second STM
			// coordinated by the same backend sees the same totals.
			s2 := openSTM(t, coord)
			a2, err := refs.New(ctx, s2, "a", 0)
			if err != nil {
				t.Fatal(err)
			}
			b2, err := refs.New(ctx, s2, "b", 0, refs.On(other))
			if err != nil {
				t.Fatal(err)
			}
			if err := s2.Dosync(ctx, func(tx *txn.Tx) error {
				if x, y := a2.Get(tx), b2.Get(tx); x != 500-moved || y != 500+moved {
					return fmt.Errorf("second STM reads %d, %d", x, y)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			// Atoms, promises and delays on the other backend change at
			// its clock's points, which must never move the
			// coordinator's read points (a ZooKeeper atom's zxids under a
			// Redis or mem coordinator once broke every transaction after
			// its first swap).
			t.Run("ForeignClocks", func(t *testing.T) { backendtest.ForeignClocks(t, coord, other) })
		})
	}
}

// testValueAndHistoryLimits: a ref that keeps 10 older versions of 300 KB
// values stays within one request: older versions are trimmed to fit, the
// newest is always right; a value of exactly MaxValueSize commits on both
// paths (the staged value and the newest share the node).
func testValueAndHistoryLimits(t *testing.T, srv *testserver.ZK) {
	ctx := context.Background()
	root := newRoot("limits")
	b := open(t, srv, zk.Config{Root: root})
	s := openSTM(t, b)
	const size = 300 * 1024
	val := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, size) }
	r, err := refs.New(ctx, s, "big", val(0), refs.WithMinHistory(10), refs.WithMaxHistory(10))
	if err != nil {
		t.Fatal(err)
	}
	small, err := refs.New(ctx, s, "small", 0, refs.WithMinHistory(10), refs.WithMaxHistory(10))
	if err != nil {
		t.Fatal(err)
	}
	const writes = 12
	for i := 1; i <= writes; i++ {
		if err := s.Dosync(ctx, func(tx *txn.Tx) error {
			r.Set(tx, val(i))
			small.Set(tx, i)
			return nil
		}); err != nil {
			t.Fatalf("write %d of %d KB: %v", i, size/1024, err)
		}
		if v, err := r.Deref(ctx); err != nil || !bytes.Equal(v, val(i)) {
			t.Fatalf("after write %d: %d bytes starting %q, %v", i, len(v), v[:min(1, len(v))], err)
		}
	}
	checkHistory := func(want int) {
		t.Helper()
		h, err := r.History(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) == 0 || len(h) > 10 {
			t.Fatalf("History holds %d versions; want 1 to 10 (trimmed to fit one request)", len(h))
		}
		total := 0
		for j, v := range h {
			total += len(v.Value)
			if !bytes.Equal(v.Value, val(want-j)) {
				t.Fatalf("History[%d] starts %q, want %q", j, v.Value[:min(1, len(v.Value))], val(want - j)[:1])
			}
			if j > 0 && v.Point >= h[j-1].Point {
				t.Fatalf("History points not decreasing: %d then %d", h[j-1].Point, v.Point)
			}
		}
		if total > 1_000_000 {
			t.Fatalf("History holds %d bytes of values: more than one request", total)
		}
		t.Logf("big ref keeps %d versions (%d bytes)", len(h), total)
	}
	checkHistory(writes)
	// Trimming is for size only: the small ref in the same transactions
	// keeps its 10 older versions.
	if h, err := small.History(ctx); err != nil || len(h) != 11 || h[0].Value != writes {
		t.Fatalf("small ref: %d versions, newest %v, %v; want 11, %d", len(h), h, err, writes)
	}

	// Values of exactly the limit, on the one-phase and the general path.
	limit := b.MaxValueSize()
	enc, err := refs.Msgpack.Marshal(make([]byte, limit))
	if err != nil {
		t.Fatal(err)
	}
	raw := limit - (len(enc) - limit) // msgpack adds a header
	maxVal := func(c byte) []byte { return bytes.Repeat([]byte{c}, raw) }
	m, err := refs.New(ctx, s, "max", maxVal('0'), refs.WithMinHistory(3))
	if err != nil {
		t.Fatalf("refs.New with a value of MaxValueSize: %v", err)
	}
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { m.Set(tx, maxVal('1')); return nil }); err != nil {
		t.Fatalf("one-phase Set of MaxValueSize: %v", err)
	}
	gs := openSTM(t, open(t, srv, zk.Config{Root: root}), stm.WithGeneralPath())
	gm, err := refs.New(ctx, gs, "max", []byte(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := gs.Dosync(ctx, func(tx *txn.Tx) error { gm.Set(tx, maxVal('2')); return nil }); err != nil {
		t.Fatalf("general-path Set of MaxValueSize: %v", err)
	}
	if gs.Stats().General == 0 {
		t.Fatalf("no general-path commit: %+v", gs.Stats())
	}
	if v, err := m.Deref(ctx); err != nil || !bytes.Equal(v, maxVal('2')) {
		t.Fatalf("after the general-path Set: %d bytes, %v", len(v), err)
	}
	if h, err := m.History(ctx); err != nil || len(h) == 0 || !bytes.Equal(h[0].Value, maxVal('2')) || len(h) > 2 {
		t.Fatalf("max ref history: %d versions, %v; want the newest and at most one older", len(h), err)
	}
	// The big ref is still writable and its history still bounded.
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, val(writes+1)); return nil }); err != nil {
		t.Fatal(err)
	}
	checkHistory(writes + 1)
}

// testRefusedCommitIsNotUnknown: a request the server refuses (here for want
// of permission: the clock node made read-only) certainly applied nothing,
// so the commit ends with an error wrapping backend.ErrNotApplied, at once,
// and is not treated as an unknown outcome to be learned and retried.
func testRefusedCommitIsNotUnknown(t *testing.T, srv *testserver.ZK) {
	ctx := context.Background()
	root := newRoot("refused")
	b := open(t, srv, zk.Config{Root: root, Auth: "alice:secret"})
	for _, general := range []bool{false, true} {
		opts := []stm.Option{stm.WithMaxRetries(3)}
		if general {
			opts = append(opts, stm.WithGeneralPath())
		}
		s := openSTM(t, b, opts...)
		r, err := refs.New(ctx, s, fmt.Sprintf("x%v", general), 1)
		if err != nil {
			t.Fatal(err)
		}
		owner := sessConnect(t, srv.Servers)
		if err := owner.AddAuth("digest", []byte("alice:secret")); err != nil {
			t.Fatal(err)
		}
		readOnly := append(gozk.DigestACL(gozk.PermRead|gozk.PermAdmin, "alice", "secret"), gozk.WorldACL(gozk.PermRead)...)
		if _, err := owner.SetACL(root+"/clock", readOnly, -1); err != nil {
			t.Fatal(err)
		}
		err = s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, 2); return nil })
		if !errors.Is(err, backend.ErrNotApplied) || errors.Is(err, stm.ErrOutcomeUnknown) || errors.Is(err, stm.ErrRetryLimit) || !errors.Is(err, gozk.ErrNoAuth) {
			t.Errorf("general=%v: a commit the server refused: %v; want an error wrapping backend.ErrNotApplied and zk.ErrNoAuth, not an unknown outcome", general, err)
		}
		if st := s.Stats(); st.Unknown != 0 || st.Retries != 0 {
			t.Errorf("general=%v: %d unknown outcomes, %d retries, want none", general, st.Unknown, st.Retries)
		}
		if _, err := owner.SetACL(root+"/clock", gozk.DigestACL(gozk.PermAll, "alice", "secret"), -1); err != nil {
			t.Fatal(err)
		}
		if v, err := r.Deref(ctx); err != nil || v != 1 {
			t.Errorf("general=%v: x = %d (%v) after a refused commit, want 1", general, v, err)
		}
	}
}

// testRootDeleted: a root deleted under a live process, then recreated by
// another (zk.Open and refs.New at the initial values), must not be
// committed to by the live process as if nothing happened: its next Dosync
// fails with stm.ErrDataLost, writes nothing, and its STM refuses every
// later call; a process that opens afresh works on the new root. (The root
// is named after its identity in an epoch node, which every Multi checks
// and every read looks at.)
func testRootDeleted(t *testing.T, srv *testserver.ZK) {
	ctx := context.Background()
	root := newRoot("deleted")
	const n, initial = 3, 100
	openBank := func() (*stm.STM, []*refs.Ref[int]) {
		s := openSTM(t, open(t, srv, zk.Config{Root: root}))
		var accs []*refs.Ref[int]
		for i := 0; i < n; i++ {
			r, err := refs.New(ctx, s, fmt.Sprintf("acct/%d", i), initial)
			if err != nil {
				t.Fatal(err)
			}
			accs = append(accs, r)
		}
		return s, accs
	}
	transfer := func(s *stm.STM, accs []*refs.Ref[int], amount int) error {
		return s.Dosync(ctx, func(tx *txn.Tx) error {
			accs[0].Alter(tx, func(v int) int { return v - amount })
			accs[1].Alter(tx, func(v int) int { return v + amount })
			return nil
		})
	}
	sum := func(s *stm.STM, accs []*refs.Ref[int]) (int, error) {
		total := 0
		err := s.Dosync(ctx, func(tx *txn.Tx) error {
			total = 0
			for _, a := range accs {
				total += a.Get(tx)
			}
			return nil
		})
		return total, err
	}
	for _, general := range []bool{false, true} {
		live, accs := openBank()
		if general {
			live = openSTM(t, open(t, srv, zk.Config{Root: root}), stm.WithGeneralPath())
			for i := range accs {
				var err error
				if accs[i], err = refs.New(ctx, live, fmt.Sprintf("acct/%d", i), initial); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := transfer(live, accs, 30); err != nil {
			t.Fatal(err)
		}
		owner := sessConnect(t, srv.Servers)
		deleteTree(t, owner, root)
		other, oaccs := openBank() // recreates the root and the refs
		before, err := sum(other, oaccs)
		if err != nil || before != n*initial {
			t.Fatalf("general=%v: the recreated root holds %d (%v), want %d", general, before, err, n*initial)
		}
		err = transfer(live, accs, 10)
		if !errors.Is(err, stm.ErrDataLost) {
			t.Fatalf("general=%v: a Dosync after the root was deleted and recreated: %v, want stm.ErrDataLost", general, err)
		}
		if after, err := sum(other, oaccs); err != nil || after != before {
			t.Fatalf("general=%v: the recreated root holds %d (%v) after the failed Dosync, want %d: it wrote", general, after, err, before)
		}
		if _, err := sum(live, accs); !errors.Is(err, stm.ErrDataLost) {
			t.Fatalf("general=%v: a read-only Dosync on the stopped STM: %v, want stm.ErrDataLost", general, err)
		}
		if err := transfer(other, oaccs, 1); err != nil {
			t.Fatalf("general=%v: the process that opened afresh: %v", general, err)
		}
		deleteTree(t, owner, root) // the next round starts afresh
	}
}

// deleteTree deletes a znode and everything under it.
func deleteTree(t *testing.T, c *gozk.Conn, p string) {
	t.Helper()
	kids, _, err := c.Children(p)
	if errors.Is(err, gozk.ErrNoNode) {
		return
	}
	if err != nil {
		t.Fatalf("children of %s: %v", p, err)
	}
	for _, k := range kids {
		deleteTree(t, c, p+"/"+k)
	}
	if err := c.Delete(p, -1); err != nil && !errors.Is(err, gozk.ErrNoNode) {
		t.Fatalf("delete %s: %v", p, err)
	}
}
