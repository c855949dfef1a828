// Package shipper moves one LogQL query's lines from a Source to Parquet
// objects in a Sink, one object per aligned time window, and keeps a
// checkpoint beside them.
//
// Exactly once rests on three rules: a window's object name depends only on
// the window, so writing it again replaces it; a window is written only once
// it is complete (its end is --lag in the past and every line before its end
// was read); and the checkpoint moves past a window only after its object is
// written. A crash anywhere repeats at most the windows after the
// checkpoint, whose objects are then overwritten.
package shipper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"monologue.dev/loki-shipper/internal/checkpoint"
	"monologue.dev/loki-shipper/internal/logline"
	"monologue.dev/loki-shipper/internal/loki"
	"monologue.dev/loki-shipper/internal/parquet"
	"monologue.dev/loki-shipper/internal/retry"
	"monologue.dev/loki-shipper/internal/sink"
	"monologue.dev/loki-shipper/internal/telemetry"
)

// Source yields every entry with from <= timestamp < to, in timestamp order.
// loki.Client is the real one.
type Source interface {
	Read(ctx context.Context, from, to int64, fn func([]loki.Entry) error) error
}

// Shipper is one running shipper. Fill every field, then call Run.
type Shipper struct {
	Config  Config
	Parquet parquet.Config
	Retry   retry.Config
	Query   string // recorded in the checkpoint
	Source  Source
	Sink    sink.Sink
	Metrics *telemetry.Metrics
	Health  *telemetry.Health
	Log     *slog.Logger
	Now     func() time.Time // for tests; time.Now when nil

	lastObject string // the last window written, for the checkpoint
}

// errStopped ends a read early once the window in hand is written.
var errStopped = errors.New("stopped")

