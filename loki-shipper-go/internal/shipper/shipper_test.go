package shipper

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pq "github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"monologue.dev/loki-shipper/internal/checkpoint"
	"monologue.dev/loki-shipper/internal/parquet"
	"monologue.dev/loki-shipper/internal/retry"
	"monologue.dev/loki-shipper/internal/sink"
	"monologue.dev/loki-shipper/internal/synth"
	"monologue.dev/loki-shipper/internal/telemetry"
)

var t0 = time.Date(2024, 1, 2, 23, 55, 0, 0, time.UTC) // windows cross midnight

func newShipper(source Source, snk sink.Sink, cfg Config) *Shipper {
	return &Shipper{
		Config:  cfg,
		Parquet: parquet.Config{RowGroupRows: 1000, ZstdLevel: "fastest"},
		Retry:   retry.Config{InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond},
		Query:   `{app="bench"}`,
		Source:  source,
		Sink:    snk,
		Metrics: telemetry.NewMetrics("test"),
		Health:  telemetry.NewHealth(),
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		// Ten minutes after t0, plus the lag: every window of the source is closed.
		Now: func() time.Time { return t0.Add(10*time.Minute + 30*time.Second) },
	}
}

// stopWhenCaughtUp returns a stop channel closed once the shipper, having
// shipped every closed window, computes when to wake up next (its third
// reading of the clock).
func stopWhenCaughtUp(s *Shipper) chan struct{} {
	stop := make(chan struct{})
	clock, calls := s.Now, 0
	s.Now = func() time.Time {
		if calls++; calls == 3 {
			close(stop)
		}
		return clock()
	}
	return stop
}

func followConfig() Config {
	return Config{Window: time.Minute, Lag: 30 * time.Second, Start: t0.Format(time.RFC3339), MaxLineBytes: 1 << 16, ShutdownTimeout: time.Second}
}

// readAll returns the line ids in every object and checks that each object
// lies in one window, that no two objects overlap, and that each row lies in
// its object's range.
func readAll(t *testing.T, mem *sink.Memory) (ids map[string]int, keys []string) {
	t.Helper()
	ids = map[string]int{}
	var previousEnd time.Time
	for _, key := range mem.Keys("dt=") {
		start, end := objectRange(t, key)
		if window := start.Truncate(time.Minute); end.After(window.Add(time.Minute)) || ObjectKey(start, end) != key {
			t.Errorf("%s spans two windows or is misnamed", key)
		}
		if start.Before(previousEnd) {
			t.Errorf("%s overlaps the object before it", key)
		}
		previousEnd = end
		body, _ := mem.Get(context.Background(), key)
		rows, err := pq.Read[parquet.Row](bytes.NewReader(body), int64(len(body)))
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		for _, r := range rows {
			ids[r.LineID]++
			if ts := time.Unix(0, r.Timestamp); ts.Before(start) || !ts.Before(end) {
				t.Errorf("row at %d is in %s", r.Timestamp, key)
			}
		}
		keys = append(keys, key)
	}
	return ids, keys
}

func objectRange(t *testing.T, key string) (start, end time.Time) {
	t.Helper()
	name := strings.TrimSuffix(key[strings.LastIndexByte(key, '/')+1:], ".parquet")
	first, last, _ := strings.Cut(name, "_")
	start, err1 := time.Parse(keyTimeLayout, first)
	end, err2 := time.Parse(keyTimeLayout, last)
	if err1 != nil || err2 != nil || !end.After(start) {
		t.Fatalf("%s is not named <start>_<end>.parquet", key)
	}
	return start, end
}

func assertExactlyOnce(t *testing.T, ids map[string]int, want int) {
	t.Helper()
	if len(ids) != want {
		t.Errorf("%d distinct lines shipped, want %d", len(ids), want)
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("line %s shipped %d times", id, n)
		}
	}
}

