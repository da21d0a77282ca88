package redis

import (
	"context"
	"fmt"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
)

// Lock takes intents on every item, or none, in one script.
func (b *Backend) Lock(ctx context.Context, req backend.LockRequest) (backend.LockResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.LockResult{}, err
	}
	args := []any{req.Txn, req.Coord, uint64(req.RP), req.Round}
	for _, it := range req.Items {
		args = append(args, it.Name, int(it.Mode), it.Value)
	}
	res, err := b.run(ctx, scriptLock, args...)
	if err != nil {
		return backend.LockResult{}, fmt.Errorf("redis: lock: %w", err)
	}
	r := res.([]any)
	if r[0].(int64) == 0 {
		cs, err := conflicts(r[1])
		return backend.LockResult{Conflicts: cs}, err
	}
	var out backend.LockResult
	for _, e := range r[1].([]any) {
		v, err := parseVersion(e.(string))
		if err != nil {
			return backend.LockResult{}, err
		}
		out.Newest = append(out.Newest, v)
	}
	return out, nil
}

// Stage stores values into intents txn holds.
func (b *Backend) Stage(ctx context.Context, txn string, items []backend.StageItem) (bool, error) {
	if err := b.check(ctx); err != nil {
		return false, err
	}
	args := []any{txn}
	for _, it := range items {
		args = append(args, it.Name, it.Value)
	}
	res, err := b.run(ctx, scriptStage, args...)
	if err != nil {
		return false, fmt.Errorf("redis: stage: %w", err)
	}
	return res.(int64) == 1, nil
}

// Resolve rolls txn's intents forward or back.
func (b *Backend) Resolve(ctx context.Context, req backend.ResolveRequest) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	commit := 0
	if req.Commit {
		commit = 1
	}
	args := []any{req.Txn, commit, uint64(req.CP), ms(req.Time), req.Round}
	for _, n := range req.Names {
		args = append(args, n)
	}
	if _, err := b.run(ctx, scriptResolve, args...); err != nil {
		return fmt.Errorf("redis: resolve %s: %w", req.Txn, err)
	}
	return nil
}

// CommitOnePhase commits a transaction whose refs all live here, in one
// script, idempotent by transaction id.
func (b *Backend) CommitOnePhase(ctx context.Context, req backend.OnePhaseRequest) (backend.OnePhaseResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.OnePhaseResult{}, err
	}
	args := make([]any, 0, 4+4*len(req.Items))
	args = append(args, req.Txn, uint64(req.RP), ms(req.Time), b.cfg.OnePhaseKeep.Milliseconds())
	for _, it := range req.Items {
		args = append(args, it.Name, int(it.Mode), it.Value, uint64(it.Base))
	}
	// With WaitReplicas, runAcked errs on a WAIT that fell short only
	// when the commit applied (an unknown outcome, which the engine
	// learns); conflicts and aborted come back as such, to be retried.
	res, err := b.runAcked(ctx, scriptOnePhase, args...)
	if err != nil {
		return backend.OnePhaseResult{}, fmt.Errorf("redis: commit %s: %w", req.Txn, err)
	}
	r := res.([]any)
	switch r[0].(int64) {
	case 2:
		cp := clock.Point(r[1].(int64))
		b.observe(cp)
		return backend.OnePhaseResult{Status: backend.Committed, CP: cp}, nil
	case 3:
		return backend.OnePhaseResult{Status: backend.Aborted}, nil
	}
	cs, err := conflicts(r[1])
	return backend.OnePhaseResult{Conflicts: cs}, err
}
