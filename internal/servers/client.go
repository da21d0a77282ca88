package servers

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// RedisClient returns a go-redis client of the Redis server at addr, to
// probe it and to test with: over TLS when tlsConf is not nil,
// authenticated as user (the default user when "") when password is set,
// on one connection, with no retries (neither of a dial nor of a
// command), each dial, read and write bounded by timeout, and a
// context's deadline obeyed. The caller closes it.
func RedisClient(addr string, tlsConf *tls.Config, user, password string, timeout time.Duration) *goredis.Client {
	return goredis.NewClient(&goredis.Options{
		Addr: addr, TLSConfig: tlsConf, Username: user, Password: password,
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, ContextTimeoutEnabled: true,
		PoolSize: 1, MaxRetries: -1, DialerRetries: 1,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// Client returns a go-redis client of the server (see RedisClient), over
// TLS if it serves TLS, authenticated as configured. The caller closes
// it.
func (r *Redis) Client(timeout time.Duration) *goredis.Client { return r.ClientVia(r.Addr, timeout) }

// ClientVia is Client through another address that leads to this server,
// such as a proxy's.
func (r *Redis) ClientVia(addr string, timeout time.Duration) *goredis.Client {
	return RedisClient(addr, r.ClientTLS(), r.User, r.Password, timeout)
}

// Ping connects (with TLS and AUTH as configured), sends PING and expects
// PONG, all within timeout. It returns an error otherwise (one whose
// Timeout() is true, a net.Error, when the server does not answer in
// time, e.g. paused).
func (r *Redis) Ping(timeout time.Duration) error { return r.PingVia(r.Addr, timeout) }

// PingVia is Ping through another address that leads to this server, such
// as a proxy's.
func (r *Redis) PingVia(addr string, timeout time.Duration) error {
	c := r.ClientVia(addr, timeout)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	v, err := c.Ping(ctx).Result()
	if err != nil {
		return err
	}
	if v != "PONG" {
		return fmt.Errorf("PING: unexpected reply %q", v)
	}
	return nil
}
