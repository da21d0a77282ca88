package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// inspectHelp ends the root's help: what every inspecting command shares,
// said once.
const inspectHelp = `

The inspecting commands (refs, txn, locks, group, clock) read a Redis or
ZooKeeper backend; the embedded one (--backend mem) lives inside one
process, so there is nothing to inspect from another. They print a
table, or JSON or YAML with -o json|yaml (--json is -o json). They
write nothing, except 'refs set', which asks for --yes: not even the
housekeeping a program's backend does as it reads (dropping expired
records and the entries of dead lock holders and group members, marking
a watched ref), so a Redis user without write commands (ACL -@write)
may run them. A --prefix or --root that holds no Epochal data is "no
such namespace" (exit 1), with the namespaces found there. Times are
local (--utc for UTC); relative times are measured from now, or from
` + envNow + ` (RFC 3339) when it is set.`

// inspectNote ends the help of every inspecting command: a pointer to
// inspectHelp.
const inspectNote = `

Backends, times and exit codes: see 'epochal --help'.`

// valuesHelp is said once, in refs' help: how values are shown.
const valuesHelp = `

Values are msgpack (the refs package's default codec), shown as JSON; a
value in another codec is shown as base64 with a note. A promise or a
delay shows the value it holds (null until delivered or run) and its state
(pending, delivered, running, done or failed), not its stored envelope.

A value larger than --value-limit (default 4 MiB) is not read: it is shown
as its size (on Redis it is not even sent), so a huge value planted in the
backend costs the command no memory.`

// valuesNote ends the help of the commands that show values: a pointer to
// valuesHelp and inspectHelp.
const valuesNote = `

How values are shown, and --value-limit: see 'epochal refs --help'.` + inspectNote

// limitNote ends the help of the commands with --value-limit.
const limitNote = valuesNote

func newRefsCmd(g *globals) *cobra.Command {
	cmd := parentCmd("refs", "Inspect refs: list them, read their values and histories, watch and diff them",
		`refs inspects the refs a backend holds, read-only: their names, values,
kept histories and changes. Only 'refs set' writes, and only with --yes.`+valuesHelp+inspectNote)
	cmd.AddCommand(newRefsLsCmd(g), newRefsGetCmd(g), newRefsHistoryCmd(g), newRefsWatchCmd(g),
		newRefsDiffCmd(g), newRefsSetCmd(g))
	return cmd
}

// --- refs ls ---

type refOut struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Backend  string `json:"backend"`
	Newest   uint64 `json:"newest"`
	Size     int    `json:"size"`
	Versions int    `json:"versions"`
	Error    string `json:"error,omitempty"` // the ref's stored data is malformed
}

func newRefsLsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls [PATTERN]",
		Short: "List refs: name, kind, backend, newest point, size, history length",
		Long: `ls lists the refs whose names match PATTERN (all without one), sorted by
name: each one's kind, backend, the point of its newest version, the size
of its newest value and how many versions it keeps. Values are not read.

A ref whose stored data is malformed (a Redis key of another type, a ref
hash missing its fields, data that does not parse) does not stop the
listing: it is listed with kind "?", and the command then names it, with
what is wrong, and exits 1.

PATTERN is a name prefix, or a glob in which * matches any run of
characters (slashes included) and ? any one character.` + inspectNote,
		Example: "  epochal --backend redis refs ls\n  epochal --backend redis refs ls 'bank/*' --json",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("%s takes at most one PATTERN, got %d arguments", cmd.CommandPath(), len(args))
			}
			return nil
		},
		ValidArgsFunction: g.completeRefs,
	}
	return g.inspecting(cmd, nil, func(ctx context.Context, in *inspect, args []string) error {
		pattern := ""
		if len(args) == 1 {
			pattern = args[0]
		}
		prefix, match := compilePattern(pattern)
		rs, err := in.list(ctx, prefix)
		if err != nil {
			return err
		}
		out := []refOut{}
		var bad []string
		for _, r := range rs {
			if !match(r.Name) {
				continue
			}
			o := refOut{Name: r.Name, Kind: string(r.Kind), Backend: in.drv.ID(), Newest: uint64(r.Newest), Size: r.Size, Versions: r.Versions}
			if r.Err != nil {
				o.Kind, o.Error = "?", r.Err.Error()
				bad = append(bad, o.Error)
			}
			out = append(out, o)
		}
		// The bad refs are listed with the others, then named again in
		// the command's error: exit 1, a failed check.
		badErr := func() error {
			if len(bad) == 0 {
				return nil
			}
			return fmt.Errorf("%d %s could not be read (kind \"?\" above): %s", len(bad), plural(len(bad), "ref", "refs"), strings.Join(bad, "; "))
		}
		if in.json {
			if err := in.printJSON(out); err != nil {
				return err
			}
			return badErr()
		}
		if len(out) == 0 {
			if pattern == "" {
				fmt.Fprintf(in.out, "no refs on %s\n", in.drv.ID())
			} else {
				fmt.Fprintf(in.out, "no refs matching %q on %s\n", pattern, in.drv.ID())
			}
			return nil
		}
		t := in.table("NAME", "KIND", "BACKEND", "NEWEST", "SIZE", "HISTORY")
		for _, r := range out {
			if r.Error != "" {
				t.row(r.Name, r.Kind, r.Backend, "-", "-", "-")
				continue
			}
			t.row(r.Name, r.Kind, r.Backend, fmt.Sprint(r.Newest), bytesSize(r.Size), fmt.Sprint(r.Versions))
		}
		if err := t.flush(); err != nil {
			return err
		}
		return badErr()
	})
}

