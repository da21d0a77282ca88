package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/group"
	"github.com/epochal/epochal/internal/names"
)

// --- group ---

type memberOut struct {
	Name        string          `json:"name"`
	Holder      string          `json:"holder"`             // the member's process, host/pid/program
	Joined      time.Time       `json:"joined,omitzero"`    // its clock
	Heartbeat   time.Time       `json:"heartbeat,omitzero"` // its session's last renewal (its clock)
	LeaseMs     int64           `json:"lease_ms"`           // the session's lease
	Lease       time.Time       `json:"lease,omitzero"`     // when the lease ends unless renewed
	LeaseLeftMs *int64          `json:"lease_left_ms"`      // null when unknown; negative once expired
	Size        int             `json:"size"`               // bytes of data
	Data        json.RawMessage `json:"data"`               // null when it joined without data
	Encoding    string          `json:"encoding,omitempty"` // "msgpack" or "base64"
	Note        string          `json:"note,omitempty"`     // said of data that is not msgpack
}

type groupOut struct {
	Group   string      `json:"group"`
	Backend string      `json:"backend"`
	Members []memberOut `json:"members"`
}

func (in *inspect) memberJSON(m group.Member) memberOut {
	o := memberOut{Name: m.Name, Holder: m.Holder, Joined: jsonTime(m.Joined), Heartbeat: jsonTime(m.Heartbeat),
		LeaseMs: m.Lease.Milliseconds(), Size: len(m.Data), Data: json.RawMessage("null")}
	if !m.Heartbeat.IsZero() && m.Lease > 0 {
		end := m.Heartbeat.Add(m.Lease)
		ms := end.Sub(in.now).Milliseconds()
		o.Lease, o.LeaseLeftMs = jsonTime(end), &ms
	}
	if m.Data != nil {
		s := show(m.Data)
		o.Data, o.Encoding, o.Note = s.JSON, s.Encoding, s.Note
	}
	return o
}

func newGroupCmd(g *globals) *cobra.Command {
	cmd := parentCmd("group", "Inspect group membership: the groups, a group's live members",
		`group inspects the groups of package group: processes that joined a group
under a member name, with data, and stay members while their lease is
renewed. A member whose process dies leaves when its lease is over.`+valuesNote)
	ls := &cobra.Command{
		Use:   "ls [NAME]",
		Short: "List the groups (with member counts), or a group's members: name, holder, joined, last heartbeat, lease, data",
		Long: `ls without NAME lists the groups that have live members, sorted by name,
with how many each has.

ls NAME lists the live members of group NAME, sorted by name: the member's
process (host/pid/program), when it joined and when its session last
renewed its lease (both by the member's clock), the lease and how long it
still runs, and the member's data (msgpack, shown as JSON; tables cut it to
60 characters, --json has it whole). A group exists while it has members:
one with none is exit code 1.` + valuesNote,
		Example: "  epochal --backend redis group ls\n  epochal --backend redis group ls workers\n  epochal --backend zk group ls workers --json",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("%s takes at most one NAME, got %d arguments", cmd.CommandPath(), len(args))
			}
			return nil
		},
		ValidArgsFunction: g.completeGroups,
	}
	check := func(args []string) error {
		if len(args) == 0 {
			return nil
		}
		return groupArg(args[0])
	}
	cmd.AddCommand(g.inspecting(ls, check, func(ctx context.Context, in *inspect, args []string) error {
		if len(args) == 0 {
			return in.listGroups(ctx)
		}
		name := args[0]
		var ms []group.Member
		err := in.call(ctx, fmt.Sprintf("list the members of group %q", name), func(ctx context.Context) (err error) {
			ms, err = group.Members(ctx, in.sessionStore(), name)
			return err
		})
		switch {
		case errors.Is(err, group.ErrName):
			return usagef("group name %q: %v", name, err)
		case errors.Is(err, group.ErrUnsupported):
			return usagef("%s keeps no sessions, so it has no groups: %v", in.drv.ID(), err)
		case err != nil:
			return err
		}
		if len(ms) == 0 {
			return notFoundf("no group %q on %s: it has no live members%s", name, in.drv.ID(), in.groupsHint(ctx))
		}
		out := groupOut{Group: name, Backend: in.drv.ID(), Members: []memberOut{}}
		for _, m := range ms {
			out.Members = append(out.Members, in.memberJSON(m))
		}
		if in.json {
			return in.printJSON(out)
		}
		t := in.table("MEMBER", "HOLDER", "JOINED", "HEARTBEAT", "LEASE", "DATA")
		for i, m := range ms {
			o := out.Members[i]
			lease := "-"
			if m.Lease > 0 {
				lease = human(m.Lease)
				if o.LeaseLeftMs != nil {
					lease += " (" + in.leaseLeft(o.Lease)
					if *o.LeaseLeftMs > 0 {
						lease += " left"
					}
					lease += ")"
				}
			}
			data := "-"
			if m.Data != nil {
				data = show(m.Data).cell(60)
			}
			t.row(m.Name, m.Holder, in.when(m.Joined), in.whenAgo(m.Heartbeat), lease, data)
		}
		return t.flush()
	}))
	return cmd
}

