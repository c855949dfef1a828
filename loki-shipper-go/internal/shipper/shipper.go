// Package shipper moves one LogQL query's lines from a Source to Parquet
// objects in a Sink and keeps a checkpoint beside them.
//
// Time is cut into windows aligned to --window. While catching up, each
// window with lines becomes one object. Once caught up, every
// --flush-interval the lines older than --lag are shipped: the part of the
// current window since the last flush becomes an object of its own, so a
// line is on S3 seconds after it reached Loki. An object never spans two
// windows, and its name is its [start, end).
//
// Exactly once rests on four rules. An object is written only after every
// line before its end was read. The checkpoint moves past an object only
// after the object is written. Before an object is written, the checkpoint
// is moved to the object's start (what lies between was read and holds no
// lines), so at most one object lies beyond the checkpoint, and it starts
// exactly there. A restart adopts that object (its end becomes the
// checkpoint) instead of writing one that overlaps it.
package shipper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
	// After waits for the next flush; time.After when nil (tests pass a fake clock's).
	After func(time.Duration) <-chan time.Time

	lastObject string    // the last object written, for the checkpoint
	saved      time.Time // complete_until of the last checkpoint written
}

// errStopped ends a read early once the window in hand is written.
var errStopped = errors.New("stopped")

// Run ships until ctx ends (abort: nothing more is written), stop is closed
// (graceful: the object in hand is finished, written and checkpointed), or,
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
			s.saved, s.lastObject = cp.CompleteUntil, cp.LastObject
			s.Log.Info("resuming from checkpoint", "complete_until", cp.CompleteUntil, "last_object", cp.LastObject)
			if cursor, err = s.adopt(ctx, cp.CompleteUntil, store); err != nil {
				return err
			}
			s.Metrics.SetCompleteUntil(cursor)
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
		target := s.frontier(s.now())
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
					s.Log.Warn("shutdown timeout: the object in hand is given up and will be shipped after a restart", "complete_until", cursor, "error", err)
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
		timer := s.after(max(s.nextFlush(cursor).Sub(s.now()), 0))
		select {
		case <-stop:
			// Progress through lineless time is checkpointed lazily (see upload): save it now.
			if cursor.After(s.saved) {
				if err := s.saveCheckpoint(ctx, store, cursor); err != nil && ctx.Err() == nil {
					return err
				}
			}
			s.Log.Info("stopped", "complete_until", cursor)
			return nil
		case <-ctx.Done():
			return nil
		case <-timer:
		}
	}
}

// frontier is how far the shipper may read at now: everything --lag old,
// in whole seconds (object names have seconds), or only whole windows with
// --once or --flush-interval=0.
func (s *Shipper) frontier(now time.Time) time.Time {
	if s.Config.Once || s.Config.FlushInterval == 0 {
		return s.alignDown(now.Add(-s.Config.Lag))
	}
	return now.Add(-s.Config.Lag).Truncate(time.Second).UTC()
}

// nextFlush is when the frontier will have moved on from cursor.
func (s *Shipper) nextFlush(cursor time.Time) time.Time {
	if s.Config.FlushInterval == 0 {
		return cursor.Add(s.Config.Window).Add(s.Config.Lag)
	}
	return cursor.Add(s.Config.FlushInterval).Add(s.Config.Lag)
}

func (s *Shipper) after(d time.Duration) <-chan time.Time {
	if s.After != nil {
		return s.After(d)
	}
	return time.After(d)
}