// compilePattern returns the prefix to list and the match of a PATTERN.
func compilePattern(pattern string) (string, func(string) bool) {
	i := strings.IndexAny(pattern, "*?")
	if i < 0 {
		return pattern, func(string) bool { return true }
	}
	var re strings.Builder
	re.WriteString("^")
	for _, c := range pattern {
		switch c {
		case '*':
			re.WriteString(".*")
		case '?':
			re.WriteString(".")
		default:
			re.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	re.WriteString("$")
	rx := regexp.MustCompile(re.String())
	return pattern[:i], rx.MatchString
}

// --- shared shapes ---

type versionOut struct {
	Point      uint64          `json:"point"`
	Time       time.Time       `json:"time,omitzero"`
	Txn        string          `json:"txn"`
	Size       int             `json:"size"`
	Value      json.RawMessage `json:"value"`
	Encoding   string          `json:"encoding"`
	State      string          `json:"state,omitempty"` // a promise's or a delay's
	Note       string          `json:"note,omitempty"`
	Unresolved bool            `json:"unresolved,omitempty"` // committed, not rolled forward yet
}

func versionJSON(kind backend.Kind, v backend.Version, unresolved clock.Point) versionOut {
	s := showVersion(kind, v)
	return versionOut{Point: uint64(v.Point), Time: jsonTime(v.Time), Txn: v.Txn, Size: valueSize(v),
		Value: s.JSON, Encoding: s.Encoding, State: s.State, Note: s.Note, Unresolved: unresolved != 0 && v.Point == unresolved}
}

type intentOut struct {
	Txn         string    `json:"txn"`
	Coordinator string    `json:"coordinator"`
	Mode        string    `json:"mode"`
	Staged      bool      `json:"staged"`
	Status      string    `json:"status,omitempty"` // the holder's record, when the coordinator is this backend
	Lease       time.Time `json:"lease,omitzero"`
}

func (h *refHistory) intentJSON() *intentOut {
	it := h.vr.Intent
	if it == nil {
		return nil
	}
	o := &intentOut{Txn: it.Txn, Coordinator: it.Coord, Mode: modeOf(it), Staged: it.Staged}
	if h.holder != nil {
		o.Status = h.holder.Status.String()
		o.Lease = jsonTime(h.holder.Lease)
	}
	return o
}

// intentText describes the ref's intent for people.
func (in *inspect) intentText(h *refHistory) string {
	it := h.vr.Intent
	if it == nil {
		return ""
	}
	s := fmt.Sprintf("held by txn %s (%s", it.Txn, modeOf(it))
	switch {
	case h.holder == nil:
		s += fmt.Sprintf(", coordinator %s)", it.Coord)
	case h.holder.Status == backend.Pending:
		s += fmt.Sprintf(", pending, lease %s)", in.leaseLeft(h.holder.Lease))
	default:
		s += ", " + h.holder.Status.String() + ")"
	}
	return s
}

// txnCell is a version's transaction id for a table.
func txnCell(v backend.Version, unresolved clock.Point) string {
	t := v.Txn
	if t == "" {
		t = "-"
	}
	if unresolved != 0 && v.Point == unresolved {
		t += " (not rolled forward yet)"
	}
	return t
}

// --- refs get ---

type getOut struct {
	Ref     string  `json:"ref"`
	Backend string  `json:"backend"`
	Kind    string  `json:"kind"`
	At      *uint64 `json:"at,omitempty"`
	versionOut
	Intent *intentOut `json:"intent,omitempty"`
}

func newRefsGetCmd(g *globals) *cobra.Command {
	var at uint64
	cmd := &cobra.Command{
		Use:   "get REF",
		Short: "Print a ref's value (decoded from msgpack, shown as JSON)",
		Long: `get prints a ref's newest committed value, or with --at POINT the value as
of that point: the newest kept version at or before it. A point the kept
history no longer reaches is exit code 1 (the history was trimmed). The
table cuts a value longer than 1000 characters, with a note (--full shows
it whole; --json never cuts). Of a value larger than --value-limit, get
shows the rest, says how large the value is, and exits 1.` + limitNote,
		Example:           "  epochal --backend redis refs get bank/alice\n  epochal --backend redis refs get bank/alice --at 3 --json",
		Args:              exactArgs("REF"),
		ValidArgsFunction: g.completeRefs,
	}
	cmd.Flags().Uint64Var(&at, "at", 0, "show the value as of this point (default: the newest)")
	full := cmd.Flags().Bool("full", false, fmt.Sprintf("show the value whole (the table cuts it to %d characters; --json never cuts)", getCut))
	limit := valueLimitFlag(cmd)
	return g.inspecting(cmd, func(args []string) error { return refArg(args[0]) }, func(ctx context.Context, in *inspect, args []string) error {
		name := args[0]
		in.valueLimit = int(*limit)
		h, err := in.history(ctx, name)
		if err != nil {
			return err
		}
		v := h.versions[0]
		var atp *uint64
		if cmd.Flags().Changed("at") {
			if v, err = in.pick(ctx, h, clock.Point(at)); err != nil {
				return err
			}
			atp = &at
		}
		// A value over --value-limit was not read: the rest is shown, and
		// the command fails saying why.
		var omitted error
		if v.Omitted > 0 {
			omitted = fmt.Errorf("the value of %q at point %d is %s, more than --value-limit %s: not read (raise --value-limit to read it)",
				name, v.Point, bytesSize(v.Omitted), bytesSize(in.valueLimit))
		}
		if in.json {
			if err := in.printJSON(getOut{Ref: name, Backend: in.drv.ID(), Kind: string(h.vr.Kind), At: atp,
				versionOut: versionJSON(h.vr.Kind, v, h.unresolved), Intent: h.intentJSON()}); err != nil {
				return err
			}
			return omitted
		}
		t := in.table()
		t.row("REF", name)
		t.row("BACKEND", in.drv.ID())
		if atp != nil {
			t.row("AT", fmt.Sprint(at))
		}
		t.row("POINT", fmt.Sprint(v.Point))
		t.row("TIME", in.whenAgo(v.Time))
		t.row("TXN", txnCell(v, h.unresolved))
		t.row("SIZE", bytesSize(valueSize(v)))
		if s := in.intentText(h); s != "" {
			t.row("INTENT", s)
		}
		if err := t.flush(); err != nil {
			return err
		}
		sv := showVersion(h.vr.Kind, v)
		if n := utf8.RuneCount(sv.JSON); !*full && sv.Encoding != encOmitted && n > getCut {
			_, err = fmt.Fprintf(in.out, "VALUE    %s\n(cut to %d of %d characters: --full shows it whole, --json gives it whole)\n", sv.cell(getCut), getCut, n)
			return err
		}
		if _, err = fmt.Fprintf(in.out, "VALUE    %s\n", sv.block()); err != nil {
			return err
		}
		return omitted
	})
}

// getCut is how many characters of a value refs get shows without --full.
const getCut = 1000

// pick is the version a read at p sees: the newest kept one at or before
// p. A point after the current one is bad usage (its answer could still
// change); one the history no longer reaches is exit 1.
func (in *inspect) pick(ctx context.Context, h *refHistory, p clock.Point) (backend.Version, error) {
	now, err := in.readPoint(ctx)
	if err != nil {
		return backend.Version{}, err
	}
	if p > now {
		return backend.Version{}, usagef("point %d is after the current point %d: its value could still change; pick a point <= %d", p, now, now)
	}
	v, res := history.Pick(h.versions, p)
	if res == history.Fault {
		oldest := h.versions[len(h.versions)-1].Point
		return backend.Version{}, notFoundf("history of %q no longer reaches point %d: it was trimmed (oldest kept version: %d; the ref keeps %d older versions, at most %d); pick a point >= %d",
			h.name, p, oldest, h.vr.Keep, h.vr.Max, oldest)
	}
	return v, nil
}

// --- refs history ---

type historyOut struct {
	Ref      string       `json:"ref"`
	Backend  string       `json:"backend"`
	Kind     string       `json:"kind"`
	Keep     int          `json:"keep"`
	Min      int          `json:"min_history"`
	Max      int          `json:"max_history"`
	Trimmed  uint64       `json:"trimmed"`
	Ensured  uint64       `json:"ensured"`
	Intent   *intentOut   `json:"intent,omitempty"`
	Versions []versionOut `json:"versions"`
}

func newRefsHistoryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "history REF",
		Short: "Print every kept version of a ref: point, commit time, txn id, value",
		Long: `history prints every version the ref keeps, newest first: its commit point,
commit time (as the committer's clock saw it), the id of the transaction
that wrote it and the value. A ref keeps its newest version and Keep older
ones (MinHistory, grown by read faults up to MaxHistory); "trimmed" is the
newest point ever dropped. Tables cut values to 60 characters (--full shows
them whole); --json has them whole. A value larger than --value-limit
shows as its size.` + limitNote,
		Example:           "  epochal --backend redis refs history bank/alice",
		Args:              exactArgs("REF"),
		ValidArgsFunction: g.completeRefs,
	}
	full := cmd.Flags().Bool("full", false, "show values whole in the table (it cuts them to 60 characters; --json never cuts)")
	limit := valueLimitFlag(cmd)
	return g.inspecting(cmd, func(args []string) error { return refArg(args[0]) }, func(ctx context.Context, in *inspect, args []string) error {
		name := args[0]
		in.valueLimit = int(*limit)
		h, err := in.history(ctx, name)
		if err != nil {
			return err
		}
		if in.json {
			o := historyOut{Ref: name, Backend: in.drv.ID(), Kind: string(h.vr.Kind), Keep: h.vr.Keep, Min: h.vr.Min, Max: h.vr.Max,
				Trimmed: uint64(h.vr.Trimmed), Ensured: uint64(h.vr.Ensured), Intent: h.intentJSON(), Versions: []versionOut{}}
			for _, v := range h.versions {
				o.Versions = append(o.Versions, versionJSON(h.vr.Kind, v, h.unresolved))
			}
			return in.printJSON(o)
		}
		fmt.Fprintf(in.out, "%s on %s: %d %s kept (keeps %d older, min %d, max %d)", name, in.drv.ID(), len(h.versions),
			plural(len(h.versions), "version", "versions"), h.vr.Keep, h.vr.Min, h.vr.Max)
		if h.vr.Trimmed > 0 {
			fmt.Fprintf(in.out, "; trimmed up to point %d", h.vr.Trimmed)
		}
		fmt.Fprintln(in.out)
		if s := in.intentText(h); s != "" {
			fmt.Fprintf(in.out, "intent: %s\n", s)
		}
		t := in.table("POINT", "TIME", "AGE", "TXN", "SIZE", "VALUE")
		for _, v := range h.versions {
			cut := 60
			if *full {
				cut = 0
			}
			t.row(fmt.Sprint(v.Point), in.when(v.Time), in.ago(v.Time), txnCell(v, h.unresolved), bytesSize(valueSize(v)), showVersion(h.vr.Kind, v).cell(cut))
		}
		return t.flush()
	})
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// --- refs watch ---

type changeOut struct {
	Type string `json:"type"` // "change"
	Ref  string `json:"ref"`
	versionOut
}

type gapOut struct {
	Type  string `json:"type"` // "gap"
	Ref   string `json:"ref"`
	After uint64 `json:"after"`
	Upto  uint64 `json:"upto"`
}

// watchPoll is how often watch re-reads the history without a hint: hints
// may be lost.
const watchPoll = time.Second

func newRefsWatchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "watch REF",
		Short: "Stream each committed change of a ref until interrupted",
		Long: `watch prints each change of the ref committed after it starts, in commit
order, one line each (JSON lines with --json), until ^C. It follows the
backend's change stream and re-reads the history every second, so no
change is skipped silently: if the history was trimmed past changes before
watch could read them (a ref keeping few versions, changing fast), it
prints a gap notice ({"type":"gap",...} with --json) and goes on from the
newest value.

Like every inspecting command it writes nothing: it does not mark the ref
as watched (as a program's watch does, which makes commits keep 256 older
versions and, on Redis, publish them), so the ref keeps only its own
history while watch reads it. On ZooKeeper a change wakes it at once; on
Redis it looks for one every 250 ms.

It says on stderr from which point it watches once it has read the ref.` + limitNote,
		Example:           "  epochal --backend redis refs watch bank/alice\n  epochal --backend zk refs watch bank/alice --json | jq .value",
		Args:              exactArgs("REF"),
		ValidArgsFunction: g.completeRefs,
	}
	limit := valueLimitFlag(cmd)
	return g.inspecting(cmd, func(args []string) error { return refArg(args[0]) }, func(ctx context.Context, in *inspect, args []string) error {
		in.valueLimit = int(*limit)
		return in.watch(ctx, args[0])
	})
}

