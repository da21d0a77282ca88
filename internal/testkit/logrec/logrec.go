// Package logrec is a slog.Handler for tests that keeps every record it is
// given, so a test can wait for the record it expects and read its
// attributes.
package logrec

import (
	"context"
	"log/slog"
	"sync"
	"testing"
)

// Record is one logged record: its level, message and attributes (the
// logger's own, from With, included), by key.
type Record struct {
	Level   slog.Level
	Message string
	Attrs   map[string]any
}

// Handler records every record at Debug and above. Loggers derived from
// it (With, WithGroup) record into the same Handler.
type Handler struct {
	s     *shared
	attrs []slog.Attr
}

type shared struct {
	mu      sync.Mutex
	records []Record
	changed chan struct{} // closed and replaced at each record
}

// New returns a Handler and a logger writing to it.
func New() (*Handler, *slog.Logger) {
	h := &Handler{s: &shared{changed: make(chan struct{})}}
	return h, slog.New(h)
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	rec := Record{Level: r.Level, Message: r.Message, Attrs: map[string]any{}}
	for _, a := range h.attrs {
		rec.Attrs[a.Key] = a.Value.Resolve().Any()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.Resolve().Any()
		return true
	})
	h.s.mu.Lock()
	h.s.records = append(h.s.records, rec)
	close(h.s.changed)
	h.s.changed = make(chan struct{})
	h.s.mu.Unlock()
	return nil
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{s: h.s, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

// WithGroup implements slog.Handler (groups are flattened).
func (h *Handler) WithGroup(string) slog.Handler { return h }

// Records returns the records so far.
func (h *Handler) Records() []Record {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return append([]Record(nil), h.s.records...)
}

// AtLeast returns how many records were logged at level or above.
func (h *Handler) AtLeast(level slog.Level) int {
	n := 0
	for _, r := range h.Records() {
		if r.Level >= level {
			n++
		}
	}
	return n
}

// Wait returns the first record match accepts, waiting for it until ctx
// ends (ok false then).
func (h *Handler) Wait(ctx context.Context, match func(Record) bool) (Record, bool) {
	seen := 0
	for {
		h.s.mu.Lock()
		recs, changed := h.s.records[seen:], h.s.changed
		seen = len(h.s.records)
		h.s.mu.Unlock()
		for _, r := range recs {
			if match(r) {
				return r, true
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Record{}, false
		}
	}
}

// SetDefault makes l slog's default logger until the test ends.
func SetDefault(t testing.TB, l *slog.Logger) {
	prev := slog.Default()
	slog.SetDefault(l)
	t.Cleanup(func() { slog.SetDefault(prev) })
}