// adopt returns where a resumed shipper continues: after the object that a
// previous run wrote at the checkpoint but did not get to checkpoint (it was
// killed in between), or at the checkpoint itself. Writing that range again
// would give an object overlapping the first one (a flush ends wherever the
// clock was), so the object is kept and checkpointed instead.
func (s *Shipper) adopt(ctx context.Context, from time.Time, store checkpoint.Store) (time.Time, error) {
	var keys []string
	err := retry.Do(ctx, s.Retry, func(ctx context.Context) error {
		var err error
		keys, err = s.Sink.List(ctx, objectPrefix(from))
		s.Health.Observe("s3", err)
		return err
	}, s.RetryObserver("s3"))
	if err != nil {
		return from, fmt.Errorf("listing the objects at the checkpoint: %w", err)
	}
	until, adopted := from, ""
	for _, key := range keys {
		if end, ok := objectEnd(key); ok && end.After(until) {
			until, adopted = end, key
		}
	}
	if adopted == "" {
		return from, nil
	}
	if len(keys) > 1 {
		// Only a --once run over the followed range writes a second object here.
		s.Log.Warn("several objects start at the checkpoint; adopting the longest", "objects", keys, "adopted", adopted)
	}
	s.lastObject = adopted
	if err := s.saveCheckpoint(ctx, store, until); err != nil {
		return from, err
	}
	s.Log.Info("adopted the object written before the restart", "object", adopted, "complete_until", until)
	return until, nil
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

const keyTimeLayout = "20060102T150405Z"

// ObjectKey is the name of the object of [start, end) under the sink's prefix.
func ObjectKey(start, end time.Time) string {
	return objectPrefix(start) + end.UTC().Format(keyTimeLayout) + ".parquet"
}

// objectPrefix is the start of the names of the objects starting at start.
func objectPrefix(start time.Time) string {
	start = start.UTC()
	return fmt.Sprintf("dt=%s/%s_", start.Format("2006-01-02"), start.Format(keyTimeLayout))
}

// objectEnd reads the end of an object's range from its name.
func objectEnd(key string) (time.Time, bool) {
	name, ok := strings.CutSuffix(key[strings.LastIndexByte(key, '_')+1:], ".parquet")
	if !ok {
		return time.Time{}, false
	}
	end, err := time.Parse(keyTimeLayout, name)
	return end, err == nil
}

// upload is one step for the uploader: write an object of [start, until)
// (unless key is empty), then move the checkpoint to until.
type upload struct {
	key   string
	body  []byte
	lines int
	bytes int
	start time.Time
	until time.Time
}

// ship ships every line in [from, to), one object per window it has lines
// in (cut to [from, to)), and returns how far it got.
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
			if !enc.open || !ws.Equal(enc.window) {
				if err := finishWindow(); err != nil {
					return err
				}
				if stopping() {
					return errStopped
				}
				enc.begin(ws, latest(ws, from), earliest(ws.Add(s.Config.Window), to))
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
			// Time without lines has no object, but the checkpoint moves past it.
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

// upload writes one object and then the checkpoint, each retried until it
// succeeds: the checkpoint never gets ahead of the data.
func (s *Shipper) upload(ctx context.Context, u upload, store checkpoint.Store) error {
	if u.key != "" {
		if !s.Config.Once && !u.start.Equal(s.saved) {
			// [saved, start) was read and holds no lines: checkpoint it first, so
			// that this object is the only one beyond the checkpoint (see adopt).
			if err := s.saveCheckpoint(ctx, store, u.start); err != nil {
				return err
			}
		}
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
		s.Log.Info("object written", "object", u.key, "lines", u.lines, "bytes", len(u.body))
		s.lastObject = u.key
	}
	// Progress through lineless time is saved once per window, not per flush:
	// a restart reads that time again and finds nothing (or late lines).
	if !s.Config.Once && (u.key != "" || s.alignDown(u.until).After(s.alignDown(s.saved))) {
		if err := s.saveCheckpoint(ctx, store, u.until); err != nil {
			return err
		}
	}
	s.Metrics.SetCompleteUntil(u.until)
	return nil
}

func (s *Shipper) saveCheckpoint(ctx context.Context, store checkpoint.Store, until time.Time) error {
	cp := checkpoint.Checkpoint{Query: s.Query, Window: s.Config.Window.String(), CompleteUntil: until, LastObject: s.lastObject}
	err := retry.Do(ctx, s.Retry, func(ctx context.Context) error {
		err := store.Save(ctx, cp)
		s.Health.Observe("s3", err)
		return err
	}, s.RetryObserver("s3"))
	if err != nil {
		return fmt.Errorf("saving the checkpoint: %w", err)
	}
	s.saved = until
	return nil
}

// encoder turns the entries of one object into Parquet, a batch of rows at
// a time.
type encoder struct {
	s      *Shipper
	open   bool
	window time.Time // start of the aligned window the object lies in
	start  time.Time
	end    time.Time
	buf    bytes.Buffer
	w      *parquet.Writer
	rows   []parquet.Row
	lines  int
	bytes  int
	hasher logline.Hasher
}

const rowBatch = 1024

func (e *encoder) begin(window, start, end time.Time) {
	e.open, e.window, e.start, e.end = true, window, start, end
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
	return upload{key: ObjectKey(e.start, e.end), body: e.buf.Bytes(), lines: e.lines, bytes: e.bytes,
		start: e.start, until: e.end}, nil
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
