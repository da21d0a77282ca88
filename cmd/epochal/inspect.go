package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	gozk "github.com/go-zookeeper/zk"
	"github.com/spf13/cobra"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
)

// envNow fixes the time that relative times ("3s ago") and lease left are
// measured from, as an RFC 3339 time: for reproducible output (tests, the
// README's session). Unset, it is the time the command starts.
const envNow = "EPOCHAL_NOW"

// inspectDefault is the prefix (Redis) and root name (ZooKeeper) the
// inspecting commands open when neither --prefix nor --root is given: the
// libraries' own defaults ("epochal", "/epochal").
const inspectDefault = "epochal"

// errMemInspect explains why the inspecting commands refuse the embedded
// backend.
const errMemInspect = "--backend mem: the embedded backend lives inside one process, so there is nothing another process can inspect; use --backend redis or --backend zk (or set " + envBackend + ")"

// notFoundError marks something that does not exist (a ref, a record, a
// point the history no longer reaches): exit code 1.
type notFoundError struct{ err error }

func (e *notFoundError) Error() string { return e.err.Error() }
func (e *notFoundError) Unwrap() error { return e.err }

func notFoundf(format string, args ...any) error {
	return &notFoundError{err: fmt.Errorf(format, args...)}
}

// inspect is what an inspecting command shares: the globals, its output
// flags, and the backend once open.
type inspect struct {
	g *globals
	// json is set for structured output, JSON or YAML (format): commands
	// build one value and print it with printJSON (printJSONLine for
	// streams).
	json   bool
	format string // outputTable, outputJSON or outputYAML
	utc    bool

	now    time.Time
	drv    backend.Driver
	out    io.Writer
	errOut io.Writer
	// valueLimit, when > 0, is the largest value history reads: larger
	// ones are left out (on a driver that can, not even transferred) and
	// shown as their size (--value-limit).
	valueLimit int
}

// inspecting makes cmd an inspecting command: it gets --json and --utc,
// refuses the embedded backend, opens the backend the flags name (after
// check, if any, accepted the arguments) and runs run.
func (g *globals) inspecting(cmd *cobra.Command, check func(args []string) error, run func(ctx context.Context, in *inspect, args []string) error) *cobra.Command {
	in := &inspect{g: g}
	var jsonFlag bool
	cmd.Flags().BoolVar(&jsonFlag, "json", false, "the same as -o json")
	cmd.Flags().BoolVar(&in.utc, "utc", false, "show times in UTC instead of local time")
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[annotInspect] = "true"
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if g.backend == backendMem {
			return usagef("%s", errMemInspect)
		}
		in.format = g.output
		if jsonFlag {
			if c.Flags().Changed("output") && g.output != outputJSON {
				return usagef("--json and -o %s: pick one", g.output)
			}
			in.format = outputJSON
		}
		in.json = in.format != outputTable
		if check != nil {
			if err := check(args); err != nil {
				return err
			}
		}
		now, err := nowFromEnv()
		if err != nil {
			return err
		}
		in.now, in.out, in.errOut = now, c.OutOrStdout(), c.ErrOrStderr()
		if in.valueLimit == 0 {
			in.valueLimit = defaultValueLimit
		}
		g.readOnly = true // a mistyped --prefix or --root creates nothing
		drv, err := g.open(c.Context(), inspectDefault)
		if err != nil {
			return err
		}
		defer drv.Close()
		in.drv = drv
		return run(c.Context(), in, args)
	}
	return cmd
}

// namespaceErr is the command's error for a prefix or root that holds no
// Epochal data, opened read-only: exit 1, naming the ones there are. Nil
// for any other error.
func (g *globals) namespaceErr(err error) error {
	var rn *redis.NoNamespaceError
	var zn *zk.NoNamespaceError
	var name, flag, env, what string
	var found []string
	partial := false // the search for the namespaces there are stopped short
	switch {
	case errors.As(err, &rn):
		name, flag, env, what, found = rn.Prefix, "--prefix", envPrefix, "prefixes", rn.Found
	case errors.As(err, &zn):
		name, flag, env, what, found, partial = zn.Root, "--root", envRoot, "roots", zn.Found, zn.Partial
	default:
		return nil
	}
	there := fmt.Sprintf("%s at %s holds no Epochal data", g.backend, g.addr)
	if len(found) > 0 {
		there = fmt.Sprintf("%s with Epochal data on %s at %s: %s", what, g.backend, g.addr, strings.Join(found, ", "))
	}
	if partial {
		const short = "the search for roots stops a few levels below / and after some hundred znodes: there may be others"
		if len(found) == 0 {
			there = fmt.Sprintf("no root with Epochal data found on %s at %s (%s)", g.backend, g.addr, short)
		} else {
			there += " (" + short + ")"
		}
	}
	return notFoundf("no such namespace: %s (%s; set %s or %s)", name, there, flag, env)
}

