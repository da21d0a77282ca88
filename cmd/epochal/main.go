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

	"github.com/spf13/cobra"
)

// Exit codes of the command.
const (
	exitOK    = 0
	exitFail  = 1 // the run failed or an invariant check did not hold
	exitUsage = 2 // bad command line
)

// errCheckFailed is returned when a workload ran but its invariant check
// did not hold. It maps to exit code 1.
var errCheckFailed = errors.New("invariant check failed")

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
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &u):
		return exitUsage
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

// envBackend overrides --backend's default when set.
const envBackend = "EPOCHAL_BACKEND"

// globals holds the persistent flags, resolved by the root's
// PersistentPreRunE before any subcommand runs. Subcommands must not define
// their own PersistentPreRunE (cobra would run theirs instead of the root's).
type globals struct {
	backend string
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

	root.AddCommand(newDemoCmd(g))
	return root
}

// resolve applies the environment to flags not given on the command line
// and checks them.
func (g *globals) resolve(cmd *cobra.Command) error {
	if f := cmd.Flags().Lookup("backend"); f != nil && !f.Changed {
		if v := strings.TrimSpace(os.Getenv(envBackend)); v != "" {
			g.backend = v
		}
	}
	switch g.backend {
	case backendMem:
		return nil
	case backendRedis, backendZK:
		return usagef("backend %q is not built yet in this release; use --backend mem", g.backend)
	default:
		return usagef("unknown backend %q: want mem, redis or zk", g.backend)
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
