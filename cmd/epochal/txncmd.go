package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/internal/lease"
)

// --- txn ---

type recordRefOut struct {
	Backend string `json:"backend"`
	Name    string `json:"name"`
	// Held says whether the transaction holds an intent on the ref (txn
	// show only; absent for a ref of another backend, which is not read).
	Held *bool  `json:"held,omitempty"`
	Mode string `json:"mode,omitempty"`
}

type recordOut struct {
	ID          string         `json:"id"`
	Status      string         `json:"status"`
	ReadPoint   uint64         `json:"read_point"`
	Priority    uint64         `json:"priority"`
	CommitPoint uint64         `json:"commit_point"` // 0 unless committed
	Created     time.Time      `json:"created,omitzero"`
	Lease       time.Time      `json:"lease,omitzero"`
	LeaseLeftMs *int64         `json:"lease_left_ms,omitempty"` // negative once expired
	Refs        []recordRefOut `json:"refs"`
	// OnePhase marks a one-phase commit's record: committed in one step,
	// it keeps only its commit point and creation time (no read point,
	// priority, lease or refs).
	OnePhase bool `json:"one_phase,omitempty"`
}

// onePhase reports whether r is a one-phase commit's record: committed
// with no lease and no refs (a general commit's record has both).
func onePhase(r backend.Record) bool {
	return r.Status == backend.Committed && r.Lease.IsZero() && len(r.Refs) == 0
}

func (in *inspect) recordJSON(r backend.Record) recordOut {
	o := recordOut{ID: r.ID, Status: r.Status.String(), ReadPoint: uint64(r.RP), Priority: uint64(r.Priority),
		CommitPoint: uint64(r.CP), Created: jsonTime(r.Created), Lease: jsonTime(r.Lease), Refs: []recordRefOut{}, OnePhase: onePhase(r)}
	if !r.Lease.IsZero() {
		ms := r.Lease.Sub(in.now).Milliseconds()
		o.LeaseLeftMs = &ms
	}
	for _, a := range r.Refs {
		o.Refs = append(o.Refs, recordRefOut{Backend: a.Backend, Name: a.Name})
	}
	return o
}

// refsCell names a record's refs, with the backend for those of another.
func (in *inspect) refsCell(r backend.Record) string {
	if len(r.Refs) == 0 {
		return "-"
	}
	names := make([]string, len(r.Refs))
	for i, a := range r.Refs {
		names[i] = a.Name
		if a.Backend != in.drv.ID() {
			names[i] += "@" + a.Backend
		}
	}
	return strings.Join(names, ", ")
}

func cpCell(r backend.Record) string {
	if r.Status != backend.Committed {
		return "-"
	}
	return fmt.Sprint(r.CP)
}

func newTxnCmd(g *globals) *cobra.Command {
	cmd := parentCmd("txn", "Inspect transaction records: status, read and commit points, refs, lease",
		`txn inspects the transaction records the coordinator (the backend the flags
name) keeps for transactions committing through the general path: their
status, read point, priority, commit point, the refs they lock and their
lease. Records are deleted once a transaction's intents are resolved, so
these are transactions under way, or left behind by a process that died
(the recovery sweeper finishes them once their lease is over), and aborted
tombstones.`+inspectNote)
	cmd.AddCommand(newTxnShowCmd(g), newTxnLsCmd(g))
	return cmd
}

