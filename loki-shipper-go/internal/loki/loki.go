// Package loki reads a LogQL log query out of Loki, in timestamp order,
// through /loki/api/v1/query_range.
package loki

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"monologue.dev/loki-shipper/internal/logline"
	"monologue.dev/loki-shipper/internal/retry"
)

// Config says which Loki to read and what.
type Config struct {
	URL      string
	Query    string
	TenantID string
	Limit    int
	Timeout  time.Duration
	Format   string
	MaxRange time.Duration
}

const (
	FormatJSON    = "json"
	FormatParquet = "parquet"
)

func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "loki.url", "", `Loki base URL, e.g. "http://loki-gateway.loki:3100" (required).`)
	fs.StringVar(&c.Query, "loki.query", "", `LogQL log query: a stream selector and optional pipeline, e.g. '{namespace="prod", app="api"} |= "GET"' (required).`)
	fs.StringVar(&c.TenantID, "loki.tenant-id", "", "X-Scope-OrgID to send, for a multi-tenant Loki.")
	fs.IntVar(&c.Limit, "loki.limit", 5000,
		"Lines per query_range request. Larger is faster; Loki refuses more than its max_entries_limit_per_query (default 5000), and the shipper then lowers this to Loki's maximum.")
	fs.DurationVar(&c.Timeout, "loki.timeout", 2*time.Minute, "Timeout of one query_range request; a request that times out is retried.")
	fs.DurationVar(&c.MaxRange, "loki.max-range", 24*time.Hour,
		"Longest time range of one query_range request: a longer range (a --start long ago) is read in parts, since Loki refuses ranges over its max_query_length (721h by default). 0: no limit.")
	fs.StringVar(&c.Format, "loki.format", FormatJSON,
		`Response format to ask Loki for: "json", or "parquet" (needs Loki with -frontend.support-parquet-encoding; a Loki without it answers JSON, which is read too).`)
}

func (c *Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("--loki.url is required"))
	} else if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("--loki.url %q must be an http:// or https:// URL", c.URL))
	}
	if q := strings.TrimSpace(c.Query); q == "" {
		errs = append(errs, errors.New("--loki.query is required"))
	} else if !strings.HasPrefix(q, "{") {
		errs = append(errs, fmt.Errorf("--loki.query %q must start with a stream selector such as {app=\"api\"}", c.Query))
	}
	if c.Limit < 1 {
		errs = append(errs, fmt.Errorf("--loki.limit must be at least 1, got %d", c.Limit))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--loki.timeout must be positive, got %s", c.Timeout))
	}
	if c.MaxRange < 0 {
		errs = append(errs, fmt.Errorf("--loki.max-range must not be negative, got %s", c.MaxRange))
	}
	if c.Format != FormatJSON && c.Format != FormatParquet {
		errs = append(errs, fmt.Errorf("--loki.format must be json or parquet, got %q", c.Format))
	}
	return errors.Join(errs...)
}

// Stream is one set of labels. Entries of a stream share one *Stream.
type Stream struct {
	Labels map[string]string
	// IDPrefix is the labels' part of every line_id in the stream.
	IDPrefix []byte
}

// Entry is one log line.
type Entry struct {
	Timestamp int64 // ns since the epoch
	Stream    *Stream
	Line      string
}

// Client reads from Loki. OnAttempt, when set, hears the outcome of every
// request (nil on success); OnRetry hears each failure that will be retried.
type Client struct {
	cfg       Config
	http      *http.Client
	retry     retry.Config
	log       *slog.Logger
	limit     int
	streams   map[string]*Stream
	body      bytes.Buffer // the response being decoded, reused from page to page
	spans     []span
	OnAttempt func(err error)
	OnRetry   func(attempt int, err error, wait time.Duration)
}

func NewClient(cfg Config, retryCfg retry.Config, log *slog.Logger) *Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Loki answers uncompressed unless configured otherwise; asking for gzip
	// would only spend CPU on both sides of a fast link.
	transport.DisableCompression = true
	return &Client{
		cfg:     cfg,
		http:    &http.Client{Transport: transport},
		retry:   retryCfg,
		log:     log,
		limit:   cfg.Limit,
		streams: map[string]*Stream{},
	}
}