// Run ships until ctx ends (abort: nothing more is written), stop is closed
// (graceful: the window in hand is finished, written and checkpointed), or,
// with --once, the range is shipped. A stop is not an error.
func (s *Shipper) Run(ctx context.Context, stop <-chan struct{}) error {
	now := s.now()
	start, err := ParseTime(s.Config.Start, now)
	if err != nil {
		return err
	}
	cursor := s.alignDown(start)
	store := checkpoint.Store{Sink: s.Sink}
	if !s.Config.Once {
		var cp checkpoint.Checkpoint
		var found bool
		err := retry.Do(ctx, s.Retry, func(ctx context.Context) error {
			var err error
			cp, found, err = store.Load(ctx)
			s.Health.Observe("s3", err)
			return err
		}, s.RetryObserver("s3"))
		if err != nil {
			return fmt.Errorf("loading the checkpoint: %w", err)
		}
		if found {
			if err := cp.Compatible(s.Query, s.Config.Window); err != nil {
				return err
			}
			cursor, s.lastObject = cp.CompleteUntil, cp.LastObject
			s.Metrics.SetCompleteUntil(cursor)
			s.Log.Info("resuming from checkpoint", "complete_until", cursor, "last_object", cp.LastObject)
		} else {
			s.Log.Info("no checkpoint: starting", "from", cursor)
		}
	}
	s.Health.SetStarted()

	var end time.Time
	if s.Config.Once {
		end = now
		if s.Config.End != "" {
			if end, err = ParseTime(s.Config.End, now); err != nil {
				return err
			}
		}
		end = s.alignUp(end)
	}
	for {
		closed := s.alignDown(s.now().Add(-s.Config.Lag))
		target := closed
		if s.Config.Once && end.Before(target) {
			target = end
		}
		if target.After(cursor) {
			next, err := s.ship(ctx, stop, cursor, target, store)
			cursor = next
			if errors.Is(err, errStopped) {
				s.Log.Info("stopped", "complete_until", cursor)
				return nil
			}
			if err != nil {
				if ctx.Err() != nil {
					s.Log.Warn("shutdown timeout: the window in hand is given up and will be shipped after a restart", "complete_until", cursor, "error", err)
					return nil
				}
				return err
			}
		}
		if s.Config.Once {
			if cursor.Before(end) && s.Config.End != "" {
				s.Log.Warn("--once: windows not closed yet (see --lag) are not shipped", "shipped_until", cursor, "end", end)
			}
			s.Log.Info("done", "complete_until", cursor)
			return nil
		}
		// Sleep until the next window closes.
		wake := cursor.Add(s.Config.Window).Add(s.Config.Lag)
		timer := time.NewTimer(max(wake.Sub(s.now()), 0))
		select {
		case <-stop:
			timer.Stop()
			s.Log.Info("stopped", "complete_until", cursor)
			return nil
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

func (s *Shipper) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Shipper) alignDown(t time.Time) time.Time { return t.Truncate(s.Config.Window).UTC() }

func (s *Shipper) alignUp(t time.Time) time.Time {
	if d := s.alignDown(t); !d.Equal(t) {
		return d.Add(s.Config.Window)
	}
	return t.UTC()
}

// RetryObserver counts and logs the retries of requests to target.
func (s *Shipper) RetryObserver(target string) func(int, error, time.Duration) {
	return func(attempt int, err error, wait time.Duration) {
		s.Metrics.Retries.WithLabelValues(target).Inc()
		level := slog.LevelInfo
		if attempt >= 3 {
			level = slog.LevelWarn
		}
		s.Log.Log(context.Background(), level, "retrying", "target", target, "attempt", attempt, "wait", wait.String(), "error", err.Error())
	}
}

// ObjectKey is the name of a window's object under the sink's prefix.
func ObjectKey(start, end time.Time) string {
	const layout = "20060102T150405Z"
	start, end = start.UTC(), end.UTC()
	return fmt.Sprintf("dt=%s/%s_%s.parquet", start.Format("2006-01-02"), start.Format(layout), end.Format(layout))
}

// upload is one step for the uploader: write an object (unless key is
// empty), then move the checkpoint to until.
type upload struct {
	key   string
	body  []byte
	lines int
	bytes int
	until time.Time
}

// ship ships every window in [from, to) and returns how far it got.
// Encoding runs here; uploads and checkpoints run in a second goroutine so
// that the next window is read and encoded while one is uploaded.
func (s *Shipper) ship(ctx context.Context, stop <-chan struct{}, from, to time.Time, store checkpoint.Store) (time.Time, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	uploads := make(chan upload, 1)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		complete = from
	)
	wg.Go(func() {
		for u := range uploads {
			if err := s.upload(ctx, u, store); err != nil {
				cancel(err)
				for range uploads { // let the producer finish
				}
				return
			}
			mu.Lock()
			complete = u.until
			mu.Unlock()
		}
	})

	enc := &encoder{s: s}
	send := func(u upload) error {
		select {
		case uploads <- u:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	finishWindow := func() error {
		if !enc.open {
			return nil
		}
		u, err := enc.finish()
		if err != nil {
			return err
		}
		return send(u)
	}
	stopping := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	readErr := s.Source.Read(ctx, from.UnixNano(), to.UnixNano(), func(entries []loki.Entry) error {
		for i := range entries {
			e := &entries[i]
			ws := time.Unix(0, e.Timestamp).Truncate(s.Config.Window).UTC()
			if !enc.open || !ws.Equal(enc.start) {
				if err := finishWindow(); err != nil {
					return err
				}
				if stopping() {
					return errStopped
				}
				enc.begin(ws)
			}
			if err := enc.add(e); err != nil {
				return err
			}
		}
		return nil
	})
	if readErr == nil {
		readErr = finishWindow()
		if readErr == nil {
			// Windows without lines have no object, but the checkpoint moves past them.
			readErr = send(upload{until: to})
		}
	}
	close(uploads)
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(readErr, errStopped) {
		readErr = errors.Join(readErr, cause)
	}
	mu.Lock()
	defer mu.Unlock()
	return complete, readErr
}

// upload writes one window and then the checkpoint, each retried until it
// succeeds: the checkpoint never gets ahead of the data.
func (s *Shipper) upload(ctx context.Context, u upload, store checkpoint.Store) error {
	if u.key != "" {
		err := retry.Do(ctx, s.Retry, func(ctx context.Context) error {
			err := s.Sink.Put(ctx, u.key, u.body)
			s.Health.Observe("s3", err)
			return err
		}, s.RetryObserver("s3"))
		if err != nil {
			return fmt.Errorf("writing %s: %w", u.key, err)
		}
		s.Metrics.Windows.Inc()
		s.Metrics.Lines.Add(float64(u.lines))
		s.Metrics.Bytes.Add(float64(u.bytes))
		s.Metrics.ObjectBytes.Add(float64(len(u.body)))
		s.Log.Info("window written", "object", u.key, "lines", u.lines, "bytes", len(u.body))
		s.lastObject = u.key
	}
	if !s.Config.Once {
		cp := checkpoint.Checkpoint{Query: s.Query, Window: s.Config.Window.String(), CompleteUntil: u.until, LastObject: s.lastObject}
		err := retry.Do(ctx, s.Retry, func(ctx context.Context) error {
			err := store.Save(ctx, cp)
			s.Health.Observe("s3", err)
			return err
		}, s.RetryObserver("s3"))
		if err != nil {
			return fmt.Errorf("saving the checkpoint: %w", err)
		}
	}
	s.Metrics.SetCompleteUntil(u.until)
	return nil
}

// encoder turns the entries of one window into a Parquet object, a batch
// of rows at a time.
type encoder struct {
	s      *Shipper
	open   bool
	start  time.Time
	buf    bytes.Buffer
	w      *parquet.Writer
	rows   []parquet.Row
	lines  int
	bytes  int
	hasher logline.Hasher
}

const rowBatch = 1024

func (e *encoder) begin(start time.Time) {
	e.open, e.start = true, start
	e.buf = bytes.Buffer{}
	e.w = parquet.NewWriter(&e.buf, e.s.Parquet)
	e.rows, e.lines, e.bytes = e.rows[:0], 0, 0
}

func (e *encoder) add(entry *loki.Entry) error {
	p := logline.Parse(entry.Line, e.s.Config.MaxLineBytes)
	if p.Truncated {
		e.s.Metrics.Truncated.Inc()
	}
	if p.RepairedUTF8 {
		e.s.Metrics.Repaired.Inc()
	}
	e.rows = append(e.rows, parquet.Row{
		Timestamp:    entry.Timestamp,
		Labels:       entry.Stream.Labels,
		Line:         p.Line,
		LineID:       e.hasher.ID(entry.Stream.IDPrefix, entry.Timestamp, entry.Line),
		Level:        p.Level,
		Fields:       p.Fields,
		Truncated:    p.Truncated,
		RepairedUTF8: p.RepairedUTF8,
	})
	e.lines++
	e.bytes += len(entry.Line)
	if len(e.rows) >= rowBatch {
		return e.flushRows()
	}
	return nil
}

func (e *encoder) flushRows() error {
	if len(e.rows) == 0 {
		return nil
	}
	err := e.w.Write(e.rows)
	clear(e.rows) // drop references to lines already encoded
	e.rows = e.rows[:0]
	return err
}

func (e *encoder) finish() (upload, error) {
	e.open = false
	if err := e.flushRows(); err != nil {
		return upload{}, err
	}
	if err := e.w.Close(); err != nil {
		return upload{}, err
	}
	end := e.start.Add(e.s.Config.Window)
	return upload{key: ObjectKey(e.start, end), body: e.buf.Bytes(), lines: e.lines, bytes: e.bytes, until: end}, nil
}
