// Command epochal is the command line of Epochal: it runs demo workloads
// against the embedded backend and, in later releases, inspects refs,
// transactions and locks held in Redis or ZooKeeper.
//
// Exit codes: 0 success, 1 a failed run or invariant check, 2 bad usage
// (unknown command, bad flag value, a backend that is not available).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/backend/zk"
)

// Exit codes of the command.
const (
	exitOK    = 0
	exitFail  = 1 // the run failed or an invariant check did not hold
	exitUsage = 2 // bad command line
	exitDown  = 3 // the backend could not be reached
)

// errCheckFailed is returned when a workload ran but its invariant check
// did not hold. It maps to exit code 1.
var errCheckFailed = errors.New("invariant check failed")

// downError marks a backend that could not be reached: exit code 3.
type downError struct{ err error }

func (e *downError) Error() string { return e.err.Error() }
func (e *downError) Unwrap() error { return e.err }

// usageError marks a bad command line: it maps to exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// exitCode maps an error returned by the root command to the process's
// exit code.
func exitCode(err error) int {
	var u *usageError
	var d *downError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &u):
		return exitUsage
	case errors.As(err, &d):
		return exitDown
	default:
		return exitFail
	}
}

// Backends the --backend flag names.
const (
	backendMem   = "mem"
	backendRedis = "redis"
	backendZK    = "zk"
)

// Environment variables that override the persistent flags' defaults.
const (
	envBackend = "EPOCHAL_BACKEND"
	envAddr    = "EPOCHAL_ADDR"
	envPrefix  = "EPOCHAL_PREFIX"
	envRoot    = "EPOCHAL_ROOT"
)

// Default server addresses per backend.
const (
	defaultRedisAddr = "127.0.0.1:6379"
	defaultZKAddr    = "127.0.0.1:2181"
)

// globals holds the persistent flags, resolved by the root's
// PersistentPreRunE before any subcommand runs. Subcommands must not define
// their own PersistentPreRunE (cobra would run theirs instead of the root's).
type globals struct {
	backend string
	addr    string
	prefix  string
	root    string
	connect time.Duration
}

// newRootCmd builds the command tree. Output goes to stdout and stderr so
// that tests can run commands in-process. Errors are returned, not printed:
// run prints them and maps them to exit codes.
func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "epochal",
		Short: "Epochal: distributed software-transactional memory (Clojure's refs and dosync) for Go",
		Long: `Epochal is a distributed software-transactional memory for Go: Clojure's
refs, dosync, alter, commute and ensure, with refs held in process memory,
Redis or ZooKeeper and transactions that span processes.

This command runs demo workloads and, in later releases, inspects the refs,
transactions and locks a backend holds.`,
		Args:          cobra.ArbitraryArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		// Runnable only so that an unknown command is a usage error (exit
		// 2) rather than cobra printing help and exiting 0.
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q; run 'epochal --help' for the list", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return g.resolve(cmd)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &usageError{err: err}
	})
	root.CompletionOptions.HiddenDefaultCmd = true
	root.PersistentFlags().StringVar(&g.backend, "backend", backendMem,
		"backend to run against: mem|redis|zk (env "+envBackend+")")
	root.PersistentFlags().StringVar(&g.addr, "addr", "",
		"server address: host:port for --backend redis (default "+defaultRedisAddr+"), comma-separated host:port list for zk (default "+defaultZKAddr+") (env "+envAddr+")")
	root.PersistentFlags().StringVar(&g.prefix, "prefix", "",
		"key prefix for --backend redis (env "+envPrefix+"; demo default: a fresh one per run)")
	root.PersistentFlags().DurationVar(&g.connect, "connect-timeout", 10*time.Second,
		"how long to wait for the backend's server to answer")
	root.PersistentFlags().StringVar(&g.root, "root", "",
		"root znode for --backend zk, such as /app1 (env "+envRoot+"; demo default: a fresh one per run)")

	root.AddCommand(newDemoCmd(g))
	root.AddCommand(newJepsenCmd(g))

	return root
}

// resolve applies the environment to flags not given on the command line
// and checks them.
func (g *globals) resolve(cmd *cobra.Command) error {
	for _, f := range []struct {
		flag, env string
		v         *string
	}{{"backend", envBackend, &g.backend}, {"addr", envAddr, &g.addr}, {"prefix", envPrefix, &g.prefix}, {"root", envRoot, &g.root}} {
		if fl := cmd.Flags().Lookup(f.flag); fl != nil && !fl.Changed {
			if v := strings.TrimSpace(os.Getenv(f.env)); v != "" {
				*f.v = v
			}
		}
	}
	if g.connect <= 0 {
		return usagef("--connect-timeout %v: must be > 0", g.connect)
	}
	switch g.backend {
	case backendMem:
		return nil
	case backendRedis:
		if g.addr == "" {
			g.addr = defaultRedisAddr
		}
		return nil
	case backendZK:
		if g.addr == "" {
			g.addr = defaultZKAddr
		}
		return nil
	default:
		return usagef("unknown backend %q: want mem, redis or zk", g.backend)
	}
}

// open opens the backend the flags name. A server that cannot be reached is
// a downError (exit 3); a bad setting a usageError.
func (g *globals) open(ctx context.Context, defaultPrefix string) (backend.Driver, error) {
	switch g.backend {
	case backendRedis:
		prefix := g.prefix
		if prefix == "" {
			prefix = defaultPrefix
		}
		octx, cancel := context.WithTimeout(ctx, g.connect)
		defer cancel()
		b, err := redis.Open(octx, redis.Config{Addr: g.addr, Prefix: prefix})
		if errors.Is(err, redis.ErrConfig) {
			return nil, &usageError{err: err}
		}
		if err != nil {
			return nil, &downError{err: fmt.Errorf("%w (is redis-server running at %s? set --addr or %s)", err, g.addr, envAddr)}
		}
		return b, nil
	case backendZK:
		root := g.root
		if root == "" {
			root = "/" + defaultPrefix
		}
		servers := strings.Split(g.addr, ",")
		octx, cancel := context.WithTimeout(ctx, g.connect)
		defer cancel()
		b, err := zk.Open(octx, zk.Config{Servers: servers, Root: root})
		if errors.Is(err, zk.ErrConfig) {
			return nil, &usageError{err: err}
		}
		if err != nil {
			return nil, &downError{err: fmt.Errorf("%w (is ZooKeeper running at %s? set --addr or %s)", err, g.addr, envAddr)}
		}
		return b, nil
	default:
		return mem.New(), nil
	}
}

// noArgs is cobra.NoArgs as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// run executes the command line args, prints any error as one line on
// stderr, and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "epochal: %v\n", err)
	}
	return exitCode(err)
}

func main() {
	// An interrupt ends a running workload early; it still reports and checks.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
