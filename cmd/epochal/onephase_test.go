package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/internal/testkit/testserver"
)

// TestTxnShowOnePhase: txn show of a one-phase commit's record says what
// is known (committed, its commit point) and that such a commit has no
// lease, instead of a zero lease in 1970.
func TestTxnShowOnePhase(t *testing.T) {
	check := func(t *testing.T, drv backend.Driver, flags ...string) {
		ctx := t.Context()
		if _, err := drv.Create(ctx, backend.CreateRequest{Name: "one", Kind: backend.KindRef, Value: []byte{1}, MaxHistory: 10}); err != nil {
			t.Fatal(err)
		}
		rp, err := drv.ReadPoint(ctx)
		mustNoErr(t, err, "read point")
		res, err := drv.(backend.OnePhase).CommitOnePhase(ctx, backend.OnePhaseRequest{Txn: "op-cli", RP: rp, Time: time.Now(),
			Items: []backend.OnePhaseItem{{Name: "one", Mode: backend.ModeWrite, Value: []byte{2}}}})
		if err != nil || res.Status != backend.Committed {
			t.Fatalf("CommitOnePhase: %+v, %v", res, err)
		}
		out, _, err := runCLI(t, append(flags, "txn", "show", "op-cli")...)
		mustNoErr(t, err, "txn show")
		if strings.Contains(out, "1970") || !strings.Contains(out, "one-phase commit: no lease") ||
			!regexpMatch(`(?m)^COMMIT POINT +`+itoa(int(res.CP))+`$`, out) || !regexpMatch(`(?m)^STATUS +committed$`, out) {
			t.Errorf("txn show of a one-phase commit at %d:\n%s", res.CP, out)
		}
		out, _, err = runCLI(t, append(flags, "txn", "show", "op-cli", "--json")...)
		mustNoErr(t, err, "txn show --json")
		var o recordOut
		if err := json.Unmarshal([]byte(out), &o); err != nil || !o.OnePhase || o.CommitPoint != uint64(res.CP) || o.LeaseLeftMs != nil || strings.Contains(out, "1970") {
			t.Errorf("txn show --json of a one-phase commit: %+v, %v\n%s", o, err, out)
		}
	}
	t.Run("redis", func(t *testing.T) {
		srv := testserver.StartRedis(t, testserver.RedisOptions{})
		drv, err := redis.Open(t.Context(), redis.Config{Addr: srv.Addr, Prefix: "op"})
		mustNoErr(t, err, "open")
		t.Cleanup(func() { drv.Close() })
		check(t, drv, "--backend", "redis", "--addr", srv.Addr, "--prefix", "op")
	})
	t.Run("zk", func(t *testing.T) {
		srv := testserver.StartZK(t)
		drv, err := zk.Open(t.Context(), zk.Config{Servers: srv.Servers, Root: "/op"})
		mustNoErr(t, err, "open")
		t.Cleanup(func() { drv.Close() })
		check(t, drv, "--backend", "zk", "--addr", srv.ConnectString(), "--root", "/op")
	})
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }
