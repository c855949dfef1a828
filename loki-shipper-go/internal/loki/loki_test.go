package loki

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pq "github.com/parquet-go/parquet-go"

	"monologue.dev/loki-shipper/internal/retry"
)

type fakeEntry struct {
	stream int
	ts     int64
	line   string
}

// fakeLoki answers query_range like Loki does for a forward log query: the
// first `limit` entries of [start, end) by timestamp, ties in an order that
// changes from request to request, grouped by stream in the response.
type fakeLoki struct {
	entries  []fakeEntry // sorted by ts
	streams  []map[string]string
	failures func(n int) int // status to answer request n with, 0 for a real answer
	maxLimit int
	maxRange int64 // longest end - start answered, as Loki's max_query_length; 0: any
	requests atomic.Int32
	mu       sync.Mutex
	ranges   [][2]int64 // [start, end) of every request answered
}

func (f *fakeLoki) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := int(f.requests.Add(1))
	if f.failures != nil {
		if code := f.failures(n); code != 0 {
			if code == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "0")
			}
			http.Error(w, "injected failure", code)
			return
		}
	}
	q := r.URL.Query()
	start, _ := strconv.ParseInt(q.Get("start"), 10, 64)
	end, _ := strconv.ParseInt(q.Get("end"), 10, 64)
	limit, _ := strconv.Atoi(q.Get("limit"))
	f.mu.Lock()
	f.ranges = append(f.ranges, [2]int64{start, end})
	f.mu.Unlock()
	if f.maxRange > 0 && end-start > f.maxRange {
		http.Error(w, "the query time range exceeds the limit", http.StatusBadRequest)
		return
	}
	if f.maxLimit > 0 && limit > f.maxLimit {
		http.Error(w, fmt.Sprintf("max entries limit per query exceeded, limit > max_entries_limit_per_query (%d > %d)", limit, f.maxLimit), http.StatusBadRequest)
		return
	}
	var in []fakeEntry
	for _, e := range f.entries {
		if e.ts >= start && e.ts < end {
			in = append(in, e)
		}
	}
	rand.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
	sort.SliceStable(in, func(i, j int) bool { return in[i].ts < in[j].ts })
	if len(in) > limit {
		in = in[:limit]
	}
	byStream := map[int][][2]string{}
	for _, e := range in {
		byStream[e.stream] = append(byStream[e.stream], [2]string{strconv.FormatInt(e.ts, 10), e.line})
	}
	var result []map[string]any
	for s, values := range byStream {
		result = append(result, map[string]any{"stream": f.streams[s], "values": values})
	}
	if r.Header.Get("Accept") == parquetType {
		// Loki's Parquet response: rows grouped by stream, each with its labels.
		var rows []parquetRow
		for s, values := range byStream {
			for _, v := range values {
				ts, _ := strconv.ParseInt(v[0], 10, 64)
				rows = append(rows, parquetRow{Timestamp: ts, Labels: f.streams[s], Line: v[1]})
			}
		}
		w.Header().Set("Content-Type", parquetType)
		if len(rows) > 0 {
			_ = pq.Write(w, rows)
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "streams", "result": result}})
}

func newFake(lines, perTimestamp, streams int) *fakeLoki {
	f := &fakeLoki{}
	for s := range streams {
		f.streams = append(f.streams, map[string]string{"app": "api", "pod": fmt.Sprintf("pod-%d", s)})
	}
	for i := range lines {
		f.entries = append(f.entries, fakeEntry{stream: i % streams, ts: 1000 + int64(i/perTimestamp), line: fmt.Sprintf("line %d", i)})
	}
	return f
}

func readAll(t *testing.T, f *fakeLoki, limit int, from, to int64) (map[string]int, []int64, error) {
	return readAllAs(t, f, FormatJSON, limit, from, to)
}

