// Command shipperbench is the Go half of bench/shipper.py (make
// bench-shipper). It prints one JSON object with what it measured.
//
//	-mode=write  the write path alone: synthetic lines in memory -> Parquet -> S3
//	-mode=read   the baseline of the end-to-end figure: page through query_range
//	             like the shipper does, and throw the lines away
//	-mode=run    run the command after the flags and write its wall time, CPU
//	             time and peak RSS to -report (see runMeasured)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"

	"monologue.dev/loki-shipper/internal/loki"
	"monologue.dev/loki-shipper/internal/parquet"
	"monologue.dev/loki-shipper/internal/retry"
	"monologue.dev/loki-shipper/internal/shipper"
	"monologue.dev/loki-shipper/internal/sink"
	"monologue.dev/loki-shipper/internal/synth"
	"monologue.dev/loki-shipper/internal/telemetry"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "shipperbench:", err)
		os.Exit(1)
	}
}

func run() error {
	mode := flag.String("mode", "write", "write, read or run")
	report := flag.String("report", "", "run: file to write the measurements to")
	lines := flag.Int("lines", 1_000_000, "write: lines to generate")
	span := flag.Duration("span", 100*time.Minute, "write: time span of the lines (1-minute windows)")
	bucket := flag.String("bucket", "", "write: S3 bucket (endpoint and credentials from the AWS environment)")
	lokiURL := flag.String("loki.url", "", "read: Loki URL")
	query := flag.String("loki.query", "", "read: LogQL query")
	limit := flag.Int("loki.limit", 5000, "read: page size")
	from := flag.Int64("from", 0, "read: start, ns")
	to := flag.Int64("to", 0, "read: end, ns")
	flag.Parse()
	if *mode == "run" {
		return runMeasured(flag.Args(), *report)
	}
	ctx := context.Background()
	retryCfg := retry.Config{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	start := time.Now()
	var count, bytes int64

	switch *mode {
	case "write":
		s3, err := sink.NewS3(ctx, sink.S3Config{Bucket: *bucket, Prefix: "bench", PathStyle: true, Timeout: time.Minute})
		if err != nil {
			return err
		}
		t0 := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
		metrics := telemetry.NewMetrics("bench")
		s := &shipper.Shipper{
			Config: shipper.Config{Window: time.Minute, Start: t0.Format(time.RFC3339), End: t0.Add(*span).Format(time.RFC3339),
				Once: true, MaxLineBytes: 256 << 10, ShutdownTimeout: time.Minute},
			Parquet: parquet.Config{RowGroupRows: 100_000, ZstdLevel: "default"},
			Retry:   retryCfg,
			Source:  &synth.Source{Start: t0.UnixNano(), Span: int64(*span), Lines: *lines, Streams: 20},
			Sink:    s3,
			Metrics: metrics,
			Health:  telemetry.NewHealth(),
			Log:     log,
		}
		start = time.Now()
		if err := s.Run(ctx, nil); err != nil {
			return err
		}
		count = int64(*lines)
		for i := range *lines {
			bytes += int64(len(synth.Line(i)))
		}
	case "read":
		c := loki.NewClient(loki.Config{URL: *lokiURL, Query: *query, Limit: *limit, Timeout: time.Minute, Format: loki.FormatJSON}, retryCfg, log)
		if err := c.Read(ctx, *from, *to, func(entries []loki.Entry) error {
			count += int64(len(entries))
			for _, e := range entries {
				bytes += int64(len(e.Line))
			}
			return nil
		}); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown -mode %q", *mode)
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"lines": count, "bytes": bytes, "seconds": time.Since(start).Seconds(),
	})
}

// runMeasured runs argv and reports what its parent alone can see exactly:
// the child's own peak RSS. A process spawned by Python (vfork) or Go
// (CLONE_VM) starts out in its parent's memory, and the kernel counts the
// parent's resident set in the child's ru_maxrss; from this small process
// that floor is a few MiB, from the benchmark's Python process it can be
// a gigabyte.
func runMeasured(argv []string, report string) error {
	if len(argv) == 0 || report == "" {
		return fmt.Errorf("-mode=run needs -report=FILE and a command")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", argv[0], err)
	}
	wall := time.Since(start)
	usage := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
	out, err := json.Marshal(map[string]any{
		"seconds": wall.Seconds(), "cpu_seconds": cpu.Seconds(), "peak_rss_mib": float64(usage.Maxrss) / 1024, // Maxrss: KiB
	})
	if err != nil {
		return err
	}
	return os.WriteFile(report, out, 0o644)
}