func newTxnLsCmd(g *globals) *cobra.Command {
	var pending bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List transaction records (--pending: only those not yet committed or aborted)",
		Long: `ls lists the coordinator's transaction records, oldest first: id, status,
read point, priority, commit point, creation time, lease left and refs.` + inspectNote,
		Example: "  epochal --backend redis txn ls --pending",
		Args:    noArgs,
	}
	cmd.Flags().BoolVar(&pending, "pending", false, "only pending records")
	return g.inspecting(cmd, nil, func(ctx context.Context, in *inspect, _ []string) error {
		rs, err := in.listRecords(ctx)
		if err != nil {
			return err
		}
		var keep []backend.Record
		for _, r := range rs {
			if !pending || r.Status == backend.Pending {
				keep = append(keep, r)
			}
		}
		slices.SortFunc(keep, func(a, b backend.Record) int {
			return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
		})
		if in.json {
			out := []recordOut{}
			for _, r := range keep {
				out = append(out, in.recordJSON(r))
			}
			return in.printJSON(out)
		}
		if len(keep) == 0 {
			what := "transaction records"
			if pending {
				what = "pending transactions"
			}
			fmt.Fprintf(in.out, "no %s on %s\n", what, in.drv.ID())
			return nil
		}
		t := in.table("ID", "STATUS", "READ POINT", "PRIORITY", "COMMIT POINT", "CREATED", "LEASE LEFT", "REFS")
		for _, r := range keep {
			t.row(r.ID, r.Status.String(), fmt.Sprint(r.RP), fmt.Sprint(r.Priority), cpCell(r), in.when(r.Created), in.leaseLeft(r.Lease), in.refsCell(r))
		}
		return t.flush()
	})
}

func newTxnShowCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a transaction record, and whether it holds its refs' intents",
		Long: `show prints one transaction record: status, read point, priority, commit
point, creation time, lease, and for each ref it locks (on this backend)
whether it holds the ref's intent and in which mode. A record that does not
exist is exit code 1: finished transactions' records are deleted once their
intents are resolved. A one-phase commit (every ref on the coordinator,
committed in one step) keeps only its status, commit point and creation
time: it has no lease, read point or refs to show.` + inspectNote,
		Example:           "  epochal --backend redis txn show 5f3c0a9e12d4-2",
		Args:              exactArgs("ID"),
		ValidArgsFunction: g.completeRecords,
	}
	return g.inspecting(cmd, nil, func(ctx context.Context, in *inspect, args []string) error {
		id := args[0]
		rs, err := in.records(ctx, []string{id})
		if err != nil {
			return err
		}
		if len(rs) != 1 || rs[0].Status == backend.Missing {
			return notFoundf("no transaction record %q on %s (records are deleted once their intents are resolved); list them with 'epochal txn ls'", id, in.drv.ID())
		}
		r := rs[0]
		o := in.recordJSON(r)
		for i, a := range r.Refs {
			if a.Backend != in.drv.ID() {
				continue
			}
			h, err := in.history(ctx, a.Name)
			if err != nil {
				var nf *notFoundError
				if errors.As(err, &nf) {
					held := false
					o.Refs[i].Held = &held
					continue
				}
				return err
			}
			held := h.vr.Intent != nil && h.vr.Intent.Txn == r.ID
			o.Refs[i].Held = &held
			if held {
				o.Refs[i].Mode = modeOf(h.vr.Intent)
			}
		}
		if in.json {
			return in.printJSON(o)
		}
		t := in.table()
		t.row("ID", r.ID)
		t.row("BACKEND", in.drv.ID())
		t.row("STATUS", r.Status.String())
		rp, prio := fmt.Sprint(r.RP), fmt.Sprint(r.Priority)
		if o.OnePhase {
			rp, prio = "- (a one-phase commit records none)", "-"
		}
		t.row("READ POINT", rp)
		t.row("PRIORITY", prio)
		t.row("COMMIT POINT", cpCell(r))
		t.row("CREATED", in.whenAgo(r.Created))
		lease := "-"
		switch {
		case o.OnePhase:
			lease = "one-phase commit: no lease (committed in one step, holding no intents)"
		case !r.Lease.IsZero():
			lease = in.when(r.Lease) + " (" + in.leaseLeft(r.Lease)
			if r.Lease.After(in.now) {
				lease += " left"
			}
			lease += ")"
		}
		t.row("LEASE", lease)
		if len(o.Refs) == 0 {
			refs := "-"
			if o.OnePhase {
				refs = "- (a one-phase commit records none)"
			}
			t.row("REFS", refs)
		}
		width := 0
		for _, a := range o.Refs {
			width = max(width, len(a.Name))
		}
		for i, a := range o.Refs {
			label := ""
			if i == 0 {
				label = "REFS"
			}
			var state string
			switch {
			case a.Backend != in.drv.ID():
				state = "on " + a.Backend + " (not inspected)"
			case *a.Held:
				state = "intent held (" + a.Mode + ")"
			default:
				state = "intent not held"
			}
			t.row(label, fmt.Sprintf("%-*s  %s", width, a.Name, state))
		}
		return t.flush()
	})
}

