package shipper

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"
)

// Config is how the shipper cuts time into windows and how it follows Loki.
type Config struct {
	Window          time.Duration
	Lag             time.Duration
	FlushInterval   time.Duration
	Start           string
	End             string
	Once            bool
	MaxLineBytes    int
	ShutdownTimeout time.Duration
}

func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.Window, "window", time.Minute,
		"Time span of one Parquet object. Must divide 24h; windows are aligned to it in UTC.")
	fs.DurationVar(&c.Lag, "lag", 3*time.Second,
		"How far behind now the shipper reads, so that lines reach Loki first. Lines that reach Loki later than this after their timestamp are not shipped.")
	fs.DurationVar(&c.FlushInterval, "flush-interval", 2*time.Second,
		"Once caught up, how often to ship the lines older than --lag: each flush writes the part of the current window since the last one as its own object. 0: only whole windows, each --lag after it ends.")
	fs.StringVar(&c.Start, "start", "1h",
		`Where to begin when there is no checkpoint (and for --once): an RFC 3339 time ("2024-01-02T10:00:00Z") or a duration before now ("24h").`)
	fs.StringVar(&c.End, "end", "",
		`With --once: where to stop, as --start (default: now). Without --once the shipper follows Loki forever.`)
	fs.BoolVar(&c.Once, "once", false,
		"Ship the windows between --start and --end, then exit. Neither reads nor writes the checkpoint, so it can backfill beside a running shipper.")
	fs.IntVar(&c.MaxLineBytes, "max-line-bytes", 256<<10,
		"Longer lines are truncated to this many bytes and flagged (column truncated).")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 25*time.Second,
		"On SIGTERM, how long to finish, write and checkpoint the window in hand before giving it up (it is shipped again after a restart).")
}

func (c *Config) Validate() error {
	var errs []error
	switch {
	case c.Window < time.Second || c.Window%time.Second != 0:
		errs = append(errs, fmt.Errorf("--window must be a whole number of seconds, at least 1s; got %s", c.Window))
	case (24*time.Hour)%c.Window != 0:
		errs = append(errs, fmt.Errorf("--window %s must divide 24h (e.g. 1m, 5m, 15m, 1h) so that no window straddles two days", c.Window))
	}
	if c.Lag < 0 {
		errs = append(errs, fmt.Errorf("--lag must not be negative, got %s", c.Lag))
	}
	if c.FlushInterval != 0 && c.FlushInterval < time.Second {
		errs = append(errs, fmt.Errorf("--flush-interval must be 0 (whole windows only) or at least 1s (object names have whole seconds), got %s", c.FlushInterval))
	}
	now := time.Now()
	if _, err := ParseTime(c.Start, now); err != nil {
		errs = append(errs, fmt.Errorf("--start: %w", err))
	}
	if c.End != "" {
		if !c.Once {
			errs = append(errs, errors.New("--end needs --once: without it the shipper follows Loki forever"))
		} else if _, err := ParseTime(c.End, now); err != nil {
			errs = append(errs, fmt.Errorf("--end: %w", err))
		}
	}
	if c.MaxLineBytes < 64 {
		errs = append(errs, fmt.Errorf("--max-line-bytes must be at least 64, got %d", c.MaxLineBytes))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout must be positive, got %s", c.ShutdownTimeout))
	}
	return errors.Join(errs...)
}

// ParseTime reads an RFC 3339 time or a duration before now.
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil && d >= 0 {
		return now.Add(-d).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2024-01-02T10:00:00Z) nor a duration before now (24h)", s)
}