// groupCountOut is one row of group ls without NAME.
type groupCountOut struct {
	Group   string `json:"group"`
	Backend string `json:"backend"`
	Members int    `json:"members"`
}

// listGroups prints the groups with live members and how many each has.
func (in *inspect) listGroups(ctx context.Context) error {
	if in.sessions() == nil {
		return usagef("%s keeps no sessions, so it has no groups", in.drv.ID())
	}
	gs, err := in.groups(ctx)
	if err != nil {
		return err
	}
	out := []groupCountOut{}
	for _, name := range gs {
		var ms []group.Member
		err := in.call(ctx, fmt.Sprintf("list the members of group %q", name), func(ctx context.Context) (err error) {
			ms, err = group.Members(ctx, in.sessionStore(), name)
			return err
		})
		if err != nil {
			return err
		}
		if len(ms) > 0 { // the last member may have left meanwhile
			out = append(out, groupCountOut{Group: name, Backend: in.drv.ID(), Members: len(ms)})
		}
	}
	if in.json {
		return in.printJSON(out)
	}
	if len(out) == 0 {
		_, err := fmt.Fprintf(in.out, "no groups with live members on %s\n", in.drv.ID())
		return err
	}
	t := in.table("GROUP", "MEMBERS")
	for _, o := range out {
		t.row(o.Group, fmt.Sprint(o.Members))
	}
	return t.flush()
}

// groupArg checks a group name argument: the rules group.Members applies
// (those of ref names).
func groupArg(name string) error {
	if err := names.Check(name); err != nil {
		return usagef("group name %q: %v (names are slash-separated segments of letters, digits and ._~:@+=-)", name, err)
	}
	return nil
}

// groups lists the groups that have live members.
func (in *inspect) groups(ctx context.Context) ([]string, error) {
	ss := in.sessions()
	if ss == nil {
		return nil, nil
	}
	var dirs []string
	err := in.call(ctx, "list groups", func(ctx context.Context) (err error) {
		dirs, err = ss.Dirs(ctx, group.DirPrefix)
		return err
	})
	out := make([]string, len(dirs))
	for i, d := range dirs {
		out[i] = strings.TrimPrefix(d, group.DirPrefix)
	}
	return out, err
}

// groupsHint names the groups there are, for the message about one that
// is not there: at most 5.
func (in *inspect) groupsHint(ctx context.Context) string {
	gs, err := in.groups(ctx)
	switch {
	case err != nil:
		return ""
	case len(gs) == 0:
		return " (no group has members)"
	case len(gs) > 5:
		return fmt.Sprintf(" (groups with members: %s, and %d more)", strings.Join(gs[:5], ", "), len(gs)-5)
	}
	return " (groups with members: " + strings.Join(gs, ", ") + ")"
}

// completeGroups completes a group name with the groups that have live
// members.
func (g *globals) completeGroups(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	out := g.completeFrom(cmd, func(ctx context.Context, drv backend.Driver) ([]string, error) {
		ss, ok := drv.(backend.Sessions)
		if !ok {
			return nil, nil
		}
		dirs, err := ss.Dirs(ctx, group.DirPrefix+toComplete)
		if err != nil {
			return nil, err
		}
		out := make([]string, len(dirs))
		for i, d := range dirs {
			out[i] = strings.TrimPrefix(d, group.DirPrefix)
		}
		return out, nil
	})
	return out, cobra.ShellCompDirectiveNoFileComp
}
