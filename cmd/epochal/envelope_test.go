package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
)

// TestPromiseDelayValues: refs get, history and watch show a promise's and
// a delay's value (decoded from the envelope they are stored in) and their
// state, not the envelope.
func TestPromiseDelayValues(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := t.Context()
	drv, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: "env"})
	mustNoErr(t, err, "redis.Open")
	t.Cleanup(func() { drv.Close() })
	s, err := stm.Open(ctx, drv, stm.WithSweepInterval(0))
	mustNoErr(t, err, "stm.Open")
	t.Cleanup(func() { s.Close() })
	flags := []string{"--backend", "redis", "--addr", srv.Addr, "--prefix", "env"}
	get := func(name string) versionOut {
		t.Helper()
		out, _, err := runCLI(t, append(flags, "refs", "get", name, "--json")...)
		mustNoErr(t, err, "refs get "+name)
		var v versionOut
		mustNoErr(t, json.Unmarshal([]byte(out), &v), "decode refs get "+name)
		return v
	}

	// It keeps an older version, so that its history shows the pending
	// one too (refs watch, below, marks nothing: commits keep no more
	// for it).
	p, err := refs.NewPromise[map[string]int](ctx, s, "p", refs.WithMinHistory(1))
	mustNoErr(t, err, "new promise")
	d, err := refs.NewDelay(ctx, s, "d", func(context.Context) (int, error) { return 42, nil })
	mustNoErr(t, err, "new delay")
	bad, err := refs.NewDelay(ctx, s, "bad", func(context.Context) (int, error) { return 0, errors.New("no disk") })
	mustNoErr(t, err, "new failing delay")

	if v := get("p"); string(v.Value) != "null" || v.State != statePending || !strings.Contains(v.Note, "not delivered") {
		t.Errorf("undelivered promise: %+v", v)
	}
	if v := get("d"); string(v.Value) != "null" || v.State != statePending || !strings.Contains(v.Note, "not run") {
		t.Errorf("delay not run: %+v", v)
	}

	// watch sees the delivery as the value.
	wctx, cancel := context.WithCancel(ctx)
	var wout, werr syncBuffer
	done := make(chan int)
	go func() { done <- run(wctx, append(flags, "refs", "watch", "p", "--json"), &wout, &werr) }()
	waitFor(t, 10*time.Second, "watch to start", func() bool { return strings.Contains(werr.String(), "watching p") })

	_, err = p.Deliver(ctx, map[string]int{"a": 1})
	mustNoErr(t, err, "deliver")
	_, err = d.Deref(ctx)
	mustNoErr(t, err, "deref delay")
	_, err = bad.Deref(ctx)
	if err == nil {
		t.Fatal("failing delay: no error")
	}

	waitFor(t, 10*time.Second, "watch to print the delivery", func() bool { return strings.Contains(wout.String(), "\n") })
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("watch: exit %d: %s", code, werr.String())
	}
	var ch changeOut
	if err := json.Unmarshal([]byte(strings.SplitN(wout.String(), "\n", 2)[0]), &ch); err != nil || compactJSON(ch.Value) != `{"a":1}` || ch.State != stateDelivered {
		t.Errorf("watch of the promise: %+v, %v\n%s", ch, err, wout.String())
	}

	if v := get("p"); compactJSON(v.Value) != `{"a":1}` || v.State != stateDelivered || v.Encoding != "msgpack" {
		t.Errorf("delivered promise: %+v", v)
	}
	if v := get("d"); string(v.Value) != "42" || v.State != stateDone {
		t.Errorf("delay done: %+v", v)
	}
	if v := get("bad"); string(v.Value) != "null" || v.State != stateFailed || !strings.Contains(v.Note, "no disk") {
		t.Errorf("failed delay: %+v", v)
	}

	// history shows every version as its value; the table too.
	out, _, err := runCLI(t, append(flags, "refs", "history", "p", "--json")...)
	mustNoErr(t, err, "history --json")
	var h historyOut
	mustNoErr(t, json.Unmarshal([]byte(out), &h), "decode history")
	if len(h.Versions) != 2 || compactJSON(h.Versions[0].Value) != `{"a":1}` || string(h.Versions[1].Value) != "null" || h.Versions[1].State != statePending {
		t.Errorf("history of the promise: %+v", h.Versions)
	}
	out, _, err = runCLI(t, append(flags, "refs", "history", "p")...)
	mustNoErr(t, err, "history")
	if !strings.Contains(out, `{"a":1}`) || !strings.Contains(out, "null (promise not delivered yet)") {
		t.Errorf("history table of the promise:\n%s", out)
	}
}

func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}