func TestEveryLineIsShippedOnceInItsWindowObject(t *testing.T) {
	src := &synth.Source{Start: t0.UnixNano(), Span: int64(10 * time.Minute), Lines: 12_345, Streams: 7, Batch: 1000}
	mem := sink.NewMemory()
	s := newShipper(src, mem, followConfig())
	if err := s.Run(context.Background(), stopWhenCaughtUp(s)); err != nil {
		t.Fatal(err)
	}
	ids, keys := readAll(t, mem)
	assertExactlyOnce(t, ids, src.Lines)
	if len(keys) != 10 || keys[0] != "dt=2024-01-02/20240102T235500Z_20240102T235600Z.parquet" || keys[9] != "dt=2024-01-03/20240103T000400Z_20240103T000500Z.parquet" {
		t.Errorf("keys %v", keys)
	}
	cp, found, err := checkpoint.Store{Sink: mem}.Load(context.Background())
	if err != nil || !found || !cp.CompleteUntil.Equal(t0.Add(10*time.Minute)) || cp.LastObject != keys[9] {
		t.Errorf("checkpoint %+v found=%v err=%v", cp, found, err)
	}
}

func TestAFailedUploadIsShippedAgainOnRestartWithoutDuplicates(t *testing.T) {
	cases := []struct {
		name   string
		failOn string // the put that fails for good, by key substring
		nth    int32  // and which of those puts
	}{
		{"an object upload fails", "T000100Z_", 1},
		{"a checkpoint save fails after its object was written", checkpoint.Key, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := &synth.Source{Start: t0.UnixNano(), Span: int64(10 * time.Minute), Lines: 5000, Streams: 3}
			mem := sink.NewMemory()
			var puts atomic.Int32
			mem.Fail = func(op, key string) error {
				if op == "put" && strings.Contains(key, tc.failOn) && puts.Add(1) == tc.nth {
					return errors.New("403 AccessDenied") // permanent: the shipper exits
				}
				return nil
			}
			cfg := followConfig()
			cfg.Once = false
			first := newShipper(src, mem, cfg)
			if err := first.Run(context.Background(), nil); err == nil {
				t.Fatal("the first run should fail")
			}
			mem.Fail = nil
			second := newShipper(src, mem, cfg)
			if err := second.Run(context.Background(), stopWhenCaughtUp(second)); err != nil {
				t.Fatal(err)
			}
			ids, _ := readAll(t, mem)
			assertExactlyOnce(t, ids, src.Lines)
		})
	}
}

func TestTransientFailuresAreRetriedAndCounted(t *testing.T) {
	src := &synth.Source{Start: t0.UnixNano(), Span: int64(10 * time.Minute), Lines: 3000, Streams: 2}
	mem := sink.NewMemory()
	var calls atomic.Int32
	mem.Fail = func(op, key string) error {
		if calls.Add(1)%3 == 0 {
			return retry.Transient(errors.New("503 SlowDown"), 0)
		}
		return nil
	}
	cfg := followConfig()
	cfg.Once = true
	cfg.End = t0.Add(10 * time.Minute).Format(time.RFC3339)
	s := newShipper(src, mem, cfg)
	if err := s.Run(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	mem.Fail = nil
	ids, _ := readAll(t, mem)
	assertExactlyOnce(t, ids, src.Lines)
	if got := testutilCount(s.Metrics); got == 0 {
		t.Error("no retry was counted")
	}
	if _, found, _ := (checkpoint.Store{Sink: mem}).Load(context.Background()); found {
		t.Error("--once wrote a checkpoint")
	}
}

func TestAResumedShipperRefusesAnotherQuery(t *testing.T) {
	mem := sink.NewMemory()
	_ = checkpoint.Store{Sink: mem}.Save(context.Background(), checkpoint.Checkpoint{Query: `{app="other"}`, Window: "1m0s", CompleteUntil: t0})
	s := newShipper(&synth.Source{}, mem, followConfig())
	err := s.Run(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "was written for query") {
		t.Fatalf("err = %v", err)
	}
}

func TestObjectKey(t *testing.T) {
	cases := []struct {
		name       string
		start, end time.Time
		want       string
	}{
		{"a minute window", t0, t0.Add(time.Minute), "dt=2024-01-02/20240102T235500Z_20240102T235600Z.parquet"},
		{"the last window of a day ends at midnight", t0.Add(4 * time.Minute), t0.Add(5 * time.Minute), "dt=2024-01-02/20240102T235900Z_20240103T000000Z.parquet"},
		{"a time in another zone is named in UTC", t0.In(time.FixedZone("X", 3600)), t0.Add(time.Hour), "dt=2024-01-02/20240102T235500Z_20240103T005500Z.parquet"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ObjectKey(tc.start, tc.end); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func testutilCount(m *telemetry.Metrics) float64 {
	return testutil.ToFloat64(m.Retries.WithLabelValues("s3"))
}
