package redis

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
)

// Create creates a ref if absent.
func (b *Backend) Create(ctx context.Context, req backend.CreateRequest) (backend.CreateResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.CreateResult{}, err
	}
	res, err := b.run(ctx, scriptCreate, req.Name, string(req.Kind), req.Value, req.MinHistory, req.MaxHistory, ms(time.Now()))
	if msg, ok := strings.CutPrefix(fmt.Sprint(err), "EPOCHAL_CORRUPT "); ok && err != nil {
		msg, _, _ = strings.Cut(msg, " script: ")
		return backend.CreateResult{}, fmt.Errorf("redis: create %q: %s: %w", req.Name, msg, backend.ErrCorrupt)
	}
	if err != nil {
		return backend.CreateResult{}, fmt.Errorf("redis: create %q: %w", req.Name, err)
	}
	if k, _ := res.(string); k != "" {
		return backend.CreateResult{Kind: backend.Kind(k)}, nil
	}
	return backend.CreateResult{Created: true, Kind: req.Kind}, nil
}

// refState is one ref as read in one MULTI/EXEC. err, when set, says why
// the ref's keys are not what a driver writes (it wraps
// backend.ErrCorrupt and names the ref); the other fields are then unset.
type refState struct {
	found    bool
	kind     backend.Kind
	intent   *backend.Intent
	versions []backend.Version
	trimmed  clock.Point
	ensured  clock.Point
	keep     int
	min, max int
	err      error
}

// unbounded asks readRefs for every value whole (LRANGE).
const unbounded = -1

// readRefs reads refs (and, if withClock, the clock) atomically in one
// round trip. With maxValue >= 0 the version lists are read by
// scriptVersions, which leaves out values larger than maxValue (the
// server does not send them); with unbounded, by LRANGE.
//
// A ref whose keys are malformed (a key of another type, a hash without
// its fields, a version entry that does not parse) gets its own refState
// err: the other refs are read as usual. Only a failure of the read
// itself is the error.
func (b *Backend) readRefs(ctx context.Context, names []string, withClock bool, maxValue int) ([]refState, clock.Point, error) {
	for loaded := false; ; loaded = true {
		sts, rp, noScript, err := b.readRefsOnce(ctx, names, withClock, maxValue)
		if !noScript || loaded {
			return sts, rp, err
		}
		// The server does not have scriptVersions (first use, a restart,
		// SCRIPT FLUSH): EVALSHA inside MULTI cannot fall back on EVAL.
		if err := scriptVersions.Load(ctx, b.c).Err(); err != nil {
			return nil, 0, err
		}
	}
}

func (b *Backend) readRefsOnce(ctx context.Context, names []string, withClock bool, maxValue int) ([]refState, clock.Point, bool, error) {
	var idCmd, clockCmd *goredis.StringCmd
	hs := make([]*goredis.Cmd, len(names))
	ls := make([]listCmd, len(names))
	seen := b.seen.Load()
	err := do(ctx, b, func(ctx context.Context) error {
		_, err := b.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			idCmd, clockCmd = p.Get(ctx, b.p+"id"), p.Get(ctx, b.clockK)
			for i, n := range names {
				args := make([]any, 2, 2+len(refFields))
				args[0], args[1] = "hmget", b.p+"r:"+n
				hs[i] = p.Do(ctx, append(args, refFields...)...)
				if maxValue == unbounded {
					ls[i] = lrangeCmd{p.LRange(ctx, b.p+"v:"+n, 0, -1)}
				} else {
					ls[i] = evalCmd{p.EvalSha(ctx, scriptVersions.Hash(), []string{b.p + "v:" + n}, maxValue)}
				}
			}
			return nil
		})
		return err
	})
	// A command that failed on its own (WRONGTYPE, a missing script) fails
	// only its ref; anything else fails the identity or clock read too. (A
	// call cut short by ctx left the commands to its goroutine: not read.)
	if err != nil && !errors.Is(err, goredis.Nil) && ctx.Err() == nil && idCmd.Err() == nil {
		err = nil
	}
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, 0, false, err
	}
	if err := b.verify(seen, idCmd, clockCmd); err != nil {
		return nil, 0, false, err
	}
	var rp clock.Point
	if withClock {
		n, _ := clockCmd.Uint64()
		rp = clock.Point(n)
	}
	out := make([]refState, len(names))
	for i, n := range names {
		if err := ls[i].Err(); err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
			return nil, 0, true, err
		}
		st, err := b.refState(n, hs[i], ls[i])
		if err != nil && !errors.Is(err, backend.ErrCorrupt) {
			return nil, 0, false, err
		}
		out[i] = st
	}
	return out, rp, false, nil
}

