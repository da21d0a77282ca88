package refs

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"accounts/alice", true},
		{"a", true},
		{"job:42/result_v1.2~x@y+z=w-q", true},
		{"", false},
		{"/lead", false},
		{"trail/", false},
		{"dou//ble", false},
		{"a/./b", false},
		{"..", false},
		{"sp ace", false},
		{"tab\t", false},
		{"ünïcode", false},
		{"nul\x00", false},
		{strings.Repeat("x", MaxNameLen), true},
		{strings.Repeat("x", MaxNameLen+1), false},
	} {
		err := CheckName(c.name)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrName)) {
			t.Errorf("CheckName(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func TestMsgpackRejectsTrailingBytes(t *testing.T) {
	data, err := Msgpack.Marshal(7)
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if err := Msgpack.Unmarshal(append(data, data...), &v); err == nil {
		t.Fatal("two values decoded as one")
	}
	if err := Msgpack.Unmarshal(data, &v); err != nil || v != 7 {
		t.Fatalf("Unmarshal = %d, %v", v, err)
	}
	var s string
	if err := Msgpack.Unmarshal(data, &s); err == nil {
		t.Fatal("an int decoded as a string")
	}
	for i := 0; i < 20; i++ { // map order is random: try it often
		a, _ := Msgpack.Marshal(map[string]any{"b": 1, "a": "x", "c": 3.5, "d": true, "e": nil})
		b, _ := Msgpack.Marshal(map[string]any{"e": nil, "d": true, "c": 3.5, "a": "x", "b": 1})
		if string(a) != string(b) {
			t.Fatal("equal map[string]any values encode differently")
		}
	}
}
