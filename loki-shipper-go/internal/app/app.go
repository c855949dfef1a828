// Package app wires the packages into the loki-shipper process: flags,
// logs, signals, the metrics server and the shipper.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"monologue.dev/loki-shipper/internal/config"
	"monologue.dev/loki-shipper/internal/loki"
	"monologue.dev/loki-shipper/internal/shipper"
	"monologue.dev/loki-shipper/internal/sink"
	"monologue.dev/loki-shipper/internal/telemetry"
)

// Exit codes.
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitUsage  = 2
)

// Main runs the process and returns its exit code.
func Main(version string, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := config.Parse(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "loki-shipper: %v\nRun loki-shipper --help for the flags.\n", err)
		return ExitUsage
	}
	if cfg.Version {
		fmt.Fprintf(stdout, "loki-shipper %s\n", version)
		return ExitOK
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))

	// SIGTERM or SIGINT: finish the window in hand, then exit 0. A second
	// signal, or the shutdown timeout, aborts what is still running.
	stop := make(chan struct{})
	ctx, abort := context.WithCancel(context.Background())
	defer abort()
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	go func() {
		select {
		case sig := <-signals:
			log.Info("signal received: finishing the window in hand", "signal", sig.String(), "timeout", cfg.Shipper.ShutdownTimeout.String())
			close(stop)
		case <-ctx.Done():
			return
		}
		select {
		case sig := <-signals:
			log.Warn("second signal: aborting", "signal", sig.String())
		case <-time.After(cfg.Shipper.ShutdownTimeout):
		case <-ctx.Done():
		}
		abort()
	}()

	if err := run(ctx, stop, cfg, version, log); err != nil {
		log.Error("loki-shipper failed", "error", err.Error())
		return ExitFailed
	}
	return ExitOK
}

func run(ctx context.Context, stop <-chan struct{}, cfg *config.Config, version string, log *slog.Logger) error {
	metrics := telemetry.NewMetrics(version)
	health := telemetry.NewHealth()
	if cfg.HTTP.ListenAddress != "" {
		ln, err := net.Listen("tcp", cfg.HTTP.ListenAddress)
		if err != nil {
			return fmt.Errorf("--http.listen-address: %w", err)
		}
		serveCtx, stopServing := context.WithCancel(context.Background())
		defer stopServing()
		go func() {
			if err := telemetry.Serve(serveCtx, ln, telemetry.Handler(metrics, health)); err != nil {
				log.Error("metrics server stopped", "error", err.Error())
			}
		}()
		log.Info("serving /metrics, /healthz, /readyz", "address", ln.Addr().String())
	}

	s3, err := sink.NewS3(ctx, cfg.S3)
	if err != nil {
		return err
	}
	source := loki.NewClient(cfg.Loki, cfg.Retry, log)
	ship := &shipper.Shipper{
		Config:  cfg.Shipper,
		Parquet: cfg.Parquet,
		Retry:   cfg.Retry,
		Query:   cfg.Loki.Query,
		Source:  source,
		Sink:    s3,
		Metrics: metrics,
		Health:  health,
		Log:     log,
	}
	source.OnAttempt = func(err error) { health.Observe("loki", err) }
	source.OnRetry = ship.RetryObserver("loki")
	log.Info("loki-shipper starting", "version", version, "loki", cfg.Loki.URL, "query", cfg.Loki.Query,
		"destination", s3.Describe(), "window", cfg.Shipper.Window.String(), "lag", cfg.Shipper.Lag.String(), "once", cfg.Shipper.Once)
	return ship.Run(ctx, stop)
}