// --- locks ---

// lockOut is one row of locks ls --json: a holder of a distributed lock
// (kind "lock": a locks.Mutex or locks.RWMutex) or a transaction's intent on
// a ref (kind "intent"). Fields that do not apply to a kind are left out,
// except token and lease_left_ms, which are null when unknown.
type lockOut struct {
	Kind        string    `json:"kind"`           // "lock" or "intent"
	Lock        string    `json:"lock,omitempty"` // lock: its name
	Ref         string    `json:"ref,omitempty"`  // intent: the ref
	Backend     string    `json:"backend"`
	Txn         string    `json:"txn,omitempty"`         // intent: the holder transaction
	Coordinator string    `json:"coordinator,omitempty"` // intent: its coordinator
	Holder      string    `json:"holder,omitempty"`      // lock: the holding process, host/pid/program
	Session     string    `json:"session,omitempty"`     // lock: the holder's session id
	Mode        string    `json:"mode"`                  // lock: write or read; intent: write, ensure, commute, ensure+commute
	Staged      *bool     `json:"staged,omitempty"`      // intent: whether its value is staged
	Status      string    `json:"status,omitempty"`      // intent: the holder's record; "unknown" when its coordinator is another backend
	Queued      time.Time `json:"queued,omitzero"`       // lock: when the holder joined the lock's line (its clock)
	Heartbeat   time.Time `json:"heartbeat,omitzero"`    // lock: the holder session's last renewal (its clock)
	Lease       time.Time `json:"lease,omitzero"`        // when the lease ends unless renewed
	LeaseLeftMs *int64    `json:"lease_left_ms"`         // null when unknown; negative once expired
	Token       *uint64   `json:"token"`                 // lock: the fencing token; intent: null (intents have none)
	Waiting     *int      `json:"waiting,omitempty"`     // lock: how many wait in line behind the holders
}

// Kinds of lockOut.
const (
	kindLock   = "lock"
	kindIntent = "intent"
)

