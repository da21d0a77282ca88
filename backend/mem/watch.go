package mem

import (
	"context"
	"sync"

	"github.com/epochal/epochal/backend"
)

// sub is one subscription: a hint channel and a feed of versions.
type sub struct {
	*backend.FeedBuffer
	b    *Backend
	name string
	once sync.Once
}

var _ backend.Feed = (*sub)(nil)

func (s *sub) Close() error {
	s.once.Do(func() {
		st := &s.b.refs[s.b.refStripe(s.name)]
		st.mu.Lock()
		delete(st.subs[s.name], s)
		if len(st.subs[s.name]) == 0 {
			delete(st.subs, s.name)
		}
		st.mu.Unlock()
	})
	return nil
}

// Subscribe returns hints of changes to a ref, with a feed of the versions
// (backend.Feed) that loses nothing unless a reader leaves more than backend.FeedLimit
// undrained.
func (b *Backend) Subscribe(ctx context.Context, name string) (backend.Subscription, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	s := &sub{FeedBuffer: backend.NewFeedBuffer(), b: b, name: name}
	st := &b.refs[b.refStripe(name)]
	st.mu.Lock()
	if st.subs[name] == nil {
		st.subs[name] = make(map[*sub]struct{})
	}
	st.subs[name][s] = struct{}{}
	st.mu.Unlock()
	return s, nil
}