// watch follows the ref as refs' watchers do: it subscribes before its
// first read, and on every hint or poll reads the history and then drains
// the feed, so every version appended meanwhile is in one or the other. A
// gap is announced where the history was trimmed past the last point shown
// and the feed cannot vouch for the versions in between.
func (in *inspect) watch(ctx context.Context, name string) error {
	var sub backend.Subscription
	var hints <-chan struct{}
	var feed backend.Feed
	subscribe := func() {
		if s, err := in.drv.Subscribe(ctx, name); err == nil {
			sub, hints = s, s.C()
			feed, _ = s.(backend.Feed)
		}
	}
	defer func() {
		if sub != nil {
			sub.Close()
		}
	}()
	// A ref that does not exist is refused before subscribing: exit 1,
	// not a watch of nothing. (The backend is read-only: its
	// subscription marks nothing, and brings no feed.)
	if _, err := in.history(ctx, name); err != nil {
		return err
	}
	subscribe()
	h, err := in.history(ctx, name)
	if err != nil {
		return err
	}
	last := h.versions[0].Point
	fed := feed != nil // subscribed before the first read
	fmt.Fprintf(in.errOut, "epochal: watching %s on %s for changes after point %d; ^C to stop\n", name, in.drv.ID(), last)
	tick := time.NewTicker(watchPoll)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hints:
		case <-tick.C:
		}
		if sub == nil {
			// Subscribed only now: the feed cannot vouch for what came
			// before, until the next round.
			subscribe()
			fed = false
		}
		h, err := in.history(ctx, name)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var nf *notFoundError
			if errors.As(err, &nf) {
				return err
			}
			if !failing {
				fmt.Fprintf(in.errOut, "epochal: watch: %v; retrying until it answers\n", err)
				failing = true
			}
			continue
		}
		if failing {
			fmt.Fprintf(in.errOut, "epochal: watch: %s answers again\n", in.drv.ID())
			failing = false
		}
		var fresh []backend.Version
		if feed != nil {
			var complete bool
			fresh, complete = feed.Drain()
			fed = fed && complete
		}
		byPoint := map[clock.Point]backend.Version{}
		for _, v := range append(h.versions, fresh...) {
			if v.Point > last {
				if _, ok := byPoint[v.Point]; !ok {
					byPoint[v.Point] = v
				}
			}
		}
		newer := make([]backend.Version, 0, len(byPoint))
		for _, v := range byPoint {
			newer = append(newer, v)
		}
		slices.SortFunc(newer, func(a, b backend.Version) int { return cmp.Compare(a.Point, b.Point) })
		for i, v := range newer {
			if i == 0 && h.vr.Trimmed > last && !fed {
				if err := in.printGap(name, last, v.Point); err != nil {
					return err
				}
			}
			if err := in.printChange(name, h.vr.Kind, v, h.unresolved); err != nil {
				return err
			}
			last = v.Point
		}
		// Caught up: the feed vouches for what follows while it stays
		// complete.
		fed = feed != nil
	}
}

