package shipper

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"monologue.dev/loki-shipper/internal/checkpoint"
	"monologue.dev/loki-shipper/internal/loki"
	"monologue.dev/loki-shipper/internal/sink"
	"monologue.dev/loki-shipper/internal/synth"
)

// fakeClock is a shipper's clock that jumps to each wake-up at once. When
// it reaches end it closes stop instead of waking the shipper again.
type fakeClock struct {
	mu   sync.Mutex
	now  time.Time
	end  time.Time
	stop chan struct{}
}

func newFakeClock(now, end time.Time) *fakeClock {
	return &fakeClock{now: now, end: end, stop: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.now.Add(d).Before(c.end) {
		close(c.stop)
		return nil // never fires: the shipper stops
	}
	c.now = c.now.Add(d)
	fired := make(chan time.Time, 1)
	fired <- c.now
	return fired
}

func following(src Source, mem *sink.Memory, clock *fakeClock) *Shipper {
	cfg := followConfig()
	cfg.Lag, cfg.FlushInterval = 3*time.Second, 2*time.Second
	s := newShipper(src, mem, cfg)
	s.Now, s.After = clock.Now, clock.After
	return s
}

// gappy is a Source whose lines lie only in the given [from, to) ranges.
type gappy struct {
	synth.Source
	ranges [][2]time.Time
}

func (g *gappy) Read(ctx context.Context, from, to int64, fn func([]loki.Entry) error) error {
	return g.Source.Read(ctx, from, to, func(entries []loki.Entry) error {
		var kept []loki.Entry
		for _, e := range entries {
			for _, r := range g.ranges {
				if e.Timestamp >= r[0].UnixNano() && e.Timestamp < r[1].UnixNano() {
					kept = append(kept, e)
					break
				}
			}
		}
		if len(kept) == 0 {
			return nil
		}
		return fn(kept)
	})
}

func (g *gappy) lines() (n int) {
	_ = g.Read(context.Background(), g.Start, g.Start+g.Span, func(e []loki.Entry) error { n += len(e); return nil })
	return n
}

func TestFollowingShipsEachFlushAsAnObjectWithinItsWindow(t *testing.T) {
	src := &synth.Source{Start: t0.UnixNano(), Span: int64(3 * time.Minute), Lines: 9000, Streams: 3, Batch: 500}
	mem := sink.NewMemory()
	clock := newFakeClock(t0.Add(70*time.Second), t0.Add(3*time.Minute+10*time.Second))
	s := following(src, mem, clock)
	if err := s.Run(context.Background(), clock.stop); err != nil {
		t.Fatal(err)
	}
	ids, keys := readAll(t, mem)
	assertExactlyOnce(t, ids, src.Lines)
	// Catching up: the closed window whole, then up to the frontier (now - lag).
	if keys[0] != ObjectKey(t0, t0.Add(time.Minute)) || keys[1] != ObjectKey(t0.Add(time.Minute), t0.Add(67*time.Second)) {
		t.Errorf("catch-up objects %v", keys[:2])
	}
	// Following: one object per flush, never longer than the flush interval.
	for _, key := range keys[2:] {
		if start, end := objectRange(t, key); end.Sub(start) > 2*time.Second {
			t.Errorf("%s is longer than a flush", key)
		}
	}
	cp, _, _ := checkpoint.Store{Sink: mem}.Load(context.Background())
	if want := clock.Now().Add(-3 * time.Second); !cp.CompleteUntil.Equal(want) || cp.LastObject != keys[len(keys)-1] {
		t.Errorf("checkpoint %+v, want complete_until %s", cp, want)
	}
}

func TestARestartAdoptsTheObjectItsPredecessorDidNotCheckpoint(t *testing.T) {
	// Lines in the first window, none for 40 s, then lines again: the first
	// object after the gap starts past the last checkpoint.
	ranges := [][2]time.Time{{t0, t0.Add(75 * time.Second)}, {t0.Add(115 * time.Second), t0.Add(3 * time.Minute)}}
	cases := []struct {
		name string
		// fails says whether a put fails for good (the shipper exits, as if killed there),
		// given its key and the key of the put before it.
		fails func(key, previous string) bool
	}{
		{"killed between a flush's object and its checkpoint", func(key, previous string) bool {
			return key == checkpoint.Key && strings.HasSuffix(previous, "T235612Z.parquet")
		}},
		{"killed between the first object after a gap and its checkpoint", func(key, previous string) bool {
			return key == checkpoint.Key && strings.HasPrefix(previous, "dt=") && previous > ObjectKey(ranges[0][1], ranges[0][1])
		}},
		{"killed while writing a flush's object", func(key, _ string) bool {
			return strings.HasSuffix(key, "T235612Z.parquet")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := &gappy{synth.Source{Start: t0.UnixNano(), Span: int64(3 * time.Minute), Lines: 9000, Streams: 2}, ranges}
			mem := sink.NewMemory()
			var previous string
			failed := false
			mem.Fail = func(op, key string) error {
				if op != "put" {
					return nil
				}
				defer func() { previous = key }()
				if !failed && tc.fails(key, previous) {
					failed = true
					return errors.New("403 AccessDenied") // permanent: the shipper exits
				}
				return nil
			}
			clock := newFakeClock(t0.Add(65*time.Second), t0.Add(5*time.Minute))
			if err := following(src, mem, clock).Run(context.Background(), clock.stop); err == nil || !failed {
				t.Fatalf("the first run should fail (err %v, failed %v)", err, failed)
			}
			// Restarted a little later: its flushes end elsewhere than the first run's.
			clock = newFakeClock(clock.Now().Add(3500*time.Millisecond), t0.Add(4*time.Minute))
			if err := following(src, mem, clock).Run(context.Background(), clock.stop); err != nil {
				t.Fatal(err)
			}
			ids, _ := readAll(t, mem)
			assertExactlyOnce(t, ids, src.lines())
		})
	}
}

func TestTimeWithoutLinesIsCheckpointedOncePerWindow(t *testing.T) {
	mem := sink.NewMemory()
	clock := newFakeClock(t0.Add(10*time.Second), t0.Add(3*time.Minute+10*time.Second))
	s := following(&synth.Source{}, mem, clock)
	if err := s.Run(context.Background(), clock.stop); err != nil {
		t.Fatal(err)
	}
	// Windows 23:55, 23:56, 23:57 and 23:58 reached, then the save on stop
	// (instead of one checkpoint per flush, about 90).
	if puts := mem.Puts(); puts > 5 {
		t.Errorf("%d checkpoints written over 3 minutes without lines", puts)
	}
	cp, _, _ := checkpoint.Store{Sink: mem}.Load(context.Background())
	if want := clock.Now().Add(-3 * time.Second); !cp.CompleteUntil.Equal(want) {
		t.Errorf("complete_until %s after the stop, want %s", cp.CompleteUntil, want)
	}
}
