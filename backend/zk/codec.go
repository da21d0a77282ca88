package zk

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	gozk "github.com/go-zookeeper/zk"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
)

// self, stored as a point, stands for the zxid of the write that stored it:
// a one-phase commit cannot know its zxid (its commit point) before the
// Multi runs, so it writes self, and readers substitute the node's Mzxid.
// Every later write of the node reads it first (its version is checked), so
// it stores the substituted point explicitly.
const self = math.MaxUint64

// refNode is a ref's znode: everything about the ref but its meta, so that
// lock, check and stage are one conditional write.
type refNode struct {
	_msgpack struct{}     `msgpack:",as_array"`
	Kind     string       // backend.Kind
	Min      int          // MinHistory
	Max      int          // MaxHistory
	Keep     int          // older versions kept beyond the newest
	Trimmed  uint64       // newest point ever dropped
	Ensured  uint64       // newest commit point of an ensuring transaction
	Intent   *intentNode  // the write lock, if any
	Versions []versionRec // newest first, never empty
}

type versionRec struct {
	_msgpack struct{} `msgpack:",as_array"`
	Point    uint64
	Ms       int64
	Txn      string
	Value    []byte
}

// intentNode is stored as a msgpack array of six elements (Txn, Coord,
// Write, Staged, Ensure, Value), and a seventh, Round, when it is not 0:
// intents written before rounds existed still decode, with Round 0.
type intentNode struct {
	Txn    string
	Coord  string
	Write  bool
	Staged bool
	Ensure bool
	Value  []byte
	Round  uint32 // the Lock round that took it (backend.Intent.Round)
}

var (
	_ msgpack.CustomEncoder = (*intentNode)(nil)
	_ msgpack.CustomDecoder = (*intentNode)(nil)
)

func (in *intentNode) EncodeMsgpack(e *msgpack.Encoder) error {
	n := 6
	if in.Round != 0 {
		n = 7
	}
	if err := e.EncodeArrayLen(n); err != nil {
		return err
	}
	for _, f := range []func() error{
		func() error { return e.EncodeString(in.Txn) },
		func() error { return e.EncodeString(in.Coord) },
		func() error { return e.EncodeBool(in.Write) },
		func() error { return e.EncodeBool(in.Staged) },
		func() error { return e.EncodeBool(in.Ensure) },
		func() error { return e.EncodeBytes(in.Value) },
	} {
		if err := f(); err != nil {
			return err
		}
	}
	if n == 7 {
		return e.EncodeUint(uint64(in.Round))
	}
	return nil
}

func (in *intentNode) DecodeMsgpack(d *msgpack.Decoder) error {
	n, err := d.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n < 6 {
		return fmt.Errorf("intent of %d fields, want 6 or more", n)
	}
	for _, f := range []func() error{
		func() (err error) { in.Txn, err = d.DecodeString(); return },
		func() (err error) { in.Coord, err = d.DecodeString(); return },
		func() (err error) { in.Write, err = d.DecodeBool(); return },
		func() (err error) { in.Staged, err = d.DecodeBool(); return },
		func() (err error) { in.Ensure, err = d.DecodeBool(); return },
		func() (err error) { in.Value, err = d.DecodeBytes(); return },
	} {
		if err := f(); err != nil {
			return err
		}
	}
	if n >= 7 {
		if in.Round, err = d.DecodeUint32(); err != nil {
			return err
		}
	}
	for i := 7; i < n; i++ {
		if err := d.Skip(); err != nil {
			return err
		}
	}
	return nil
}

func decodeRef(path string, data []byte, st *gozk.Stat) (*refNode, error) {
	var n refNode
	if err := msgpack.Unmarshal(data, &n); err != nil {
		return nil, fmt.Errorf("%w: ref node %s: %w", ErrMalformed, path, err)
	}
	if len(n.Versions) == 0 {
		return nil, fmt.Errorf("%w: ref node %s: no versions", ErrMalformed, path)
	}
	for i := range n.Versions {
		if n.Versions[i].Point == self {
			n.Versions[i].Point = uint64(st.Mzxid)
		}
	}
	if n.Ensured == self {
		n.Ensured = uint64(st.Mzxid)
	}
	return &n, nil
}

