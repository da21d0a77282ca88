package zk

import (
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// TestIntentCodec: an intent with a Lock round round-trips; one stored
// before rounds existed (an array of six) decodes with round 0, and one
// with round 0 is stored as that array, which older processes read.
func TestIntentCodec(t *testing.T) {
	type oldIntent struct {
		_msgpack struct{} `msgpack:",as_array"`
		Txn      string
		Coord    string
		Write    bool
		Staged   bool
		Ensure   bool
		Value    []byte
	}
	in := intentNode{Txn: "t-1", Coord: "c", Write: true, Staged: true, Value: []byte("v"), Round: 7}
	b, err := msgpack.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	var out intentNode
	if err := msgpack.Unmarshal(b, &out); err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip = %+v, %v; want %+v", out, err, in)
	}
	old, err := msgpack.Marshal(&oldIntent{Txn: "t-0", Coord: "c", Ensure: true})
	if err != nil {
		t.Fatal(err)
	}
	out = intentNode{}
	if err := msgpack.Unmarshal(old, &out); err != nil || out.Txn != "t-0" || !out.Ensure || out.Round != 0 {
		t.Fatalf("an intent of six fields decodes as %+v, %v", out, err)
	}
	in.Round = 0
	if b, err = msgpack.Marshal(&in); err != nil {
		t.Fatal(err)
	}
	var o oldIntent
	if err := msgpack.Unmarshal(b, &o); err != nil || o.Txn != "t-1" || string(o.Value) != "v" {
		t.Fatalf("an intent of round 0 read as of six fields: %+v, %v", o, err)
	}
	// Inside a ref node (a pointer field), and absent.
	n := refNode{Kind: "ref", Intent: &intentNode{Txn: "t-2", Round: 3}, Versions: []versionRec{{Point: 1}}}
	if b, err = msgpack.Marshal(&n); err != nil {
		t.Fatal(err)
	}
	var n2 refNode
	if err := msgpack.Unmarshal(b, &n2); err != nil || n2.Intent == nil || n2.Intent.Round != 3 || n2.Intent.Txn != "t-2" {
		t.Fatalf("ref node's intent = %+v, %v", n2.Intent, err)
	}
	n.Intent = nil
	if b, err = msgpack.Marshal(&n); err != nil {
		t.Fatal(err)
	}
	n2 = refNode{}
	if err := msgpack.Unmarshal(b, &n2); err != nil || n2.Intent != nil {
		t.Fatalf("ref node without intent: %+v, %v", n2.Intent, err)
	}
}