func readAllAs(t *testing.T, f *fakeLoki, format string, limit int, from, to int64) (map[string]int, []int64, error) {
	t.Helper()
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := NewClient(Config{URL: srv.URL, Query: `{app="api"}`, Limit: limit, Timeout: 5 * time.Second, Format: format,
		MaxRange: time.Duration(f.maxRange)},
		retry.Config{InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	seen := map[string]int{}
	var order []int64
	err := c.Read(context.Background(), from, to, func(entries []Entry) error {
		for _, e := range entries {
			seen[e.Stream.Labels["pod"]+"/"+e.Line]++
			order = append(order, e.Timestamp)
		}
		return nil
	})
	return seen, order, err
}

func TestReadPagesThroughEveryLineOnce(t *testing.T) {
	cases := []struct {
		name                         string
		lines, perTimestamp, streams int
		limit                        int
		from, to                     int64
		wantLines                    int
	}{
		{"lines with distinct timestamps", 1000, 1, 3, 100, 0, 1 << 40, 1000},
		{"pages cut between lines of one timestamp", 1000, 7, 3, 10, 0, 1 << 40, 1000},
		{"a page exactly as large as a timestamp group", 1000, 10, 2, 10, 0, 1 << 40, 1000},
		{"more lines share one timestamp than a page holds", 500, 250, 4, 100, 0, 1 << 40, 500},
		{"one page holds everything", 50, 3, 2, 5000, 0, 1 << 40, 50},
		{"the range's end is exclusive", 100, 1, 1, 10, 0, 1050, 50},
		{"the range's start is inclusive", 100, 1, 1, 10, 1050, 1 << 40, 50},
		{"an empty range reads nothing", 100, 1, 1, 10, 5000, 6000, 0},
	}
	for _, tc := range cases {
		for _, format := range []string{FormatJSON, FormatParquet} {
			t.Run(tc.name+" ("+format+")", func(t *testing.T) {
				f := newFake(tc.lines, tc.perTimestamp, tc.streams)
				seen, order, err := readAllAs(t, f, format, tc.limit, tc.from, tc.to)
				if err != nil {
					t.Fatal(err)
				}
				if len(seen) != tc.wantLines {
					t.Errorf("%d distinct lines, want %d", len(seen), tc.wantLines)
				}
				for k, n := range seen {
					if n != 1 {
						t.Errorf("%s read %d times", k, n)
					}
				}
				if !sort.SliceIsSorted(order, func(i, j int) bool { return order[i] < order[j] }) {
					t.Error("lines not in timestamp order")
				}
			})
		}
	}
}

// newSpread is a fake whose lines lie at the given timestamps, two streams.
func newSpread(timestamps []int64) *fakeLoki {
	f := &fakeLoki{streams: []map[string]string{{"app": "api", "pod": "pod-0"}, {"app": "api", "pod": "pod-1"}}}
	for i, ts := range timestamps {
		f.entries = append(f.entries, fakeEntry{stream: i % 2, ts: ts, line: fmt.Sprintf("line %d", i)})
	}
	return f
}

func TestRequestsAskForAboutTheTimeAPageCovers(t *testing.T) {
	const second, minute, hour = int64(time.Second), int64(time.Minute), int64(time.Hour)
	var dense, sparse, sparseThenDense []int64
	for ts := int64(0); ts < 3*hour; ts += second {
		dense = append(dense, ts)
	}
	for ts := int64(0); ts < 3*hour; ts += 10 * minute {
		sparse = append(sparse, ts)
	}
	sparseThenDense = append(sparseThenDense, sparse...)
	for ts := 3 * hour; ts < 3*hour+20*minute; ts += second / 4 {
		sparseThenDense = append(sparseThenDense, ts)
	}
	cases := []struct {
		name        string
		timestamps  []int64
		maxRequests int   // pages needed, plus a few while the span adapts
		longest     int64 // longest range a request within the lines may ask for
	}{
		{"a line a second for three hours: one request a page, none asking for hours", dense, 10800/100 + 10, 10 * minute},
		{"a line every ten minutes: the span grows instead of asking minute by minute", sparse, 12, 4 * hour},
		{"sparse lines, then dense ones", sparseThenDense, 4800/100 + 20, 4 * hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newSpread(tc.timestamps)
			seen, order, err := readAll(t, f, 100, 0, 4*hour)
			if err != nil {
				t.Fatal(err)
			}
			if len(seen) != len(tc.timestamps) {
				t.Errorf("%d distinct lines, want %d", len(seen), len(tc.timestamps))
			}
			for k, n := range seen {
				if n != 1 {
					t.Errorf("%s read %d times", k, n)
				}
			}
			if !sort.SliceIsSorted(order, func(i, j int) bool { return order[i] < order[j] }) {
				t.Error("lines not in timestamp order")
			}
			if len(f.ranges) > tc.maxRequests {
				t.Errorf("%d requests, want at most %d", len(f.ranges), tc.maxRequests)
			}
			for _, r := range f.ranges {
				if r[1] <= tc.timestamps[len(tc.timestamps)-1] && r[1]-r[0] > tc.longest {
					t.Errorf("a request asked for %s, want at most %s", time.Duration(r[1]-r[0]), time.Duration(tc.longest))
				}
			}
		})
	}
}

func TestReadRetriesTransientFailuresAndStopsOnOthers(t *testing.T) {
	cases := []struct {
		name     string
		failures func(n int) int
		wantErr  bool
	}{
		{"503s then success", func(n int) int { return map[int]int{1: 503, 2: 502, 5: 500}[n] }, false},
		{"429 then success", func(n int) int { return map[int]int{1: 429}[n] }, false},
		{"a 400 is not retried", func(n int) int { return map[int]int{2: 400}[n] }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(300, 3, 2)
			f.failures = tc.failures
			seen, _, err := readAll(t, f, 50, 0, 1<<40)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && len(seen) != 300 {
				t.Errorf("%d lines, want 300", len(seen))
			}
		})
	}
}