func (n *refNode) encode() []byte {
	data, err := msgpack.Marshal(n)
	if err != nil {
		panic(fmt.Sprintf("zk: encode ref node: %v", err)) // plain data: cannot fail
	}
	return data
}

// clone copies n for modification (values are shared: never modified).
func (n *refNode) clone() *refNode {
	c := *n
	c.Versions = append([]versionRec(nil), n.Versions...)
	if n.Intent != nil {
		in := *n.Intent
		c.Intent = &in
	}
	return &c
}

// add prepends a version and trims the history to Keep older versions, or
// backend.WatchKeep while the ref is watched.
func (n *refNode) add(v versionRec, watched bool) {
	n.Versions = append([]versionRec{v}, n.Versions...)
	n.trim(backend.KeepFor(n.Keep, watched) + 1)
}

// trim keeps at most max versions (at least one), raising Trimmed.
func (n *refNode) trim(max int) {
	if max < 1 {
		max = 1
	}
	for len(n.Versions) > max {
		last := n.Versions[len(n.Versions)-1]
		n.Versions = n.Versions[:len(n.Versions)-1]
		if last.Point != self && last.Point > n.Trimmed {
			n.Trimmed = last.Point
		}
	}
}

func (v versionRec) version() backend.Version {
	return backend.Version{Point: clock.Point(v.Point), Time: time.UnixMilli(v.Ms), Txn: v.Txn, Value: v.Value}
}

func (n *refNode) versions() []backend.Version {
	out := make([]backend.Version, len(n.Versions))
	for i, v := range n.Versions {
		out[i] = v.version()
	}
	return out
}

func (n *refNode) intent() *backend.Intent {
	if n.Intent == nil {
		return nil
	}
	in := n.Intent
	return &backend.Intent{Txn: in.Txn, Coord: in.Coord, Write: in.Write, Staged: in.Staged, Ensure: in.Ensure, Value: in.Value, Round: in.Round}
}

// pick returns the version visible at rp.
func (n *refNode) pick(rp clock.Point) (backend.Version, history.Result) {
	return history.Pick(n.versions(), rp)
}

// fit trims the older versions of the nodes being written so that the
// request they go in fits in limit bytes; the newest versions (and staged
// values) always stay. It reports whether the request fits.
func fit(nodes []*refNode, overhead, limit int) ([][]byte, bool) {
	enc := make([][]byte, len(nodes))
	total := overhead
	for i, n := range nodes {
		enc[i] = n.encode()
		total += len(enc[i])
	}
	for total > limit {
		// Drop the oldest version of the node with the largest data.
		big := -1
		for i, n := range nodes {
			if len(n.Versions) > 1 && (big < 0 || len(enc[i]) > len(enc[big])) {
				big = i
			}
		}
		if big < 0 {
			return enc, false
		}
		nodes[big].trim(len(nodes[big].Versions) - 1)
		total -= len(enc[big])
		enc[big] = nodes[big].encode()
		total += len(enc[big])
	}
	return enc, true
}

// recNode is a transaction record's znode.
type recNode struct {
	_msgpack struct{} `msgpack:",as_array"`
	Status   int      // backend.Status
	RP       uint64
	Prio     uint64
	CP       uint64 // self: the Mzxid of the write that committed it
	Lease    int64  // unix ms
	Created  int64  // unix ms
	Expires  int64  // unix ms, 0: kept until deleted
	Refs     []backend.RefAddr
}

func decodeRec(id, path string, data []byte, st *gozk.Stat) (*recNode, error) {
	var r recNode
	if err := msgpack.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: record %s: %w", ErrMalformed, path, err)
	}
	if r.CP == self {
		r.CP = uint64(st.Mzxid)
	}
	if r.Status < int(backend.Pending) || r.Status > int(backend.Aborted) {
		return nil, fmt.Errorf("%w: record %s: status %d", ErrMalformed, path, r.Status)
	}
	return &r, nil
}

func (r *recNode) encode() []byte {
	data, err := msgpack.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("zk: encode record: %v", err))
	}
	return data
}

func (r *recNode) record(id string) backend.Record {
	return backend.Record{ID: id, Status: backend.Status(r.Status), RP: clock.Point(r.RP), Priority: clock.Point(r.Prio),
		CP: clock.Point(r.CP), Lease: time.UnixMilli(r.Lease), Created: time.UnixMilli(r.Created), Refs: r.Refs}
}