func (in *inspect) printGap(name string, after, upto clock.Point) error {
	if in.json {
		return in.printJSONLine(gapOut{Type: "gap", Ref: name, After: uint64(after), Upto: uint64(upto)})
	}
	_, err := fmt.Fprintf(in.out, "gap: changes after point %d up to point %d were trimmed from the history before they could be read; next is the value at %d\n", after, upto, upto)
	return err
}

func (in *inspect) printChange(name string, kind backend.Kind, v backend.Version, unresolved clock.Point) error {
	if in.json {
		return in.printJSONLine(changeOut{Type: "change", Ref: name, versionOut: versionJSON(kind, v, unresolved)})
	}
	_, err := fmt.Fprintf(in.out, "%s  point %d  txn %s  %s\n", in.when(v.Time), v.Point, txnCell(v, unresolved), showVersion(kind, v).cell(0))
	return err
}

// --- refs diff ---

type diffEnd struct {
	At uint64 `json:"at"`
	versionOut
}

type diffOut struct {
	Ref      string                     `json:"ref"`
	Backend  string                     `json:"backend"`
	From     diffEnd                    `json:"from"`
	To       diffEnd                    `json:"to"`
	Changed  bool                       `json:"changed"`
	Added    map[string]json.RawMessage `json:"added,omitempty"`
	Removed  map[string]json.RawMessage `json:"removed,omitempty"`
	Modified map[string]diffPair        `json:"modified,omitempty"`
}

