package refs

import (
	"fmt"
	"reflect"

	"github.com/epochal/epochal/backend"
)

// Option configures New.
type Option func(*config) error

type config struct {
	on         backend.Driver
	codec      Codec
	validator  any // func(T) error, checked against T by New
	minHistory *int
	maxHistory *int
	// retryErrors: a delay's body error releases its claim instead of
	// being delivered (RetryErrors).
	retryErrors bool
}

// On puts the ref in backend b instead of the STM's coordinator. b is
// registered with the STM so its intents can be recovered.
func On(b backend.Driver) Option {
	return func(c *config) error {
		if b == nil {
			return fmt.Errorf("%w: On(nil)", ErrOption)
		}
		c.on = b
		return nil
	}
}

// WithCodec encodes the ref's values with codec instead of msgpack. Every
// process must use the same codec for a ref.
func WithCodec(codec Codec) Option {
	return func(c *config) error {
		if codec == nil {
			return fmt.Errorf("%w: WithCodec(nil)", ErrOption)
		}
		c.codec = codec
		return nil
	}
}

// WithValidator sets the handle's validator: every value this handle
// commits, and the initial value when New creates the ref, must pass it. T
// must be the ref's type.
func WithValidator[T any](f func(T) error) Option {
	return func(c *config) error {
		c.validator = f
		return nil
	}
}

// WithMinHistory sets how many older versions the ref always keeps, when
// New creates it. Default: the STM's (0).
func WithMinHistory(n int) Option {
	return func(c *config) error { c.minHistory = &n; return nil }
}

// WithMaxHistory sets how far read faults may grow the ref's kept history,
// when New creates it. Default: the STM's (10).
func WithMaxHistory(n int) Option {
	return func(c *config) error { c.maxHistory = &n; return nil }
}

func validatorFor[T any](c *config) (func(T) error, error) {
	if c.validator == nil {
		return nil, nil
	}
	f, ok := c.validator.(func(T) error)
	if !ok || f == nil {
		var zero T
		return nil, fmt.Errorf("%w: WithValidator takes func(%v) error for this ref, got %T", ErrOption, reflect.TypeOf(&zero).Elem(), c.validator)
	}
	return f, nil
}

// RetryErrors makes a delay (NewDelay) treat an error from its body as
// not delivered: the claim is released, the caller that ran the body gets
// the error, and the next Deref (in any process) runs the body again.
// Without it the error is delivered, like a value, to every caller. It is
// ErrOption for other kinds of reference.
func RetryErrors() Option {
	return func(c *config) error { c.retryErrors = true; return nil }
}