// escape maps a ref name or record id to one znode name: bytes outside
// [A-Za-z0-9._~:@+=-] (the slash of hierarchical names among them) become
// %XX, and so do the dots of "." and "..".
func escape(name string) string {
	if name == "." || name == ".." {
		return strings.Repeat("%2E", len(name))
	}
	var sb strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._~:@+=-", c) >= 0 {
			sb.WriteByte(c)
			continue
		}
		fmt.Fprintf(&sb, "%%%02X", c)
	}
	return sb.String()
}

func unescape(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		return s, true
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			sb.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		var c byte
		if _, err := fmt.Sscanf(s[i+1:i+3], "%02X", &c); err != nil {
			return "", false
		}
		sb.WriteByte(c)
		i += 2
	}
	return sb.String(), true
}

// seqMark separates a sequential entry's escaped name from its sequence
// number; escape never outputs it.
const seqMark = "#"

// sessNode is a session's znode.
type sessNode struct {
	_msgpack  struct{} `msgpack:",as_array"`
	Holder    string
	Lease     int64 // ms
	Heartbeat int64 // unix ns, the renewing client's clock
}

func (n *sessNode) encode() []byte {
	data, err := msgpack.Marshal(n)
	if err != nil {
		panic(fmt.Sprintf("zk: encode session node: %v", err))
	}
	return data
}

// entryNode is an entry's znode.
type entryNode struct {
	_msgpack struct{} `msgpack:",as_array"`
	Session  string
	Data     []byte
	Created  int64 // unix ns, 0: none
}

func (n *entryNode) encode() []byte {
	data, err := msgpack.Marshal(n)
	if err != nil {
		panic(fmt.Sprintf("zk: encode entry node: %v", err))
	}
	return data
}

// logNode is a dir's log of named additions ({root}/sl/<dir>), written
// in the Multi that creates the entry, version checked. The newest
// record's Zxid is 0 ("self"): the Multi cannot know its own zxid, which
// is the node's Mzxid; the next writer stores it explicitly.
type logNode struct {
	_msgpack struct{} `msgpack:",as_array"`
	Floor    int64    // the zxid of the newest record dropped
	Recs     []logRec // oldest first
}

type logRec struct {
	_msgpack struct{} `msgpack:",as_array"`
	Name     string
	Zxid     int64
}

// logKeep is how many records a dir's log keeps (backend.MinAddLog).
const logKeep = backend.MinAddLog

// appended returns the log with name added as its self record, the
// oldest records dropped past logKeep.
func (lg logNode) appended(name string) []byte {
	lg.Recs = append(slices.Clone(lg.Recs), logRec{Name: name})
	if over := len(lg.Recs) - logKeep; over > 0 {
		lg.Floor = max(lg.Floor, lg.Recs[over-1].Zxid)
		lg.Recs = lg.Recs[over:]
	}
	data, err := msgpack.Marshal(&lg)
	if err != nil {
		panic(fmt.Sprintf("zk: encode log node: %v", err))
	}
	return data
}

func decodeEntry(p string, data []byte) (*entryNode, error) {
	var n entryNode
	if err := msgpack.Unmarshal(data, &n); err != nil || n.Session == "" {
		return nil, fmt.Errorf("%w: entry node %s: %v", ErrMalformed, p, err)
	}
	return &n, nil
}

func unixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// seqBase is added to a zxid to make a Seq: above 2^32, the largest Seq
// of the scheme before (a 32-bit child version plus one).
const seqBase = 1 << 32

// seqOf is the Seq of a sequential entry created by the request with
// zxid z.
func seqOf(z int64) uint64 { return seqBase + uint64(z) }

// parseNode reads an entry's znode name: its entry name, and whether it
// is sequential (its Seq is learned from its Czxid, see seqOf).
func parseNode(node string) (name string, sequential bool, ok bool) {
	esc := node
	if i := strings.Index(node, seqMark); i >= 0 {
		// The server's suffix: an int32 counter printed with %010d
		// (negative past 2^31), there for uniqueness only.
		if _, err := strconv.ParseInt(node[i+1:], 10, 64); err != nil {
			return "", false, false
		}
		esc, sequential = node[:i], true
	}
	name, ok = unescape(esc)
	return name, sequential, ok && name != ""
}