// nowFromEnv is EPOCHAL_NOW, or the current time.
func nowFromEnv() (time.Time, error) {
	s := strings.TrimSpace(os.Getenv(envNow))
	if s == "" {
		return time.Now(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, usagef("%s=%q: want an RFC 3339 time such as 2030-01-01T00:00:00Z, or unset it", envNow, s)
	}
	return t, nil
}

// --- backend calls, each bounded by --connect-timeout ---

func (in *inspect) call(ctx context.Context, what string, f func(ctx context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, in.g.connect)
	defer cancel()
	if err := f(cctx); err != nil {
		return in.backendErr(ctx, what, err)
	}
	return nil
}

// backendErr turns a driver's error into the command's: a missing ref is
// exit 1, a server that stopped answering exit 3.
func (in *inspect) backendErr(ctx context.Context, what string, err error) error {
	switch {
	case errors.Is(err, backend.ErrNotFound):
		return &notFoundError{err: err}
	case ctx.Err() != nil:
		return fmt.Errorf("%s: interrupted", what)
	case unreachable(err):
		return &downError{err: fmt.Errorf("%s: %w (the server at %s did not answer: check it is up, or raise --connect-timeout)", what, err, in.g.addr)}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// unreachable reports whether err says the server could not be reached or
// did not answer in time.
func unreachable(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, backend.ErrClosed) ||
		errors.Is(err, gozk.ErrConnectionClosed) || errors.Is(err, gozk.ErrNoServer) || errors.Is(err, gozk.ErrSessionExpired) || errors.Is(err, gozk.ErrClosing)
}

func (in *inspect) readPoint(ctx context.Context) (p clock.Point, err error) {
	err = in.call(ctx, "read the clock", func(ctx context.Context) (err error) {
		p, err = in.drv.ReadPoint(ctx)
		return err
	})
	return p, err
}

func (in *inspect) list(ctx context.Context, prefix string) (rs []backend.RefInfo, err error) {
	err = in.call(ctx, "list refs", func(ctx context.Context) (err error) {
		rs, err = in.drv.List(ctx, prefix)
		return err
	})
	return rs, err
}

func (in *inspect) records(ctx context.Context, ids []string) (rs []backend.Record, err error) {
	err = in.call(ctx, "look up transaction records", func(ctx context.Context) (err error) {
		rs, err = engine.NewInspector(in.drv).Records(ctx, ids)
		return err
	})
	return noEpoch(rs), err
}

// noEpoch clears the times a record does not have: a driver stores a
// missing lease (a one-phase commit's) as 0, which reads back as the Unix
// epoch, 1970.
func noEpoch(rs []backend.Record) []backend.Record {
	for i := range rs {
		if !rs[i].Lease.IsZero() && rs[i].Lease.UnixMilli() <= 0 {
			rs[i].Lease = time.Time{}
		}
		if !rs[i].Created.IsZero() && rs[i].Created.UnixMilli() <= 0 {
			rs[i].Created = time.Time{}
		}
	}
	return rs
}

func (in *inspect) listRecords(ctx context.Context) (rs []backend.Record, err error) {
	err = in.call(ctx, "list transaction records", func(ctx context.Context) (err error) {
		rs, err = engine.NewInspector(in.drv).ListRecords(ctx)
		return err
	})
	return noEpoch(rs), err
}

// refHistory is a ref's kept history as a reader sees it.
type refHistory struct {
	name string
	vr   backend.VersionsResult
	// versions are newest first. A committed transaction whose intent is
	// not rolled forward yet contributes its value first (unresolved):
	// readers already see it, and it becomes a version at that point.
	versions   []backend.Version
	unresolved clock.Point
	// holder is the record of the intent's holder, when this backend is
	// its coordinator (nil otherwise, or without an intent).
	holder *backend.Record
}

// history reads a ref's kept history as a reader sees it (the engine's read
// rule, read-only: nothing is rolled forward or back). A ref that does not
// exist is exit 1. Values larger than --value-limit are left out
// (Version.Omitted).
func (in *inspect) history(ctx context.Context, name string) (*refHistory, error) {
	var view engine.RefView
	err := in.call(ctx, fmt.Sprintf("read %q", name), func(ctx context.Context) (err error) {
		view, err = engine.NewInspector(in.drv).View(ctx, name, in.valueLimit)
		return err
	})
	var nf *notFoundError
	if errors.As(err, &nf) {
		return nil, notFoundf("no ref %q on %s; list them with 'epochal refs ls'", name, in.drv.ID())
	}
	if err != nil {
		return nil, err
	}
	if len(view.Versions) == 0 {
		return nil, fmt.Errorf("read %q: the backend returned no version", name)
	}
	return &refHistory{name: name, vr: view.VersionsResult, versions: view.Versions, unresolved: view.Unresolved, holder: view.Holder}, nil
}

// modeOf names what an intent's holder does to the ref. A commute whose
// value is already staged cannot be told from a write.
func modeOf(it *backend.Intent) string {
	switch {
	case !it.Write:
		return "ensure"
	case it.Ensure:
		return "ensure+commute"
	case it.Staged:
		return "write"
	}
	return "commute"
}

// --- values ---

// noteBase64 is said of a value that is not msgpack.
const noteBase64 = "not msgpack: shown as base64"

// shown is a stored value as the CLI shows it: decoded from msgpack into
// JSON, or base64 with a note when it is not msgpack (another codec).
type shown struct {
	JSON     json.RawMessage // compact JSON; a JSON string of base64 when not msgpack
	Encoding string          // "msgpack" or "base64"
	Note     string
	// State is a promise's or a delay's: pending, delivered, running,
	// done or failed ("" for refs and atoms).
	State string
}

// show decodes a stored value. It never fails: what cannot be decoded is
// shown as base64.
func show(data []byte) shown {
	if v, ok := decodeMsgpack(data); ok {
		if j, err := json.Marshal(v); err == nil {
			return shown{JSON: j, Encoding: "msgpack"}
		}
	}
	j, _ := json.Marshal(base64.StdEncoding.EncodeToString(data))
	return shown{JSON: j, Encoding: "base64", Note: noteBase64}
}

// decodeMsgpack decodes one msgpack value into JSON-able Go values: maps
// with string keys (other keys are printed with fmt.Sprint), []byte (which
// JSON shows as base64), non-finite floats as strings.
func decodeMsgpack(data []byte) (v any, ok bool) {
	defer func() {
		if recover() != nil {
			v, ok = nil, false
		}
	}()
	dec := msgpack.NewDecoder(bytes.NewReader(data))
	dec.SetMapDecoder(func(d *msgpack.Decoder) (any, error) {
		n, err := d.DecodeMapLen()
		if err != nil || n == -1 {
			return nil, err
		}
		m := make(map[string]any, n)
		for range n {
			k, err := d.DecodeInterface()
			if err != nil {
				return nil, err
			}
			val, err := d.DecodeInterface()
			if err != nil {
				return nil, err
			}
			ks, isString := k.(string)
			if !isString {
				ks = fmt.Sprint(jsonable(k))
			}
			m[ks] = val
		}
		return m, nil
	})
	v, err := dec.DecodeInterface()
	if err != nil {
		return nil, false
	}
	if _, err := dec.PeekCode(); err == nil {
		return nil, false // trailing bytes: not one msgpack value
	}
	return jsonable(v), true
}

func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
		return x
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Sprint(x)
		}
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Sprint(x)
		}
	case time.Time:
		return x.UTC()
	}
	return v
}

