package redis

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/epochal/epochal/backend"
)

// PutRecord creates a pending record if none exists.
func (b *Backend) PutRecord(ctx context.Context, r backend.Record) (bool, error) {
	if err := b.check(ctx); err != nil {
		return false, err
	}
	refs, err := msgpack.Marshal(r.Refs)
	if err != nil {
		return false, fmt.Errorf("redis: put record %s: %w", r.ID, err)
	}
	res, err := b.run(ctx, scriptPutRecord, r.ID, uint64(r.RP), uint64(r.Priority), ms(r.Lease), ms(r.Created), refs)
	if err != nil {
		return false, fmt.Errorf("redis: put record %s: %w", r.ID, err)
	}
	return res.(int64) == 1, nil
}

// CommitRecord draws a commit point and marks a pending record committed.
func (b *Backend) CommitRecord(ctx context.Context, id string) (backend.Record, error) {
	if err := b.check(ctx); err != nil {
		return backend.Record{}, err
	}
	res, err := b.runAcked(ctx, scriptCommitRecord, id)
	if err != nil {
		return backend.Record{}, fmt.Errorf("redis: commit record %s: %w", id, err)
	}
	r, err := record(id, flat(res))
	b.observe(r.CP)
	return r, err
}

// AbortRecord aborts a pending record or writes an aborted tombstone.
func (b *Backend) AbortRecord(ctx context.Context, id string) (backend.Record, error) {
	if err := b.check(ctx); err != nil {
		return backend.Record{}, err
	}
	res, err := b.runAcked(ctx, scriptAbortRecord, id, ms(time.Now()), tombstoneKeep.Milliseconds())
	if err != nil {
		return backend.Record{}, fmt.Errorf("redis: abort record %s: %w", id, err)
	}
	return record(id, flat(res))
}

// tombstoneKeep is how long an aborted tombstone lives.
const tombstoneKeep = time.Minute

// Records looks records up, in one round trip: the hash {P}:t:id, or a
// one-phase commit's record {P}:o:id.
func (b *Backend) Records(ctx context.Context, ids []string) ([]backend.Record, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	cmds := make([]*goredis.MapStringStringCmd, len(ids))
	ones := make([]*goredis.StringCmd, len(ids))
	var idCmd *goredis.StringCmd
	err := do(ctx, b, func(ctx context.Context) error {
		_, err := b.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			idCmd = p.Get(ctx, b.p+"id")
			for i, id := range ids {
				cmds[i] = p.HGetAll(ctx, b.p+"t:"+id)
				ones[i] = p.Get(ctx, b.p+"o:"+id)
			}
			return nil
		})
		return err
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("redis: records: %w", err)
	}
	if err := b.verify(0, idCmd, nil); err != nil {
		return nil, fmt.Errorf("redis: records: %w", err)
	}
	out := make([]backend.Record, len(ids))
	for i, id := range ids {
		kv := cmds[i].Val()
		if o, err := ones[i].Result(); len(kv) == 0 && err == nil {
			kv = onePhaseRecord(o)
		}
		r, err := record(id, kv)
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

// ListRecords returns the records of the general path and the tombstones,
// sorted by id; one-phase commit records are left out. The ids of records
// that expired are dropped from the index ({P}:recs), unless read-only.
func (b *Backend) ListRecords(ctx context.Context) ([]backend.Record, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	ids, err := call(ctx, b, func(ctx context.Context) ([]string, error) { return b.c.SMembers(ctx, b.p+"recs").Result() })
	if err != nil {
		return nil, fmt.Errorf("redis: list records: %w", err)
	}
	recs, err := b.Records(ctx, ids)
	if err != nil {
		return nil, err
	}
	var out []backend.Record
	var gone []any
	for _, r := range recs {
		if r.Status == backend.Missing {
			gone = append(gone, r.ID) // expired: drop it from the index
			continue
		}
		out = append(out, r)
	}
	if len(gone) > 0 && !b.cfg.ReadOnly {
		if err := do(ctx, b, func(ctx context.Context) error { return b.c.SRem(ctx, b.p+"recs", gone...).Err() }); err != nil {
			b.logger().Debug("epochal: could not drop expired record ids from the index; a later listing tries again", "prefix", b.cfg.Prefix, "err", err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// DeleteRecord removes a record now, or lets it expire after keep.
func (b *Backend) DeleteRecord(ctx context.Context, id string, keep time.Duration) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if _, err := b.run(ctx, scriptDeleteRecord, id, keep.Milliseconds()); err != nil {
		return fmt.Errorf("redis: delete record %s: %w", id, err)
	}
	return nil
}
