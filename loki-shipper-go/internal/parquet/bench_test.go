package parquet

import (
	"fmt"
	"io"
	"testing"
)

func benchRows(n int) []Row {
	labels := map[string]string{"app": "api", "namespace": "prod", "pod": "api-7d9f8c-x2x9z"}
	rows := make([]Row, n)
	for i := range rows {
		rows[i] = Row{
			Timestamp: 1700000000000000000 + int64(i)*1000,
			Labels:    labels,
			Line:      fmt.Sprintf(`level=info ts=2024-01-02T10:00:00Z caller=server.go:88 msg="request served" status=200 id=%08d`, i),
			LineID:    fmt.Sprintf("%032x", i*7919),
			Level:     "info",
			Fields:    map[string]string{"level": "info", "ts": "2024-01-02T10:00:00Z", "caller": "server.go:88", "msg": "request served", "status": "200", "id": fmt.Sprint(i)},
		}
	}
	return rows
}

func BenchmarkWriter(b *testing.B) {
	rows := benchRows(10_000)
	b.ResetTimer()
	for b.Loop() {
		w := NewWriter(io.Discard, Config{RowGroupRows: 100_000, ZstdLevel: "default"})
		for i := 0; i < len(rows); i += 1000 {
			if err := w.Write(rows[i : i+1000]); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(rows)*b.N)/b.Elapsed().Seconds(), "rows/s")
}
