// Package servers starts and controls real servers: Redis (Debian's
// redis-server) and ZooKeeper (Debian's zookeeper.jar on the machine's JVM),
// standalone or as a loopback ensemble. Tests use it through
// internal/testkit/testserver; the jepsen-lite harness uses it directly.
//
// Every server listens on 127.0.0.1 on a port nobody else uses, keeps its
// data and its log in a directory of its own, and runs in a process group of
// its own, so that it can be sent SIGKILL, SIGSTOP or SIGCONT as a whole.
// Start functions return once the server answers its own protocol (RESP PING
// for Redis, the four-letter words ruok and srvr for ZooKeeper). Close stops
// a server by its PID (SIGTERM, then SIGKILL after a few seconds) and makes
// sure no process of its group is left; the caller must call it.
//
// On Linux the servers also get SIGKILL when this program dies without
// closing them (a test binary on a -timeout panic, a killed command), and
// ports are reserved across processes with abstract unix sockets, so that
// programs using this package at the same time (such as packages tested in
// parallel by `go test ./...`) do not pick the same ports.
//
// Errors of servers that do not come up or serve in time are
// *NotServingError values holding the tail of the servers' logs. When
// redis-server, java or the ZooKeeper jar is missing, the Start functions
// fail; [RedisMissing] and [ZKMissing] tell beforehand.
package servers
