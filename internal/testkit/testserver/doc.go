// Package testserver starts real servers for tests: Redis (Debian's
// redis-server) and ZooKeeper (Debian's zookeeper.jar on the machine's JVM),
// standalone or as a loopback ensemble. There are no fakes here. It wraps
// internal/servers for tests: the servers live as long as the test, and
// failures fail it.
//
// Every server listens on 127.0.0.1 on a port nobody else uses, keeps its
// data and its log in a directory of its own (removed when the test ends),
// and runs in a process group of its own, so that a test can SIGKILL,
// SIGSTOP or SIGCONT the whole server. Start functions return once the server
// answers its own protocol (RESP PING for Redis, the four-letter words ruok
// and srvr for ZooKeeper). When the test ends the server is stopped by its
// PID (SIGTERM, then SIGKILL after a few seconds) and the helper makes sure no
// process of its group is left. If the test failed, the tail of each server's
// log is printed with t.Logf.
//
// On Linux the servers also get SIGKILL when the test binary dies (for
// example on a -timeout panic, when no cleanup runs), and ports are reserved
// across test processes with abstract unix sockets, so packages tested in
// parallel by `go test ./...` do not pick the same ports.
//
// When redis-server, java or /usr/share/java/zookeeper.jar is missing, the
// Start functions skip the test, or fail it when the environment variable
// CI is "true" (see [RequireRedis] and [RequireZK]); `make test` installs the
// servers with scripts/test-deps.sh.
//
// The methods taking a testing.TB report failures with t.Fatalf, so call
// them from the test's own goroutine. Methods without one (PID, Ping, Mode,
// FourLetter) are safe from any goroutine. Lifecycle operations on one
// server are serialised.
package testserver
