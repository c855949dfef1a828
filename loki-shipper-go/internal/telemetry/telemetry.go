// Package telemetry serves the shipper's Prometheus metrics and its
// Kubernetes probes.
package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type Config struct {
	ListenAddress string
}

func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ListenAddress, "http.listen-address", ":8080",
		`Address of /metrics, /healthz and /readyz; "" turns the server off (e.g. for --once).`)
}

func (c *Config) Validate() error {
	if c.ListenAddress == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.ListenAddress); err != nil {
		return fmt.Errorf("--http.listen-address %q: %w", c.ListenAddress, err)
	}
	return nil
}

// Metrics are the shipper's counters. Their names start with loki_shipper_.
type Metrics struct {
	Registry       *prometheus.Registry
	Lines          prometheus.Counter
	Bytes          prometheus.Counter
	Truncated      prometheus.Counter
	Repaired       prometheus.Counter
	Windows        prometheus.Counter
	ObjectBytes    prometheus.Counter
	Retries        *prometheus.CounterVec
	CompleteUntil  prometheus.Gauge
	completeUntil  sync.Mutex
	completeUntilT time.Time
}

func NewMetrics(version string) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Lines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loki_shipper_lines_total", Help: "Log lines written to Parquet objects."}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loki_shipper_bytes_total", Help: "Bytes of log lines (as read from Loki) written to Parquet objects."}),
		Truncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loki_shipper_lines_truncated_total", Help: "Lines cut to --max-line-bytes."}),
		Repaired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loki_shipper_lines_repaired_utf8_total", Help: "Lines whose invalid UTF-8 was replaced."}),
		Windows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loki_shipper_windows_written_total", Help: "Objects written: windows, and flushes of the current window while following (a rewrite after a restart counts again)."}),
		ObjectBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loki_shipper_object_bytes_total", Help: "Bytes of Parquet objects uploaded."}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loki_shipper_retries_total", Help: "Requests retried after a 429, 5xx or network error, by target (loki, s3)."},
			[]string{"target"}),
		CompleteUntil: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loki_shipper_complete_until_timestamp_seconds", Help: "Everything before this time is shipped (the checkpoint trails it by less than a window through time without lines)."}),
	}
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "loki_shipper_lag_seconds",
		Help: "How far behind now the shipped data ends (includes --lag and up to a --flush-interval by design, or a window with --flush-interval=0).",
	}, func() float64 {
		m.completeUntil.Lock()
		defer m.completeUntil.Unlock()
		if m.completeUntilT.IsZero() {
			return 0
		}
		return time.Since(m.completeUntilT).Seconds()
	})
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "loki_shipper_build_info", Help: "Always 1; the version is a label.", ConstLabels: prometheus.Labels{"version": version}})
	info.Set(1)
	for _, target := range []string{"loki", "s3"} {
		m.Retries.WithLabelValues(target) // present at 0 from the start
	}
	m.Registry.MustRegister(m.Lines, m.Bytes, m.Truncated, m.Repaired, m.Windows, m.ObjectBytes, m.Retries,
		m.CompleteUntil, lag, info,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SetCompleteUntil records how far the lines are shipped, which the lag derives from.
func (m *Metrics) SetCompleteUntil(t time.Time) {
	m.completeUntil.Lock()
	m.completeUntilT = t
	m.completeUntil.Unlock()
	m.CompleteUntil.Set(float64(t.UnixNano()) / 1e9)
}

// Health is readiness: the shipper is ready once it has loaded its
// checkpoint and while its last request to each dependency succeeded.
type Health struct {
	mu      sync.Mutex
	started bool
	failing map[string]string // dependency -> last error
}

func NewHealth() *Health { return &Health{failing: map[string]string{}} }

func (h *Health) SetStarted() {
	h.mu.Lock()
	h.started = true
	h.mu.Unlock()
}

// Observe records the outcome of a request to a dependency.
func (h *Health) Observe(dependency string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		delete(h.failing, dependency)
	} else {
		h.failing[dependency] = err.Error()
	}
}

// Ready returns nil or why the shipper is not ready.
func (h *Health) Ready() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.started {
		return errors.New("starting: checkpoint not loaded yet")
	}
	var errs []error
	deps := make([]string, 0, len(h.failing))
	for d := range h.failing {
		deps = append(deps, d)
	}
	sort.Strings(deps)
	for _, d := range deps {
		errs = append(errs, fmt.Errorf("%s: %s", d, h.failing[d]))
	}
	return errors.Join(errs...)
}

// Handler serves /metrics, /healthz and /readyz.
func Handler(m *Metrics, h *Health) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := h.Ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "reason": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Serve answers on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, handler http.Handler) error {
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