func TestARangeLongerThanLokiAnswersIsReadInParts(t *testing.T) {
	f := newFake(1000, 7, 3) // timestamps 1000 to 1142
	f.maxRange = 10
	seen, order, err := readAll(t, f, 20, 995, 1200)
	if err != nil || len(seen) != 1000 {
		t.Fatalf("%d lines, err %v", len(seen), err)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s read %d times", k, n)
		}
	}
	if !sort.SliceIsSorted(order, func(i, j int) bool { return order[i] < order[j] }) {
		t.Error("lines not in timestamp order")
	}
}

func TestALimitAboveLokisMaximumIsLowered(t *testing.T) {
	f := newFake(300, 1, 2)
	f.maxLimit = 40
	seen, _, err := readAll(t, f, 5000, 0, 1<<40)
	if err != nil || len(seen) != 300 {
		t.Fatalf("err=%v lines=%d", err, len(seen))
	}
}

func TestPagesThatTimeOutAreAskedForSmaller(t *testing.T) {
	f := newFake(300, 1, 2)
	f.failures = func(n int) int { return map[int]int{1: http.StatusGatewayTimeout, 2: http.StatusGatewayTimeout}[n] }
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := NewClient(Config{URL: srv.URL, Query: `{app="api"}`, Limit: 100, Timeout: 5 * time.Second, Format: FormatJSON},
		retry.Config{InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	lines := 0
	if err := c.Read(context.Background(), 0, 1<<40, func(e []Entry) error { lines += len(e); return nil }); err != nil {
		t.Fatal(err)
	}
	if lines != 300 || c.limit != 25 {
		t.Errorf("lines=%d limit=%d, want 300 and 25", lines, c.limit)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{URL: "http://loki:3100", Query: `{app="api"}`, Limit: 5000, Timeout: time.Minute, Format: FormatJSON}
	cases := []struct {
		name    string
		mutate  func(*Config)
		wantErr bool
	}{
		{"a complete config is valid", func(*Config) {}, false},
		{"a URL without scheme is refused", func(c *Config) { c.URL = "loki:3100" }, true},
		{"a metric query is refused", func(c *Config) { c.Query = `rate({app="api"}[1m])` }, true},
		{"a zero limit is refused", func(c *Config) { c.Limit = 0 }, true},
		{"an unknown format is refused", func(c *Config) { c.Format = "protobuf" }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mutate(&c)
			if err := c.Validate(); (err != nil) != tc.wantErr {
				t.Errorf("Validate() = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}