func newLocksCmd(g *globals) *cobra.Command {
	cmd := parentCmd("locks", "Inspect held locks: distributed locks (Mutex, RWMutex) and intents on refs",
		`locks inspects the locks held on the backend: the distributed locks of
package locks (Mutex, RWMutex) that processes hold with leases and fencing
tokens, and the intents (write locks) transactions hold on refs while they
commit through the general path.`+inspectNote)
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List held locks (name, mode, holder, token, lease left, waiting) and intents on refs",
		Long: `ls prints two tables. The first lists the holders of distributed locks
(locks.Mutex, locks.RWMutex), by lock name: the mode (write, or read for
each of an RWMutex's readers), the holding process (host/pid/program), the
fencing token, how long the holder's lease still runs after its last
renewal (stamped by the holder's clock; "?" when the backend does not say;
on ZooKeeper the lease is the session timeout) and how many wait in line
behind the holders. A holder whose process dies loses the lock when its
lease is over.

The second lists every ref that carries an intent: the holder transaction,
its coordinator, the mode (write, ensure, commute, ensure+commute; a
commute whose value is staged shows as write), the holder's status and how
long its lease still runs, when its record is on this backend ("?"
otherwise). Intents have no fencing token (token is null in the JSON). An
intent whose lease is over is cleared by the next writer that meets it, or
by a recovery sweep.

--json prints one array of both: "kind" is "lock" or "intent".` + inspectNote,
		Example: "  epochal --backend redis locks ls\n  epochal --backend zk locks ls --json",
		Args:    noArgs,
	}
	cmd.AddCommand(g.inspecting(ls, nil, func(ctx context.Context, in *inspect, _ []string) error {
		held, supported, err := in.heldLocks(ctx)
		if err != nil {
			return err
		}
		intents, err := in.intents(ctx)
		if err != nil {
			return err
		}
		if in.json {
			return in.printJSON(append(held, intents...))
		}
		what := "held locks (Mutex, RWMutex)"
		switch {
		case !supported:
			fmt.Fprintf(in.out, "%s: %s keeps no sessions, so it holds none\n", what, in.drv.ID())
		case len(held) == 0:
			fmt.Fprintf(in.out, "no %s on %s\n", what, in.drv.ID())
		default:
			fmt.Fprintf(in.out, "%s on %s:\n", what, in.drv.ID())
			t := in.table("LOCK", "MODE", "HOLDER", "TOKEN", "LEASE LEFT", "WAITING")
			for _, l := range held {
				left := "?"
				if l.LeaseLeftMs != nil {
					left = in.leaseLeft(l.Lease)
				}
				t.row(l.Lock, l.Mode, l.Holder, fmt.Sprint(*l.Token), left, fmt.Sprint(*l.Waiting))
			}
			if err := t.flush(); err != nil {
				return err
			}
		}
		fmt.Fprintln(in.out)
		what = "intents (write locks of transactions on refs)"
		if len(intents) == 0 {
			fmt.Fprintf(in.out, "no %s on %s\n", what, in.drv.ID())
			return nil
		}
		fmt.Fprintf(in.out, "%s on %s:\n", what, in.drv.ID())
		t := in.table("REF", "HOLDER", "COORDINATOR", "MODE", "STATUS", "LEASE LEFT")
		for _, l := range intents {
			status, left := "?", "?"
			if l.Status != "unknown" {
				status, left = l.Status, in.leaseLeft(l.Lease)
			}
			t.row(l.Ref, l.Txn, l.Coordinator, l.Mode, status, left)
		}
		return t.flush()
	}))
	return cmd
}

// sessions is the backend's Sessions capability, or nil.
func (in *inspect) sessions() backend.Sessions {
	ss, _ := in.drv.(backend.Sessions)
	return ss
}

// sessionStore is the backend as a store of locks and groups; nil (which
// they refuse with their ErrUnsupported) when it keeps no sessions.
func (in *inspect) sessionStore() backend.SessionStore {
	st, _ := in.drv.(backend.SessionStore)
	return st
}

// heldLocks lists the holders of every distributed lock (each dir under
// lease.LockDirPrefix), by lock name then token. supported is false when
// the backend keeps no sessions.
func (in *inspect) heldLocks(ctx context.Context) (out []lockOut, supported bool, err error) {
	out = []lockOut{}
	ss := in.sessions()
	if ss == nil {
		return out, false, nil
	}
	var dirs []string
	err = in.call(ctx, "list locks", func(ctx context.Context) (err error) {
		dirs, err = ss.Dirs(ctx, lease.LockDirPrefix)
		return err
	})
	if err != nil {
		return nil, true, err
	}
	entries := make([][]backend.Entry, len(dirs))
	errs := make([]error, len(dirs))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, dir := range dirs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = in.call(ctx, fmt.Sprintf("read lock %q", strings.TrimPrefix(dir, lease.LockDirPrefix)), func(ctx context.Context) (err error) {
				entries[i], err = ss.Entries(ctx, dir, true)
				return err
			})
		})
	}
	wg.Wait()
	for i, dir := range dirs {
		if errs[i] != nil {
			return nil, true, errs[i]
		}
		es := entries[i]
		holders := lockHolders(es)
		waiting := len(es) - holders
		for _, e := range es[:holders] {
			token := e.Seq
			w := waiting
			o := lockOut{Kind: kindLock, Lock: strings.TrimPrefix(dir, lease.LockDirPrefix), Backend: in.drv.ID(),
				Holder: e.Session.Holder, Session: e.Session.ID, Mode: lease.EntryMode(e.Name),
				Queued: jsonTime(e.Created), Heartbeat: jsonTime(e.Session.Heartbeat), Token: &token, Waiting: &w}
			if !e.Session.Heartbeat.IsZero() && e.Session.Lease > 0 {
				end := e.Session.Heartbeat.Add(e.Session.Lease)
				ms := end.Sub(in.now).Milliseconds()
				o.Lease, o.LeaseLeftMs = jsonTime(end), &ms
			}
			out = append(out, o)
		}
	}
	return out, true, nil
}