// encOmitted is the encoding of a value that was not read: it is larger
// than --value-limit.
const encOmitted = "omitted"

// showVersion is show of a version's value, or a note giving its size when
// it was not read (Version.Omitted).
func showVersion(kind backend.Kind, v backend.Version) shown {
	if v.Omitted > 0 {
		return shown{JSON: json.RawMessage("null"), Encoding: encOmitted,
			Note: fmt.Sprintf("not read: %s, more than --value-limit", bytesSize(v.Omitted))}
	}
	return showKind(kind, v.Value)
}

// promiseEnvelope and delayEnvelope are the stored forms of a promise and
// a delay (package refs): the value they hold is inside, in the handle's
// codec.
type promiseEnvelope struct {
	Delivered bool   `msgpack:"d"`
	Value     []byte `msgpack:"v"`
}

type delayEnvelope struct {
	State      uint8  `msgpack:"s"` // 0 pending, 1 running, 2 done
	Owner      string `msgpack:"o"`
	LeaseUntil int64  `msgpack:"l"` // unix ms
	Value      []byte `msgpack:"v"`
	Err        string `msgpack:"e"`
}

// States of a promise or a delay, as shown.
const (
	statePending   = "pending"
	stateDelivered = "delivered"
	stateRunning   = "running"
	stateDone      = "done"
	stateFailed    = "failed"
)

