package refs

import (
	"context"
	"fmt"
)

// Meta returns the ref's meta map (nil if none was set). Meta is stored
// beside the value, shared by every process, and changed atomically; it is
// not part of transactions.
func (r *Ref[T]) Meta(ctx context.Context) (map[string]any, error) {
	m, _, err := r.meta(ctx)
	return m, err
}

// ResetMeta replaces the ref's meta map.
func (r *Ref[T]) ResetMeta(ctx context.Context, m map[string]any) error {
	_, err := r.AlterMeta(ctx, func(map[string]any) map[string]any { return m })
	return err
}

// AlterMeta atomically replaces the ref's meta with f of it (f may run
// several times under contention) and returns the new meta.
func (r *Ref[T]) AlterMeta(ctx context.Context, f func(map[string]any) map[string]any) (map[string]any, error) {
	for {
		old, ver, err := r.meta(ctx)
		if err != nil {
			return nil, err
		}
		nm := f(old)
		data, err := Msgpack.Marshal(nm)
		if err != nil {
			return nil, fmt.Errorf("refs: meta of %q: %w: %w", r.name, ErrEncode, err)
		}
		if len(data) > r.maxValueSize() {
			return nil, fmt.Errorf("refs: meta of %q: %w: %d bytes", r.name, ErrTooLarge, len(data))
		}
		ok, err := r.drv.SetMeta(ctx, r.name, ver, data)
		if err != nil {
			return nil, fmt.Errorf("refs: meta of %q: %w", r.name, err)
		}
		if ok {
			return nm, nil
		}
	}
}

func (r *Ref[T]) meta(ctx context.Context) (map[string]any, uint64, error) {
	data, ver, err := r.drv.Meta(ctx, r.name)
	if err != nil {
		return nil, 0, fmt.Errorf("refs: meta of %q: %w", r.name, err)
	}
	if data == nil {
		return nil, ver, nil
	}
	var m map[string]any
	if err := Msgpack.Unmarshal(data, &m); err != nil {
		return nil, 0, fmt.Errorf("refs: meta of %q: %w: %w", r.name, decodeError(Msgpack, data, err), err)
	}
	return m, ver, nil
}
