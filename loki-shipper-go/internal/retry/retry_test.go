package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDo(t *testing.T) {
	fast := Config{InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
	permanent := errors.New("403 forbidden")
	cases := []struct {
		name         string
		failures     []error // returned by the first attempts, in order
		wantErr      error
		wantAttempts int
	}{
		{"a first success is not retried", nil, nil, 1},
		{"transient failures are retried until success", []error{Transient(errors.New("503"), 0), Transient(errors.New("reset"), 0)}, nil, 3},
		{"a permanent failure stops at once", []error{permanent}, permanent, 1},
		{"a permanent failure after transient ones stops there", []error{Transient(errors.New("429"), 0), permanent}, permanent, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			attempts, retries := 0, 0
			err := Do(context.Background(), fast, func(context.Context) error {
				attempts++
				if attempts <= len(tc.failures) {
					return tc.failures[attempts-1]
				}
				return nil
			}, func(int, error, time.Duration) { retries++ })
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if attempts != tc.wantAttempts {
				t.Errorf("%d attempts, want %d", attempts, tc.wantAttempts)
			}
			if tc.wantErr == nil && retries != attempts-1 {
				t.Errorf("%d retries reported for %d attempts", retries, attempts)
			}
		})
	}
}

func TestDoStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := Do(ctx, Config{InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}, func(context.Context) error {
		return Transient(errors.New("down"), 0)
	}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
}

func TestBackoffDoublesUpToTheCap(t *testing.T) {
	c := Config{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	cases := []struct {
		name    string
		attempt int
		want    time.Duration // before jitter, which takes off at most 20%
	}{
		{"the first wait is the initial backoff", 1, 100 * time.Millisecond},
		{"the third wait is four times it", 3, 400 * time.Millisecond},
		{"a late wait is capped", 30, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for range 50 {
				got := c.Backoff(tc.attempt)
				if got > tc.want || got < tc.want*4/5 {
					t.Fatalf("Backoff(%d) = %s, want within 20%% below %s", tc.attempt, got, tc.want)
				}
			}
		})
	}
}

func TestRetryAfterIsHonouredUpToTheCap(t *testing.T) {
	c := Config{InitialBackoff: time.Millisecond, MaxBackoff: 30 * time.Millisecond}
	var waits []time.Duration
	attempts := 0
	_ = Do(context.Background(), c, func(context.Context) error {
		attempts++
		if attempts == 1 {
			return Transient(errors.New("429"), time.Hour)
		}
		return nil
	}, func(_ int, _ error, wait time.Duration) { waits = append(waits, wait) })
	if len(waits) != 1 || waits[0] != 30*time.Millisecond {
		t.Fatalf("waits %v, want one of 30ms (Retry-After capped)", waits)
	}
}
