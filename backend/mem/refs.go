package mem

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
)

// Create creates a ref if absent.
func (b *Backend) Create(ctx context.Context, req backend.CreateRequest) (backend.CreateResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.CreateResult{}, err
	}
	st := &b.refs[b.refStripe(req.Name)]
	st.mu.Lock()
	defer st.mu.Unlock()
	if r, ok := st.refs[req.Name]; ok {
		return backend.CreateResult{Kind: r.kind}, nil
	}
	st.refs[req.Name] = &refState{
		kind:     req.Kind,
		versions: []backend.Version{{Point: 0, Value: slices.Clone(req.Value), Time: time.Now()}},
		keep:     req.MinHistory,
		min:      req.MinHistory,
		max:      req.MaxHistory,
	}
	return backend.CreateResult{Created: true, Kind: req.Kind}, nil
}

// Read reads refs at a point.
func (b *Backend) Read(ctx context.Context, req backend.ReadRequest) (backend.ReadResult, error) {
	return b.ReadInto(ctx, req, nil)
}

// ReadInto is Read with the items in dst's array when it has room.
func (b *Backend) ReadInto(ctx context.Context, req backend.ReadRequest, dst []backend.ReadItem) (backend.ReadResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.ReadResult{}, err
	}
	rp := req.RP
	if req.Current {
		rp = clock.Point(b.clock.Load())
	}
	items := dst[:0]
	if cap(items) < len(req.Names) {
		items = make([]backend.ReadItem, len(req.Names))
	} else {
		items = items[:len(req.Names)]
		clear(items) // a ref not found is left as the zero item
	}
	res := backend.ReadResult{RP: rp, Items: items}
	for i, name := range req.Names {
		st := &b.refs[b.refStripe(name)]
		st.mu.RLock()
		r := st.refs[name]
		if r == nil {
			st.mu.RUnlock()
			continue
		}
		it := backend.ReadItem{Found: true, Kind: r.kind, Newest: r.versions[0]}
		it.Version, it.Result = history.Pick(r.versions, rp)
		if r.intent != nil {
			in := *r.intent
			it.Intent = &in
		}
		st.mu.RUnlock()
		if it.Result == history.Fault {
			st.mu.Lock()
			if r := st.refs[name]; r != nil {
				r.keep = history.Grow(r.keep, r.max)
			}
			st.mu.Unlock()
		}
		res.Items[i] = it
	}
	return res, nil
}

// Versions returns a ref's kept history.
func (b *Backend) Versions(ctx context.Context, name string) (backend.VersionsResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.VersionsResult{}, err
	}
	st := &b.refs[b.refStripe(name)]
	st.mu.RLock()
	defer st.mu.RUnlock()
	r := st.refs[name]
	if r == nil {
		return backend.VersionsResult{}, fmt.Errorf("mem: versions of %q: %w", name, backend.ErrNotFound)
	}
	res := backend.VersionsResult{
		Kind:     r.kind,
		Versions: slices.Clone(r.versions),
		Trimmed:  r.trimmed,
		Ensured:  r.ensured,
		Keep:     r.keep,
		Min:      r.min,
		Max:      r.max,
	}
	if r.intent != nil {
		in := *r.intent
		res.Intent = &in
	}
	return res, nil
}

// List returns the refs whose names start with prefix.
func (b *Backend) List(ctx context.Context, prefix string) ([]backend.RefInfo, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	var out []backend.RefInfo
	for i := range b.refs {
		st := &b.refs[i]
		st.mu.RLock()
		for name, r := range st.refs {
			if strings.HasPrefix(name, prefix) {
				out = append(out, backend.RefInfo{
					Name: name, Kind: r.kind, Newest: r.versions[0].Point,
					Versions: len(r.versions), Size: len(r.versions[0].Value),
				})
			}
		}
		st.mu.RUnlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
