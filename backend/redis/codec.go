package redis

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
)

// parseVersion decodes point "\0" ms "\0" txn "\0" value. An entry that
// does not parse is backend.ErrCorrupt.
func parseVersion(s string) (backend.Version, error) { return parseListed(s, false) }

// parseListed is parseVersion of an entry scriptVersions sent (bounded):
// it also reads the form it gives a value it left out, "!" size "\0"
// point "\0" ms "\0" txn "\0".
func parseListed(s string, bounded bool) (backend.Version, error) {
	omitted := 0
	if bounded && strings.HasPrefix(s, "!") {
		size, rest, ok := strings.Cut(s[1:], "\x00")
		n, err := strconv.Atoi(size)
		if !ok || err != nil || n <= 0 {
			return backend.Version{}, fmt.Errorf("%w: malformed omitted version entry", backend.ErrCorrupt)
		}
		omitted, s = n, rest
	}
	parts := strings.SplitN(s, "\x00", 4)
	if len(parts) != 4 {
		return backend.Version{}, fmt.Errorf("%w: malformed version entry (%d fields, want 4)", backend.ErrCorrupt, len(parts))
	}
	p, err1 := strconv.ParseUint(parts[0], 10, 64)
	t, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return backend.Version{}, fmt.Errorf("%w: malformed version entry %q", backend.ErrCorrupt, parts[0]+" "+parts[1])
	}
	v := backend.Version{Point: clock.Point(p), Time: time.UnixMilli(t), Txn: parts[2], Value: []byte(parts[3]), Omitted: omitted}
	if omitted > 0 {
		v.Value = nil
	}
	return v, nil
}

// parseIntent decodes txn "\0" coord "\0" flags "\0" value, the flags
// being letters and the Lock round's digits.
func parseIntent(s string) (*backend.Intent, error) {
	parts := strings.SplitN(s, "\x00", 4)
	if len(parts) != 4 {
		return nil, fmt.Errorf("%w: malformed intent (%d fields, want 4)", backend.ErrCorrupt, len(parts))
	}
	f := parts[2]
	var round uint64
	if digits := strings.TrimFunc(f, func(r rune) bool { return r < '0' || r > '9' }); digits != "" {
		var err error
		if round, err = strconv.ParseUint(digits, 10, 32); err != nil {
			return nil, fmt.Errorf("%w: malformed intent flags %q", backend.ErrCorrupt, f)
		}
	}
	return &backend.Intent{
		Txn: parts[0], Coord: parts[1],
		Write: strings.Contains(f, "W"), Staged: strings.Contains(f, "S"), Ensure: strings.Contains(f, "E"),
		Value: []byte(parts[3]), Round: uint32(round),
	}, nil
}

func atoi(v any) int64 {
	s, _ := v.(string)
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// conflicts decodes the scripts' conflict lists: {name, reason, point,
// intent, newest}.
func conflicts(v any) ([]backend.Conflict, error) {
	list, _ := v.([]any)
	out := make([]backend.Conflict, 0, len(list))
	for _, e := range list {
		f, _ := e.([]any)
		if len(f) < 4 {
			return nil, fmt.Errorf("redis: malformed conflict %v", e)
		}
		c := backend.Conflict{Name: f[0].(string)}
		switch f[1].(int64) {
		case 0:
			c.Reason, c.Point = backend.Newer, clock.Point(f[2].(int64))
		case 1:
			c.Reason = backend.Locked
			in, err := parseIntent(f[3].(string))
			if err != nil {
				return nil, err
			}
			c.Intent = in
		case 2:
			c.Reason = backend.Stale
			v, err := parseVersion(f[4].(string))
			if err != nil {
				return nil, err
			}
			c.Newest = v
		default:
			c.Reason = backend.Gone
		}
		out = append(out, c)
	}
	return out, nil
}

// record decodes HGETALL output.
func record(id string, kv map[string]string) (backend.Record, error) {
	if len(kv) == 0 {
		return backend.Record{ID: id, Status: backend.Missing}, nil
	}
	r := backend.Record{ID: id}
	switch kv["status"] {
	case "pending":
		r.Status = backend.Pending
	case "committed":
		r.Status = backend.Committed
	case "aborted":
		r.Status = backend.Aborted
	default:
		return r, fmt.Errorf("redis: record %s has status %q", id, kv["status"])
	}
	num := func(k string) int64 { n, _ := strconv.ParseInt(kv[k], 10, 64); return n }
	r.RP, r.Priority, r.CP = clock.Point(num("rp")), clock.Point(num("prio")), clock.Point(num("cp"))
	r.Lease, r.Created = time.UnixMilli(num("lease")), time.UnixMilli(num("created"))
	if s := kv["refs"]; s != "" {
		if err := msgpack.Unmarshal([]byte(s), &r.Refs); err != nil {
			return r, fmt.Errorf("redis: record %s: refs: %w", id, err)
		}
	}
	return r, nil
}

// onePhaseRecord is a one-phase commit's record, cp "\0" created (unix
// ms), in the form of a record hash.
func onePhaseRecord(s string) map[string]string {
	cp, created, _ := strings.Cut(s, "\x00")
	return map[string]string{"status": "committed", "cp": cp, "created": created}
}

func flat(v any) map[string]string {
	l, _ := v.([]any)
	m := make(map[string]string, len(l)/2)
	for i := 0; i+1 < len(l); i += 2 {
		k, _ := l[i].(string)
		s, _ := l[i+1].(string)
		m[k] = s
	}
	return m
}