// listCmd is a ref's version list as read: LRANGE's reply, or
// scriptVersions'.
type listCmd interface {
	Err() error
	StringSlice() ([]string, error)
}

type evalCmd struct{ *goredis.Cmd }

func (c evalCmd) StringSlice() ([]string, error) { return c.Cmd.StringSlice() }

type lrangeCmd struct{ *goredis.StringSliceCmd }

func (c lrangeCmd) StringSlice() ([]string, error) { return c.StringSliceCmd.Result() }

// refFields are the ref hash's fields a read asks for (HMGET), boxed once.
var refFields = []any{"kind", "intent", "trimmed", "ensured", "keep", "min", "max"}

// refState decodes one ref's hash and version list. An error wrapping
// backend.ErrCorrupt is also set as the state's err; any other is a
// failed read.
func (b *Backend) refState(name string, hc *goredis.Cmd, lc listCmd) (refState, error) {
	corrupt := func(format string, args ...any) (refState, error) {
		err := fmt.Errorf("redis: ref %q: "+format+": %w", append(append([]any{name}, args...), backend.ErrCorrupt)...)
		return refState{err: err}, err
	}
	h, err := hc.Slice()
	switch {
	case err == nil:
	case goredis.HasErrorPrefix(err, "WRONGTYPE"):
		return corrupt("%sr:%s is not a hash", b.p, name)
	case !errors.Is(err, goredis.Nil):
		return refState{}, err
	}
	present := 0
	for _, f := range h {
		if f != nil {
			present++
		}
	}
	if present == 0 {
		return refState{}, nil // no such ref
	}
	for i, f := range []string{"kind", "", "", "", "keep", "min", "max"} {
		if f != "" && (len(h) <= i || h[i] == nil) {
			return corrupt("its hash %sr:%s has no %q field", b.p, name, f)
		}
	}
	st := refState{found: true, kind: backend.Kind(h[0].(string))}
	if s, ok := h[1].(string); ok {
		in, err := parseIntent(s)
		if err != nil {
			return corrupt("intent: %v", err)
		}
		st.intent = in
	}
	st.trimmed = clock.Point(atoi(h[2]))
	st.ensured = clock.Point(atoi(h[3]))
	st.keep, st.min, st.max = int(atoi(h[4])), int(atoi(h[5])), int(atoi(h[6]))
	vs, err := lc.StringSlice()
	switch {
	case err == nil:
	case goredis.HasErrorPrefix(err, "WRONGTYPE"):
		return corrupt("%sv:%s is not a list", b.p, name)
	case !errors.Is(err, goredis.Nil):
		return refState{}, err
	}
	st.versions = make([]backend.Version, 0, len(vs))
	_, bounded := lc.(evalCmd)
	for _, s := range vs {
		v, err := parseListed(s, bounded)
		if err != nil {
			return corrupt("version list %sv:%s: %v", b.p, name, err)
		}
		st.versions = append(st.versions, v)
	}
	if len(st.versions) == 0 {
		return corrupt("no versions (%sv:%s is empty or missing)", b.p, name)
	}
	return st, nil
}

// Read reads refs at a point, each with its intent, in one MULTI/EXEC.
// A malformed ref fails the whole read (backend.ErrCorrupt, naming it).
func (b *Backend) Read(ctx context.Context, req backend.ReadRequest) (backend.ReadResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.ReadResult{}, err
	}
	sts, rp, err := b.readRefs(ctx, req.Names, req.Current, unbounded)
	if err == nil {
		err = firstErr(sts)
	}
	if err != nil {
		return backend.ReadResult{}, fmt.Errorf("redis: read %v: %w", req.Names, err)
	}
	if !req.Current {
		rp = req.RP
	}
	res := backend.ReadResult{RP: rp, Items: make([]backend.ReadItem, len(req.Names))}
	for i, st := range sts {
		if !st.found {
			continue
		}
		it := backend.ReadItem{Found: true, Kind: st.kind, Newest: st.versions[0], Intent: st.intent}
		it.Version, it.Result = history.Pick(st.versions, rp)
		if it.Result == history.Fault && !b.cfg.ReadOnly {
			// A read fault: history grows by one (a heuristic: it need
			// not be atomic with the read; a read-only backend writes
			// nothing).
			if _, err := b.run(ctx, scriptGrow, req.Names[i]); err != nil {
				return backend.ReadResult{}, fmt.Errorf("redis: grow history of %q: %w", req.Names[i], err)
			}
		}
		res.Items[i] = it
	}
	return res, nil
}