// Read passes every entry with from <= timestamp < to to fn, in timestamp
// order, in batches (fn must not keep the slice). It pages forward: each
// page starts at the last timestamp of the one before, because several
// lines can share that timestamp and the page limit may have cut between
// them; the lines at that timestamp already passed on are skipped.
// Failed requests are retried until they succeed or ctx ends.
//
// The next page is fetched while fn works on the one before.
func (c *Client) Read(ctx context.Context, from, to int64, fn func([]Entry) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []Entry, 1)
	done := make(chan error, 1)
	go func() {
		defer close(batches)
		done <- c.readRanges(ctx, from, to, func(b []Entry) error {
			select {
			case batches <- b:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	for b := range batches {
		if err := fn(b); err != nil {
			cancel()
			for range batches {
			}
			<-done
			return err
		}
	}
	return <-done
}

// readRanges reads [from, to) as consecutive ranges of at most --loki.max-range.
func (c *Client) readRanges(ctx context.Context, from, to int64, fn func([]Entry) error) error {
	for from < to {
		end := to
		if span := int64(c.cfg.MaxRange); span > 0 && end-from > span {
			end = from + span
		}
		if err := c.readPages(ctx, from, end, fn); err != nil {
			return err
		}
		from = end
	}
	return nil
}

// firstSpan is the time range of a range's first request.
const firstSpan = int64(time.Minute)

// readPages asks for [cursor, cursor+span), not [cursor, to): Loki cuts a
// query_range at every split_queries_by_interval (1h by default), runs the
// parts in parallel, each up to the limit, and cancels the parts a full
// page does not need; a cancelled part takes its querier's connection to
// the scheduler down with it, and the reconnect stalled about one catch-up
// in two by ~4 s (Loki 3.7.8; a request of one day ran up to 24 parts, all
// but one wasted). The span follows the lines: after a full page it is the
// time that page covered, doubled (at least firstSpan), so that the next
// page is likely full again; after a short one it doubles.
func (c *Client) readPages(ctx context.Context, from, to int64, fn func([]Entry) error) error {
	cursor, span := from, firstSpan
	seen := map[entryKey]struct{}{} // entries at timestamp == cursor already passed on
	for cursor < to {
		stop := to
		if to-cursor > span {
			stop = cursor + span
		}
		page, err := c.page(ctx, cursor, stop, 0)
		if err != nil {
			return err
		}
		full := len(page) >= c.limit
		var last int64
		if len(page) > 0 {
			last = page[len(page)-1].Timestamp
		}
		if full && last == cursor && allSeen(page, seen) {
			// More lines share this nanosecond than a page holds: read the
			// nanosecond alone with a limit large enough for all of it.
			if err := c.readOneNanosecond(ctx, cursor, seen, fn); err != nil {
				return err
			}
			cursor, seen = cursor+1, map[entryKey]struct{}{}
			continue
		}
		fresh := make([]Entry, 0, len(page))
		for _, e := range page {
			if e.Timestamp == cursor {
				if _, dup := seen[keyOf(e)]; dup {
					continue
				}
			}
			fresh = append(fresh, e)
		}
		if full {
			if last != cursor {
				// The old boundary is passed; only the new one matters now.
				seen = map[entryKey]struct{}{}
			}
			for i := len(page) - 1; i >= 0 && page[i].Timestamp == last; i-- {
				seen[keyOf(page[i])] = struct{}{}
			}
			span = max(2*(last-cursor), firstSpan)
			cursor = last
		} else {
			// All of [cursor, stop) is read, and nothing at stop yet.
			cursor, seen = stop, map[entryKey]struct{}{}
			if span <= (to-cursor)/2 {
				span *= 2
			}
		}
		if len(fresh) > 0 {
			if err := fn(fresh); err != nil {
				return err
			}
		}
	}
	return nil
}

// entryKey identifies an entry among those of one timestamp. Loki keeps one
// copy of identical lines in one stream at one timestamp, so stream and line
// tell them apart.
type entryKey struct {
	stream string // IDPrefix: the labels, canonically
	line   string
}

func keyOf(e Entry) entryKey { return entryKey{string(e.Stream.IDPrefix), e.Line} }

func allSeen(page []Entry, seen map[entryKey]struct{}) bool {
	for _, e := range page {
		if _, ok := seen[keyOf(e)]; !ok {
			return false
		}
	}
	return true
}

const maxLimit = 1 << 24

func (c *Client) readOneNanosecond(ctx context.Context, ts int64, seen map[entryKey]struct{}, fn func([]Entry) error) error {
	for limit := c.limit * 2; ; limit *= 2 {
		page, err := c.page(ctx, ts, ts+1, limit)
		if err != nil {
			return fmt.Errorf("%w (more than %d lines share the timestamp %d; raise Loki's max_entries_limit_per_query)", err, c.limit, ts)
		}
		if len(page) < limit || limit >= maxLimit {
			var fresh []Entry
			for _, e := range page {
				if _, dup := seen[keyOf(e)]; !dup {
					fresh = append(fresh, e)
				}
			}
			if len(fresh) == 0 {
				return nil
			}
			return fn(fresh)
		}
	}
}

// page fetches up to limit entries of [from, to), sorted by timestamp;
// limit 0 is the client's page size, which a retry may have lowered.
func (c *Client) page(ctx context.Context, from, to int64, limit int) ([]Entry, error) {
	var entries []Entry
	err := retry.Do(ctx, c.retry, func(ctx context.Context) error {
		var err error
		n := limit
		if n == 0 {
			n = c.limit
		}
		entries, err = c.fetch(ctx, from, to, n)
		if errors.Is(err, errTooSlow) && limit == 0 && c.limit > 1 {
			// A page too large to answer in time (or, behind a query
			// frontend, too large for its gRPC messages) fails the same way
			// on every retry: ask for smaller pages.
			c.limit = max(c.limit/2, 1)
			c.log.Warn("query_range timed out; halving the page size", "limit", c.limit)
		}
		if c.OnAttempt != nil {
			c.OnAttempt(err)
		}
		return err
	}, c.OnRetry)
	return entries, err
}

var errTooSlow = errors.New("query_range timed out")

var limitRefused = regexp.MustCompile(`max_entries_limit_per_query \((\d+) > (\d+)\)`)

func (c *Client) fetch(ctx context.Context, from, to int64, limit int) ([]Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	q := url.Values{}
	q.Set("query", c.cfg.Query)
	q.Set("start", strconv.FormatInt(from, 10))
	q.Set("end", strconv.FormatInt(to, 10))
	q.Set("limit", strconv.Itoa(limit))
	q.Set("direction", "forward")
	u := strings.TrimRight(c.cfg.URL, "/") + "/loki/api/v1/query_range?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if c.cfg.Format == FormatParquet {
		// Loki compares this header verbatim: no list, no quality values.
		req.Header.Set("Accept", parquetType)
	}
	if c.cfg.TenantID != "" {
		req.Header.Set("X-Scope-OrgID", c.cfg.TenantID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil && context.Cause(ctx) != context.DeadlineExceeded {
			return nil, err // the caller is stopping
		}
		if ctx.Err() != nil {
			err = errors.Join(errTooSlow, err)
		}
		return nil, retry.Transient(fmt.Errorf("loki query_range: %w", err), 0)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		err := fmt.Errorf("loki query_range: %s: %s", resp.Status, strings.TrimSpace(string(body)))
		if resp.StatusCode == http.StatusGatewayTimeout {
			err = errors.Join(errTooSlow, err)
		}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			return nil, retry.Transient(err, retryAfter(resp.Header.Get("Retry-After")))
		}
		if m := limitRefused.FindStringSubmatch(string(body)); m != nil && limit == c.limit {
			if max, _ := strconv.Atoi(m[2]); max > 0 && max < c.limit {
				c.log.Warn("Loki refuses the configured --loki.limit; using its maximum", "limit", c.limit, "loki_max", max)
				c.limit = max
				return nil, retry.Transient(err, 0)
			}
		}
		return nil, err
	}
	var entries []Entry
	if strings.HasPrefix(resp.Header.Get("Content-Type"), parquetType) {
		entries, err = c.decodeParquet(resp.Body)
	} else {
		entries, err = c.decodeJSON(resp.Body, limit)
	}
	if err != nil {
		// A body cut short by a dropped connection is the network's fault.
		if ctx.Err() == nil || context.Cause(ctx) == context.DeadlineExceeded {
			return nil, retry.Transient(fmt.Errorf("loki query_range response: %w", err), 0)
		}
		return nil, err
	}
	// Loki groups entries by stream; the shipper needs one timeline. Within a
	// stream entries are already in order, and the sort is stable.
	slices.SortStableFunc(entries, func(a, b Entry) int {
		switch {
		case a.Timestamp < b.Timestamp:
			return -1
		case a.Timestamp > b.Timestamp:
			return 1
		}
		return 0
	})
	return entries, nil
}

func retryAfter(v string) time.Duration {
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}

// stream returns the one *Stream for these labels, so that entries of a
// stream share their labels map and line_id prefix across pages.
func (c *Client) stream(labels map[string]string) *Stream {
	prefix := logline.IDPrefix(labels)
	if s, ok := c.streams[string(prefix)]; ok {
		return s
	}
	if len(c.streams) > 100_000 {
		c.streams = map[string]*Stream{} // bound the cache on high churn
	}
	s := &Stream{Labels: labels, IDPrefix: prefix}
	c.streams[string(prefix)] = s
	return s
}
