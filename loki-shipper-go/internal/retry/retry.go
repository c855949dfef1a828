// Package retry repeats an operation with capped exponential backoff, but
// only when its error says it is worth repeating: the callers mark 429, 5xx
// and network errors as Transient; everything else fails at once.
package retry

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"time"
)

// Config is the backoff policy. There is no attempt limit: a dependency that
// is down for minutes is waited for (the shipper loses nothing by waiting),
// and a stop of the process ends the wait.
type Config struct {
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
}

func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.InitialBackoff, "retry.initial-backoff", 250*time.Millisecond,
		"First wait after a failed Loki or S3 request (429, 5xx, network error); doubles on each failure.")
	fs.DurationVar(&c.MaxBackoff, "retry.max-backoff", 30*time.Second,
		"Longest wait between two attempts; failures are retried without limit.")
}

func (c *Config) Validate() error {
	if c.InitialBackoff <= 0 {
		return fmt.Errorf("--retry.initial-backoff must be positive, got %s", c.InitialBackoff)
	}
	if c.MaxBackoff < c.InitialBackoff {
		return fmt.Errorf("--retry.max-backoff (%s) must be at least --retry.initial-backoff (%s)", c.MaxBackoff, c.InitialBackoff)
	}
	return nil
}

// transientError marks an error worth retrying.
type transientError struct {
	err   error
	after time.Duration // server's Retry-After, if it sent one
}

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// Transient marks err as worth retrying; after > 0 asks to wait at least that long.
func Transient(err error, after time.Duration) error {
	if err == nil {
		return nil
	}
	return &transientError{err: err, after: after}
}

// IsTransient reports whether err was marked Transient.
func IsTransient(err error) bool {
	var t *transientError
	return errors.As(err, &t)
}

// Backoff is the wait before attempt n+1 (n counts from 1): the capped
// exponential, with up to 20% taken off at random so that many shippers
// restarting together do not retry in step.
func (c Config) Backoff(n int) time.Duration {
	d := c.InitialBackoff
	for i := 1; i < n && d < c.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.MaxBackoff)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

// Do runs op until it succeeds, fails with an error that is not transient,
// or ctx ends. onRetry (may be nil) hears about each failure that is retried.
func Do(ctx context.Context, c Config, op func(context.Context) error, onRetry func(attempt int, err error, wait time.Duration)) error {
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		var t *transientError
		if !errors.As(err, &t) {
			return err
		}
		wait := max(c.Backoff(attempt), min(t.after, c.MaxBackoff))
		if onRetry != nil {
			onRetry(attempt, err, wait)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return errors.Join(ctx.Err(), err)
		case <-timer.C:
		}
	}
}
