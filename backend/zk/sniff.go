package zk

import (
	"encoding/binary"
	"net"
	"sync/atomic"
	"time"
)

// negotiated learns the session timeout the server granted from the
// connect responses of Open's connections (go-zookeeper keeps it to
// itself).
type negotiated struct{ ms atomic.Int64 }

func (n *negotiated) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, n: n}, nil
}

// sniffConn reads along the first packet the server sends on a
// connection, the connect response: int32 length, then int32 protocol
// version, int32 timeout (ms), int64 session id, password...
type sniffConn struct {
	net.Conn
	n    *negotiated
	buf  []byte
	done bool
}

func (c *sniffConn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	if !c.done && k > 0 {
		c.buf = append(c.buf, p[:k]...)
		if len(c.buf) >= 4 {
			l := int(binary.BigEndian.Uint32(c.buf))
			switch {
			case l < 16 || l > 4096:
				c.done, c.buf = true, nil
			case len(c.buf) >= 4+l:
				body := c.buf[4:]
				to := int32(binary.BigEndian.Uint32(body[4:]))
				sid := int64(binary.BigEndian.Uint64(body[8:]))
				if sid != 0 && to > 0 {
					c.n.ms.Store(int64(to))
				}
				c.done, c.buf = true, nil
			}
		}
	}
	return k, err
}