// showKind is show of a stored value of a reference of kind: a promise's
// or a delay's value is the one inside its envelope, with its state (an
// undelivered promise, a delay not yet run or running, or failed, shows
// null and says so).
func showKind(kind backend.Kind, data []byte) shown {
	null := json.RawMessage("null")
	switch kind {
	case backend.KindPromise:
		var env promiseEnvelope
		if msgpack.Unmarshal(data, &env) != nil {
			return malformedEnvelope(kind, data)
		}
		if !env.Delivered {
			return shown{JSON: null, Encoding: "msgpack", State: statePending, Note: "promise not delivered yet"}
		}
		s := show(env.Value)
		s.State = stateDelivered
		return s
	case backend.KindDelay:
		var env delayEnvelope
		if msgpack.Unmarshal(data, &env) != nil {
			return malformedEnvelope(kind, data)
		}
		switch {
		case env.State == 0:
			return shown{JSON: null, Encoding: "msgpack", State: statePending, Note: "delay not run yet"}
		case env.State == 1:
			return shown{JSON: null, Encoding: "msgpack", State: stateRunning,
				Note: fmt.Sprintf("delay running: claimed by %s until %s", env.Owner, time.UnixMilli(env.LeaseUntil).UTC().Format(time.RFC3339))}
		case env.Err != "":
			return shown{JSON: null, Encoding: "msgpack", State: stateFailed, Note: "delay failed: " + env.Err}
		}
		s := show(env.Value)
		s.State = stateDone
		return s
	}
	return show(data)
}

// malformedEnvelope is a promise's or delay's stored value that is not its
// envelope: shown as it is, with a note.
func malformedEnvelope(kind backend.Kind, data []byte) shown {
	s := show(data)
	note := fmt.Sprintf("not a well-formed %s: shown as stored", kind)
	if s.Note != "" {
		note += "; " + s.Note
	}
	s.Note = note
	return s
}

// valueSize is the stored size of a version's value, read or not.
func valueSize(v backend.Version) int { return len(v.Value) + v.Omitted }

// cell is the value for a table cell: compact JSON cut to limit runes, and
// the note for base64.
func (s shown) cell(limit int) string {
	if s.Encoding == encOmitted {
		return "(" + s.Note + ")"
	}
	t := string(s.JSON)
	if s.Encoding == "base64" {
		t = "base64:" + strings.Trim(t, `"`)
	}
	if limit > 0 && utf8.RuneCountInString(t) > limit {
		r := []rune(t)
		t = string(r[:limit-3]) + "..."
	}
	if s.Note != "" {
		t += " (" + s.Note + ")"
	}
	return t
}

// block is the value for a key/value listing: compact when short, indented
// on the following lines otherwise.
func (s shown) block() string {
	if s.Encoding != "msgpack" || len(s.JSON) <= 72 {
		return s.cell(0)
	}
	var b bytes.Buffer
	if err := json.Indent(&b, s.JSON, "  ", "  "); err != nil {
		return s.cell(0)
	}
	return "\n  " + b.String()
}

