package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/group"
	"github.com/epochal/epochal/internal/testkit/testserver"
)

// TestGroupLsAll: group ls without a name lists the groups with live
// members and how many each has; none is said, with exit 0.
func TestGroupLsAll(t *testing.T) {
	check := func(t *testing.T, drv backend.Driver, flags ...string) {
		out, _, err := runCLI(t, append(flags, "group", "ls")...)
		if err != nil || !strings.Contains(out, "no groups with live members on ") {
			t.Errorf("group ls with no groups: %v\n%s", err, out)
		}
		for _, m := range []struct{ group, name string }{{"web", "w1"}, {"jobs/batch", "b1"}, {"jobs/batch", "b2"}} {
			g, err := group.Join(t.Context(), sessionStore(drv), m.group, m.name)
			mustNoErr(t, err, "join "+m.group+" "+m.name)
			t.Cleanup(func() { _ = g.Leave(context.Background()) })
		}
		out, _, err = runCLI(t, append(flags, "group", "ls")...)
		mustNoErr(t, err, "group ls")
		if !regexpMatch(`(?s)^GROUP +MEMBERS\njobs/batch +2\nweb +1\n$`, out) {
			t.Errorf("group ls:\n%s", out)
		}
		out, _, err = runCLI(t, append(flags, "group", "ls", "--json")...)
		mustNoErr(t, err, "group ls --json")
		var gs []groupCountOut
		if err := json.Unmarshal([]byte(out), &gs); err != nil || len(gs) != 2 || gs[0].Group != "jobs/batch" || gs[0].Members != 2 ||
			gs[1].Group != "web" || gs[1].Members != 1 || gs[0].Backend != drv.ID() {
			t.Errorf("group ls --json: %+v, %v\n%s", gs, err, out)
		}
	}
	t.Run("redis", func(t *testing.T) {
		srv := testserver.StartRedis(t, testserver.RedisOptions{})
		drv, err := redis.Open(t.Context(), redis.Config{Addr: srv.Addr, Prefix: "gl"})
		mustNoErr(t, err, "open")
		t.Cleanup(func() { drv.Close() })
		check(t, drv, "--backend", "redis", "--addr", srv.Addr, "--prefix", "gl")
	})
	t.Run("zk", func(t *testing.T) {
		srv := testserver.StartZK(t)
		drv, err := zk.Open(t.Context(), zk.Config{Servers: srv.Servers, Root: "/gl"})
		mustNoErr(t, err, "open")
		t.Cleanup(func() { drv.Close() })
		check(t, drv, "--backend", "zk", "--addr", srv.ConnectString(), "--root", "/gl")
	})
}