// firstErr is the error of the first malformed ref.
func firstErr(sts []refState) error {
	for _, st := range sts {
		if st.err != nil {
			return st.err
		}
	}
	return nil
}

// Versions returns a ref's kept history.
func (b *Backend) Versions(ctx context.Context, name string) (backend.VersionsResult, error) {
	return b.versions(ctx, name, unbounded)
}

// VersionsBounded is Versions without the values larger than maxValue
// bytes (backend.BoundedVersions): a script reads the list on the server
// and sends such a value's size in its place.
func (b *Backend) VersionsBounded(ctx context.Context, name string, maxValue int) (backend.VersionsResult, error) {
	return b.versions(ctx, name, max(maxValue, 0))
}

func (b *Backend) versions(ctx context.Context, name string, maxValue int) (backend.VersionsResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.VersionsResult{}, err
	}
	sts, _, err := b.readRefs(ctx, []string{name}, false, maxValue)
	if err == nil {
		err = sts[0].err
	}
	if err != nil {
		return backend.VersionsResult{}, fmt.Errorf("redis: versions of %q: %w", name, err)
	}
	st := sts[0]
	if !st.found {
		return backend.VersionsResult{}, fmt.Errorf("redis: versions of %q: %w", name, backend.ErrNotFound)
	}
	return backend.VersionsResult{Kind: st.kind, Versions: st.versions, Trimmed: st.trimmed, Ensured: st.ensured,
		Keep: st.keep, Min: st.min, Max: st.max, Intent: st.intent}, nil
}

// List returns the refs whose names start with prefix, sorted by name.
// The values stay on the server (scriptVersions sends their sizes). A
// malformed ref, or a name the index {P}:refs holds without a ref hash, is
// listed with its Err set.
func (b *Backend) List(ctx context.Context, prefix string) ([]backend.RefInfo, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	max := "+"
	if prefix != "" {
		max = "[" + prefix + "\xff"
	}
	min := "-"
	if prefix != "" {
		min = "[" + prefix
	}
	names, err := call(ctx, b, func(ctx context.Context) ([]string, error) {
		return b.c.ZRangeByLex(ctx, b.p+"refs", &goredis.ZRangeBy{Min: min, Max: max}).Result()
	})
	if err != nil {
		return nil, fmt.Errorf("redis: list %q: %w", prefix, err)
	}
	out := make([]backend.RefInfo, 0, len(names))
	for i := 0; i < len(names); i += 256 {
		chunk := names[i:min2(i+256, len(names))]
		sts, _, err := b.readRefs(ctx, chunk, false, 0)
		if err != nil {
			return nil, fmt.Errorf("redis: list %q: %w", prefix, err)
		}
		for j, st := range sts {
			name := chunk[j]
			if !strings.HasPrefix(name, prefix) {
				continue
			}
			switch {
			case st.err != nil:
				out = append(out, backend.RefInfo{Name: name, Err: st.err})
			case !st.found:
				// Create indexes a ref in the script that makes its hash,
				// and nothing deletes refs.
				out = append(out, backend.RefInfo{Name: name, Err: fmt.Errorf("redis: ref %q: listed in %srefs but %sr:%s is missing: %w",
					name, b.p, b.p, name, backend.ErrCorrupt)})
			default:
				v := st.versions[0]
				out = append(out, backend.RefInfo{Name: name, Kind: st.kind, Newest: v.Point,
					Versions: len(st.versions), Size: len(v.Value) + v.Omitted})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func min2(a, b int) int {
	if a < b {
		return a
	}
	return b
}