// parseJSONValue parses a JSON value for refs set into what msgpack
// encodes: integers stay integers.
func parseJSONValue(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the value")
	}
	return numbers(v)
}

func numbers(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			if int64(int(i)) == i {
				return int(i), nil // encoded as compactly as a Go int is
			}
			return i, nil
		}
		if u, err := strconv.ParseUint(x.String(), 10, 64); err == nil {
			return u, nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, fmt.Errorf("number %s does not fit in 64 bits", x)
		}
		return f, nil
	case map[string]any:
		for k, e := range x {
			n, err := numbers(e)
			if err != nil {
				return nil, err
			}
			x[k] = n
		}
	case []any:
		for i, e := range x {
			n, err := numbers(e)
			if err != nil {
				return nil, err
			}
			x[i] = n
		}
	}
	return v, nil
}

// encodeValue is the msgpack encoding refs use.
func encodeValue(v any) ([]byte, error) { return refs.Msgpack.Marshal(v) }

// --- output ---

// printJSON writes one indented JSON document, or a YAML one with -o yaml.
func (in *inspect) printJSON(v any) error {
	if in.format == outputYAML {
		return printYAML(in.out, v, false)
	}
	enc := json.NewEncoder(in.out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printJSONLine writes one JSON line (streams), or with -o yaml one YAML
// document, starting with "---".
func (in *inspect) printJSONLine(v any) error {
	if in.format == outputYAML {
		return printYAML(in.out, v, true)
	}
	enc := json.NewEncoder(in.out)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func (in *inspect) table(header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(in.out, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		c = strings.NewReplacer("\t", " ", "\n", " ").Replace(c)
		if i > 0 {
			fmt.Fprint(t.tw, "\t")
		}
		fmt.Fprint(t.tw, c)
	}
	fmt.Fprint(t.tw, "\n")
}

func (t *table) flush() error { return t.tw.Flush() }

// when is a time in local time (or UTC with --utc); "-" when unknown.
func (in *inspect) when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if in.utc {
		t = t.UTC()
	} else {
		t = t.Local()
	}
	return t.Format("2006-01-02 15:04:05 MST")
}

// ago is how long before now t was: "3s ago" (or "in 3s" for a future t).
func (in *inspect) ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := in.now.Sub(t)
	if d < 0 {
		return "in " + human(-d)
	}
	return human(d) + " ago"
}

// whenAgo is when and ago together.
func (in *inspect) whenAgo(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return in.when(t) + " (" + in.ago(t) + ")"
}

// leaseLeft is how long a lease still runs: "59m55s", or "expired 3s ago".
func (in *inspect) leaseLeft(lease time.Time) string {
	if lease.IsZero() {
		return "-"
	}
	d := lease.Sub(in.now)
	if d <= 0 {
		return "expired " + human(-d) + " ago"
	}
	return human(d)
}

// human rounds a duration to two units: 450ms -> <1s, 75s -> 1m15s,
// 26h -> 1d2h.
func human(d time.Duration) string {
	switch {
	case d < time.Second:
		return "<1s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

// byteSize is a size flag: a number of bytes, or one with a unit (512KiB,
// 4MiB, 1GiB; K, M, G and KB, MB, GB are read as the binary units too).
type byteSize int

func (b *byteSize) String() string { return bytesSize(int(*b)) }
func (b *byteSize) Type() string   { return "size" }

func (b *byteSize) Set(s string) error {
	num := strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10},
		{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(n) || n*float64(mult) < 1 || n*float64(mult) > math.MaxInt32 {
		return fmt.Errorf("want a size of at least 1 byte such as 4MiB, 512KiB or 1000000 (at most 2 GiB)")
	}
	*b = byteSize(n * float64(mult))
	return nil
}

// defaultValueLimit is --value-limit's default: 4 times the library's own
// limit on values (stm.DefaultMaxValueSize), so every value written with
// the defaults is read.
const defaultValueLimit = 4 * stm.DefaultMaxValueSize

// valueLimitFlag adds --value-limit to a command that reads values.
func valueLimitFlag(cmd *cobra.Command) *byteSize {
	limit := byteSize(defaultValueLimit)
	cmd.Flags().Var(&limit, "value-limit", "read no value larger than this: it is shown as its size and not read (on Redis it stays on the server)")
	return &limit
}

// bytesSize is a size for people: "14 B", "2.5 KiB".
func bytesSize(n int) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// jsonTime is a time for JSON: UTC, zero omitted (with omitzero).
func jsonTime(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// --- arguments ---

// exactArgs is cobra.ExactArgs as a usage error naming the arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usagef("%s takes %d argument(s), %s; got %d (see '%s --help')", cmd.CommandPath(), len(names), strings.Join(names, " "), len(args), cmd.CommandPath())
		}
		return nil
	}
}

// refArg checks a ref name argument.
func refArg(name string) error {
	if err := refs.CheckName(name); err != nil {
		return usagef("ref name %q: %v", name, err)
	}
	return nil
}

// pointArg parses a point argument.
func pointArg(what, s string) (clock.Point, error) {
	var p uint64
	if _, err := fmt.Sscan(s, &p); err != nil || strings.TrimSpace(s) != s || strings.HasPrefix(s, "+") {
		return 0, usagef("%s %q: want a point, a whole number >= 0 (see 'epochal clock' for the current one)", what, s)
	}
	return clock.Point(p), nil
}

// parentCmd is a command that only groups others: an unknown subcommand is
// a usage error, none prints the help.
func parentCmd(use, short, long string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return cmd.Help()
		},
	}
}

