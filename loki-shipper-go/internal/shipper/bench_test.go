package shipper

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"monologue.dev/loki-shipper/internal/parquet"
	"monologue.dev/loki-shipper/internal/retry"
	"monologue.dev/loki-shipper/internal/sink"
	"monologue.dev/loki-shipper/internal/synth"
	"monologue.dev/loki-shipper/internal/telemetry"
)

func BenchmarkWritePath(b *testing.B) {
	start := time.Date(2024, 1, 2, 10, 0, 0, 0, time.UTC)
	lines := 200_000
	for b.Loop() {
		s := &Shipper{
			Config:  Config{Window: time.Minute, Start: start.Format(time.RFC3339), End: start.Add(10 * time.Minute).Format(time.RFC3339), Once: true, MaxLineBytes: 1 << 16},
			Parquet: parquet.Config{RowGroupRows: 100_000, ZstdLevel: "default"},
			Retry:   retry.Config{InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond},
			Source:  &synth.Source{Start: start.UnixNano(), Span: int64(10 * time.Minute), Lines: lines, Streams: 10},
			Sink:    sink.NewMemory(),
			Metrics: telemetry.NewMetrics("test"),
			Health:  telemetry.NewHealth(),
			Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
		if err := s.Run(context.Background(), nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(lines*b.N)/b.Elapsed().Seconds(), "lines/s")
}