type diffPair struct {
	Old json.RawMessage `json:"old"`
	New json.RawMessage `json:"new"`
}

func newRefsDiffCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "diff REF P1 P2",
		Short: "Show what changed in a ref between two points",
		Long: `diff shows the ref's values as of points P1 and P2 (the newest kept version
at or before each) and what changed: for two JSON objects the keys added,
removed and changed (+, -, ~), otherwise "old -> new". A point the kept
history no longer reaches is exit code 1.` + limitNote,
		Example:           "  epochal --backend redis refs diff bank/alice 2 5",
		Args:              exactArgs("REF", "P1", "P2"),
		ValidArgsFunction: g.completeRefs,
	}
	var p1, p2 clock.Point
	check := func(args []string) (err error) {
		if err := refArg(args[0]); err != nil {
			return err
		}
		if p1, err = pointArg("P1", args[1]); err != nil {
			return err
		}
		p2, err = pointArg("P2", args[2])
		return err
	}
	limit := valueLimitFlag(cmd)
	return g.inspecting(cmd, check, func(ctx context.Context, in *inspect, args []string) error {
		name := args[0]
		in.valueLimit = int(*limit)
		h, err := in.history(ctx, name)
		if err != nil {
			return err
		}
		v1, err := in.pick(ctx, h, p1)
		if err != nil {
			return err
		}
		v2, err := in.pick(ctx, h, p2)
		if err != nil {
			return err
		}
		for _, v := range []backend.Version{v1, v2} {
			if v.Omitted > 0 {
				return fmt.Errorf("the value of %q at point %d is %s, more than --value-limit %s: not read, nothing to compare (raise --value-limit to read it)",
					name, v.Point, bytesSize(v.Omitted), bytesSize(in.valueLimit))
			}
		}
		o := diffOut{Ref: name, Backend: in.drv.ID(),
			From: diffEnd{At: uint64(p1), versionOut: versionJSON(h.vr.Kind, v1, h.unresolved)},
			To:   diffEnd{At: uint64(p2), versionOut: versionJSON(h.vr.Kind, v2, h.unresolved)}}
		s1, s2 := showKind(h.vr.Kind, v1.Value), showKind(h.vr.Kind, v2.Value)
		o.Changed = string(s1.JSON) != string(s2.JSON) || s1.Encoding != s2.Encoding
		m1, ok1 := object(s1)
		m2, ok2 := object(s2)
		objects := ok1 && ok2
		if objects && o.Changed {
			o.Added, o.Removed, o.Modified = map[string]json.RawMessage{}, map[string]json.RawMessage{}, map[string]diffPair{}
			for k, a := range m1 {
				b, ok := m2[k]
				switch {
				case !ok:
					o.Removed[k] = a
				case string(a) != string(b):
					o.Modified[k] = diffPair{Old: a, New: b}
				}
			}
			for k, b := range m2 {
				if _, ok := m1[k]; !ok {
					o.Added[k] = b
				}
			}
		}
		if in.json {
			return in.printJSON(o)
		}
		t := in.table()
		t.row("REF", name)
		t.row("FROM", fmt.Sprintf("%d: version at %d, %s", p1, v1.Point, in.whenAgo(v1.Time)))
		t.row("TO", fmt.Sprintf("%d: version at %d, %s", p2, v2.Point, in.whenAgo(v2.Time)))
		if err := t.flush(); err != nil {
			return err
		}
		switch {
		case !o.Changed && v1.Point == v2.Point:
			fmt.Fprintf(in.out, "no change: both points see the version at %d\n", v1.Point)
		case !o.Changed:
			fmt.Fprintf(in.out, "no change: the versions at %d and %d hold equal values\n", v1.Point, v2.Point)
		case objects:
			for _, k := range sortedKeys(o.Modified) {
				fmt.Fprintf(in.out, "~ %s: %s -> %s\n", k, o.Modified[k].Old, o.Modified[k].New)
			}
			for _, k := range sortedKeys(o.Added) {
				fmt.Fprintf(in.out, "+ %s: %s\n", k, o.Added[k])
			}
			for _, k := range sortedKeys(o.Removed) {
				fmt.Fprintf(in.out, "- %s: %s\n", k, o.Removed[k])
			}
		default:
			fmt.Fprintf(in.out, "%s -> %s\n", s1.cell(0), s2.cell(0))
		}
		return nil
	})
}