// unknownCommand is the usage error for a mistyped subcommand, on one line,
// with cobra's suggestions: `unknown command "lss" for "epochal refs"
// (did you mean "ls"?); run 'epochal refs --help' for the list`.
func unknownCommand(cmd *cobra.Command, arg string) error {
	hint := ""
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's default
	}
	if sug := cmd.SuggestionsFor(arg); len(sug) > 0 {
		quoted := make([]string, len(sug))
		for i, s := range sug {
			quoted[i] = strconv.Quote(s)
		}
		hint = " (did you mean " + strings.Join(quoted, " or ") + "?)"
	}
	return usagef("unknown command %q for %q%s; run '%s --help' for the list", arg, cmd.CommandPath(), hint, cmd.CommandPath())
}

// --- completion ---

// completeRefs completes the first argument with the names of refs in the
// backend the flags name. On any error, or when the backend does not answer
// within --connect-timeout, there are no completions.
func (g *globals) completeRefs(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	names := g.completeFrom(cmd, func(ctx context.Context, drv backend.Driver) ([]string, error) {
		rs, err := drv.List(ctx, toComplete)
		if err != nil {
			return nil, err
		}
		out := make([]string, len(rs))
		for i, r := range rs {
			out[i] = r.Name
		}
		return out, nil
	})
	return names, cobra.ShellCompDirectiveNoFileComp
}

// completeRecords completes a transaction record id.
func (g *globals) completeRecords(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ids := g.completeFrom(cmd, func(ctx context.Context, drv backend.Driver) ([]string, error) {
		rs, err := engine.NewInspector(drv).ListRecords(ctx)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, r := range rs {
			if strings.HasPrefix(r.ID, toComplete) {
				out = append(out, r.ID+"\t"+r.Status.String())
			}
		}
		return out, nil
	})
	return ids, cobra.ShellCompDirectiveNoFileComp
}

// completeFrom opens the backend and runs f, giving up after
// --connect-timeout in all.
func (g *globals) completeFrom(cmd *cobra.Command, f func(ctx context.Context, drv backend.Driver) ([]string, error)) []string {
	// Completion runs no PersistentPreRunE: apply the environment here.
	if err := g.resolve(cmd); err != nil || g.backend == backendMem {
		return nil
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), g.connect)
	defer cancel()
	done := make(chan []string, 1)
	g.readOnly = true
	go func() {
		drv, err := g.open(ctx, inspectDefault)
		if err != nil {
			done <- nil
			return
		}
		defer drv.Close()
		out, err := f(ctx, drv)
		if err != nil {
			out = nil
		}
		done <- out
	}()
	select {
	case out := <-done:
		return out
	case <-ctx.Done():
		return nil
	}
}