// lockHolders is how many of a lock's entries (in line order) hold it: the
// first, if it is a writer; else the leading run of readers. The rest wait.
func lockHolders(es []backend.Entry) int {
	if len(es) == 0 {
		return 0
	}
	if lease.EntryMode(es[0].Name) == "write" {
		return 1
	}
	n := 0
	for n < len(es) && lease.EntryMode(es[n].Name) == "read" {
		n++
	}
	return n
}

// intents reads every ref's intent (a few at a time) and the records of
// holders coordinated here.
func (in *inspect) intents(ctx context.Context) ([]lockOut, error) {
	rs, err := in.list(ctx, "")
	if err != nil {
		return nil, err
	}
	intents := make([]*backend.Intent, len(rs))
	errs := make([]error, len(rs))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			var vr backend.VersionsResult
			err := in.call(ctx, fmt.Sprintf("read %q", r.Name), func(ctx context.Context) (err error) {
				vr, err = in.drv.Versions(ctx, r.Name)
				return err
			})
			var gone *notFoundError
			if errors.As(err, &gone) {
				return // removed since the listing
			}
			intents[i], errs[i] = vr.Intent, err
		})
	}
	wg.Wait()
	out := []lockOut{}
	var ids []string
	for i, r := range rs {
		if errs[i] != nil {
			return nil, errs[i]
		}
		it := intents[i]
		if it == nil {
			continue
		}
		staged := it.Staged
		out = append(out, lockOut{Kind: kindIntent, Ref: r.Name, Backend: in.drv.ID(), Txn: it.Txn, Coordinator: it.Coord, Mode: modeOf(it), Staged: &staged, Status: "unknown"})
		if it.Coord == in.drv.ID() && !slices.Contains(ids, it.Txn) {
			ids = append(ids, it.Txn)
		}
	}
	if len(ids) > 0 {
		recs, err := in.records(ctx, ids)
		if err != nil {
			return nil, err
		}
		byID := map[string]backend.Record{}
		for _, r := range recs {
			byID[r.ID] = r
		}
		for i := range out {
			r, ok := byID[out[i].Txn]
			if !ok || out[i].Coordinator != in.drv.ID() {
				continue
			}
			out[i].Status = r.Status.String()
			if !r.Lease.IsZero() {
				out[i].Lease = jsonTime(r.Lease)
				ms := r.Lease.Sub(in.now).Milliseconds()
				out[i].LeaseLeftMs = &ms
			}
		}
	}
	return out, nil
}

// --- clock ---

type clockOut struct {
	Point   uint64 `json:"point"`
	Backend string `json:"backend"`
}

func newClockCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "clock",
		Short: "Print the current point of the backend's clock",
		Long: `clock prints the backend's current point: every commit point at or below it
has been drawn and committed, so a read at it is a consistent snapshot.
Redis draws points from a counter; ZooKeeper's points are zxids.` + inspectNote,
		Example: "  epochal --backend redis clock",
		Args:    noArgs,
	}
	return g.inspecting(cmd, nil, func(ctx context.Context, in *inspect, _ []string) error {
		p, err := in.readPoint(ctx)
		if err != nil {
			return err
		}
		if in.json {
			return in.printJSON(clockOut{Point: uint64(p), Backend: in.drv.ID()})
		}
		_, err = fmt.Fprintln(in.out, p)
		return err
	})
}
