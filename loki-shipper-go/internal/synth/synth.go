// Package synth is an in-memory Source of made-up log lines, for tests and
// for the write-path benchmark (no Loki involved).
package synth

import (
	"context"
	"fmt"
	"strconv"

	"monologue.dev/loki-shipper/internal/logline"
	"monologue.dev/loki-shipper/internal/loki"
)

// Source yields Lines lines spread evenly over [Start, Start+Span) across
// Streams streams, each about 120 bytes, cycling through JSON, logfmt and
// plain-text shapes.
type Source struct {
	Start, Span int64 // ns
	Lines       int
	Streams     int
	Batch       int // entries per callback; 5000 when 0
}

// Line is the i-th line; tests rebuild expectations from it.
func Line(i int) string {
	id := strconv.Itoa(100000000 + i)
	switch i % 3 {
	case 0:
		return `{"level":"info","ts":"2024-01-02T10:00:00.000Z","msg":"request served","path":"/api/v1/items","req":"` + id + `"}`
	case 1:
		return `level=warn ts=2024-01-02T10:00:00.000Z caller=handler.go:88 msg="slow upstream" upstream=db req=` + id
	default:
		return `2024-01-02 10:00:00,000 ERROR [worker-3] job failed: connection reset by peer (attempt 2) req=` + id
	}
}

// Stream is the i-th stream's labels.
func Stream(i int) map[string]string {
	return map[string]string{"app": "bench", "namespace": "prod", "pod": fmt.Sprintf("bench-7d9f8c-%05d", i)}
}

// Timestamp of the i-th line.
func (s *Source) Timestamp(i int) int64 {
	return s.Start + int64(float64(i)/float64(s.Lines)*float64(s.Span))
}

func (s *Source) Read(ctx context.Context, from, to int64, fn func([]loki.Entry) error) error {
	batch := s.Batch
	if batch == 0 {
		batch = 5000
	}
	streams := make([]*loki.Stream, max(s.Streams, 1))
	for i := range streams {
		labels := Stream(i)
		streams[i] = &loki.Stream{Labels: labels, IDPrefix: logline.IDPrefix(labels)}
	}
	entries := make([]loki.Entry, 0, batch)
	for i := 0; i < s.Lines; i++ {
		ts := s.Timestamp(i)
		if ts < from || ts >= to {
			continue
		}
		entries = append(entries, loki.Entry{Timestamp: ts, Stream: streams[i%len(streams)], Line: Line(i)})
		if len(entries) == batch {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(entries); err != nil {
				return err
			}
			entries = make([]loki.Entry, 0, batch)
		}
	}
	if len(entries) > 0 {
		return fn(entries)
	}
	return nil
}
