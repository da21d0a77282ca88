package servers

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// RESPConn is a minimal RESP2 client connection: enough to wait for a
// server, to check that it answers, and to test.
type RESPConn struct {
	net.Conn
	br *bufio.Reader
}

// NewRESPConn speaks RESP over c.
func NewRESPConn(c net.Conn) *RESPConn { return &RESPConn{Conn: c, br: bufio.NewReader(c)} }

// DialRESP connects to addr, over TLS when tlsConf is not nil, with the
// connection and every operation on it bounded by timeout.
func DialRESP(addr string, tlsConf *tls.Config, timeout time.Duration) (*RESPConn, error) {
	d := &net.Dialer{Timeout: timeout, Deadline: time.Now().Add(timeout)}
	var c net.Conn
	var err error
	if tlsConf != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tlsConf)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	return NewRESPConn(c), nil
}

// RESPError is an error reply (-ERR ..., -WRONGPASS ...).
type RESPError string

func (e RESPError) Error() string { return string(e) }

// Do sends a command and returns its reply: simple strings, bulk strings and
// integers as text, a nil bulk as "(nil)", arrays joined with newlines, and
// error replies as a RESPError.
func (c *RESPConn) Do(args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return "", err
	}
	return c.read()
}

func (c *RESPConn) read() (string, error) {
	line, err := c.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("empty RESP line")
	}
	body := line[1:]
	switch line[0] {
	case '+', ':':
		return body, nil
	case '-':
		return "", RESPError(body)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil {
			return "", fmt.Errorf("bad bulk length %q", body)
		}
		if n < 0 {
			return "(nil)", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.br, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return "", fmt.Errorf("bad array length %q", body)
		}
		var items []string
		for i := 0; i < n; i++ {
			s, err := c.read()
			if err != nil {
				return "", err
			}
			items = append(items, s)
		}
		return strings.Join(items, "\n"), nil
	}
	return "", fmt.Errorf("unexpected RESP line %q", line)
}