// object splits a JSON object into its members' compact JSON.
func object(s shown) (map[string]json.RawMessage, bool) {
	if s.Encoding != "msgpack" || len(s.JSON) == 0 || s.JSON[0] != '{' {
		return nil, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(s.JSON, &m); err != nil {
		return nil, false
	}
	return m, true
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// --- refs set ---

type setOut struct {
	Ref     string          `json:"ref"`
	Backend string          `json:"backend"`
	Point   uint64          `json:"point"`
	Value   json.RawMessage `json:"value"`
}

// dryRunOut is what refs set --dry-run prints.
type dryRunOut struct {
	Ref     string          `json:"ref"`
	Backend string          `json:"backend"`
	DryRun  bool            `json:"dry_run"`
	Point   uint64          `json:"point"` // the stored value's
	Old     json.RawMessage `json:"old"`
	OldSize int             `json:"old_size"`
	New     json.RawMessage `json:"new"`
	NewSize int             `json:"new_size"` // the encoded size that would be written
	Note    string          `json:"note,omitempty"`
}

// beforeSetCommit, when set (by a test), runs between refs set's check of
// the stored value and its transaction.
var beforeSetCommit func()

// errRefused ends refs set's transaction when the value it would replace
// has another shape.
var errRefused = errors.New("refused")

// shapeRefusal says why data must not replace cur without --force: cur is
// not msgpack, or has another shape ("" when it may).
func shapeRefusal(cur, data []byte) string {
	oldShape, ok := shapeOf(cur)
	if !ok {
		return "the stored value is not msgpack (the ref uses another codec): a msgpack value would break its readers"
	}
	newShape, _ := shapeOf(data)
	if why := sameShape(oldShape, newShape); why != "" {
		return why + ": the ref's typed readers could not read it"
	}
	return ""
}

func newRefsSetCmd(g *globals) *cobra.Command {
	var yes, force, dryRun bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "set REF JSON",
		Short: "Set a ref to a JSON value, in a transaction (asks for --yes)",
		Long: `set changes a ref: it commits, like any client, a transaction that sets the
ref to the msgpack encoding of the JSON value. Integers stay integers,
objects become maps with string keys. It only changes an existing ref (one
that does not exist is exit code 1, and is not created), and only with
--yes: without it, nothing is written and the exit code is 2. --dry-run
prints the stored value, the new one and its encoded size, and writes
nothing. A commit the server does not answer within --timeout may or may
not have happened: the command says so, with exit code 3, and 'refs get'
tells which.

So as not to break the ref's typed readers (a Go Ref[int] cannot read a
string), set refuses, with exit code 2 and nothing written, a value whose
shape differs from the stored one's, and a ref whose value is not msgpack
(stored with another codec), unless --force. The shape is the msgpack type
(nil, bool, integer, float, string, binary, array, map; signed and
unsigned integers alike), and for a non-empty map the type of its keys,
for a non-empty array the type of its elements (of the first key or
element; nothing deeper is compared). A stored nil takes any shape; an
empty map or array matches any map or array.

Validators belong to the processes that set them, so this command runs
none: make sure the value is one the ref's users accept.` + valuesNote,
		Example: "  epochal --backend redis refs set bank/alice '{\"balance\": 70}' --dry-run\n" +
			"  epochal --backend redis refs set bank/alice '{\"balance\": 70}' --yes",
		Args:              exactArgs("REF", "JSON"),
		ValidArgsFunction: g.completeRefs,
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "really write")
	cmd.Flags().BoolVar(&force, "force", false, "write even a value of another shape than the stored one, or over a value in another codec")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the stored value, the new one and its encoded size; write nothing")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up on the transaction after this long")
	var value any
	check := func(args []string) (err error) {
		if err := refArg(args[0]); err != nil {
			return err
		}
		if value, err = parseJSONValue(args[1]); err != nil {
			return usagef("JSON %q: %v (quote it for the shell: '{\"a\": 1}')", args[1], err)
		}
		if timeout <= 0 {
			return usagef("--timeout %v: must be > 0", timeout)
		}
		if !yes && !dryRun {
			return usagef("refs set changes %q for every client of the backend: add --yes to confirm (or --dry-run to see what it would write)", args[0])
		}
		return nil
	}
	return g.inspecting(cmd, check, func(ctx context.Context, in *inspect, args []string) error {
		name := args[0]
		data, err := encodeValue(value)
		if err != nil {
			return usagef("JSON %q: cannot encode as msgpack: %v", args[1], err)
		}
		h, err := in.history(ctx, name) // exit 1 if it does not exist: set never creates
		if err != nil {
			return err
		}
		if h.vr.Kind != backend.KindRef && h.vr.Kind != "" {
			return usagef("%q holds a %s, not a ref: refs set only sets refs", name, h.vr.Kind)
		}
		cur := h.versions[0]
		note := ""
		if cur.Omitted > 0 {
			note = fmt.Sprintf("the stored value (%s) is larger than --value-limit: its shape was not checked", bytesSize(cur.Omitted))
			if !force {
				return usagef("refs set %q: the stored value is %s, more than --value-limit %s: its shape cannot be checked; raise --value-limit, or add --force",
					name, bytesSize(cur.Omitted), bytesSize(in.valueLimit))
			}
		} else if why := shapeRefusal(cur.Value, data); why != "" {
			note = why
			if !force {
				return usagef("refs set %q: %s; add --force to write it anyway", name, why)
			}
		}
		if dryRun {
			old := showVersion(h.vr.Kind, cur)
			o := dryRunOut{Ref: name, Backend: in.drv.ID(), DryRun: true, Point: uint64(cur.Point), Old: old.JSON, OldSize: valueSize(cur),
				New: show(data).JSON, NewSize: len(data), Note: note}
			if in.json {
				return in.printJSON(o)
			}
			t := in.table()
			t.row("REF", name)
			t.row("BACKEND", in.drv.ID())
			t.row("POINT", fmt.Sprint(cur.Point))
			t.row("OLD", old.cell(0)+" ("+bytesSize(o.OldSize)+")")
			t.row("NEW", show(data).cell(0)+" ("+bytesSize(o.NewSize)+")")
			if note != "" {
				t.row("NOTE", note+" (--force)")
			}
			if err := t.flush(); err != nil {
				return err
			}
			_, err := fmt.Fprintln(in.out, "dry run: nothing written")
			return err
		}
		if beforeSetCommit != nil {
			beforeSetCommit()
		}
		tctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		s, err := stm.Open(tctx, in.drv, stm.WithSweepInterval(0))
		if err != nil {
			return in.backendErr(ctx, "open a transaction", err)
		}
		defer s.Close()
		key := engine.Key{Drv: in.drv, Name: name}
		var refused string
		err = s.Dosync(tctx, func(tx *txn.Tx) error {
			// Checked again in the transaction: a value of another shape
			// committed since the check above is not overwritten (a commit
			// in between makes this write conflict and the body run again).
			refused = ""
			if cur := engine.Read(tx, key); !force && cur != nil {
				if refused = shapeRefusal(cur, data); refused != "" {
					return errRefused
				}
			}
			engine.Write(tx, key, data, nil)
			return nil
		})
		if errors.Is(err, errRefused) {
			return usagef("refs set %q: %s; add --force to write it anyway", name, refused)
		}
		if errors.Is(err, backend.ErrNotFound) {
			return notFoundf("no ref %q on %s; list them with 'epochal refs ls'", name, in.drv.ID())
		}
		if errors.Is(err, stm.ErrOutcomeUnknown) {
			// The commit was sent and not answered in time: it may
			// still apply (Dosync settles it in the background).
			return &downError{err: fmt.Errorf("set %q: the server at %s did not answer the commit within --timeout %v: it may or may not have committed; look with 'epochal refs get %s'", name, in.g.addr, timeout, name)}
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("set %q: not committed within --timeout %v: is another transaction holding it? (see 'epochal locks ls')", name, timeout)
		}
		if err != nil {
			return in.backendErr(ctx, fmt.Sprintf("set %q", name), err)
		}
		// The STM's floor is the commit point: this process committed
		// nothing else.
		cp := clock.Point(engine.Of(s).Env().Floor.Load())
		sv := show(data)
		if in.json {
			return in.printJSON(setOut{Ref: name, Backend: in.drv.ID(), Point: uint64(cp), Value: sv.JSON})
		}
		_, err = fmt.Fprintf(in.out, "set %s to %s (committed at point %d)\n", name, sv.cell(0), cp)
		return err
	})
}
