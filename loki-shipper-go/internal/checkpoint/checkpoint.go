// Package checkpoint records how far a shipper has got, as one JSON object
// beside the data it describes. It is saved only after the window it names
// has been written, and an S3 PUT replaces an object atomically, so a reader
// sees either the old checkpoint or the new one.
package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"monologue.dev/loki-shipper/internal/sink"
)

// Key is the checkpoint's key under the sink prefix. The leading underscore
// makes Parquet dataset readers (pyarrow, DuckDB globs on *.parquet) skip it.
const Key = "_checkpoint.json"

const version = 1

// Checkpoint is the durable progress of one shipper.
//
// Windows are half-open [start, end), exactly like query_range's
// [start, end), so everything before CompleteUntil is in the objects and
// nothing at or after it is: that instant is the whole boundary state, and
// the next run resumes its query there with no line dropped or repeated.
type Checkpoint struct {
	Version       int       `json:"version"`
	Query         string    `json:"query"`
	Window        string    `json:"window"`
	CompleteUntil time.Time `json:"complete_until"`
	// LastObject is the key of the last window written (informational).
	LastObject string    `json:"last_object,omitempty"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Compatible refuses to resume with a different query or window size: the
// objects already written would overlap the new ones or hold other lines.
func (c Checkpoint) Compatible(query string, window time.Duration) error {
	if c.Query != query {
		return fmt.Errorf("the checkpoint was written for query %q, not %q: ship a different query to a different --s3.prefix, or delete %s to start over", c.Query, query, Key)
	}
	if c.Window != window.String() {
		return fmt.Errorf("the checkpoint was written with --window=%s, not %s: object names would overlap; use a different --s3.prefix, or delete %s to start over", c.Window, window, Key)
	}
	return nil
}

// Store loads and saves the checkpoint in a sink.
type Store struct{ Sink sink.Sink }

// Load returns the checkpoint, or found=false when there is none yet.
func (s Store) Load(ctx context.Context) (cp Checkpoint, found bool, err error) {
	body, err := s.Sink.Get(ctx, Key)
	if errors.Is(err, sink.ErrNotFound) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, err
	}
	if err := json.Unmarshal(body, &cp); err != nil {
		return Checkpoint{}, false, fmt.Errorf("checkpoint %s/%s is not valid JSON (%w); delete it to start over from --start", s.Sink.Describe(), Key, err)
	}
	if cp.Version != version {
		return Checkpoint{}, false, fmt.Errorf("checkpoint %s/%s has version %d; this shipper reads version %d", s.Sink.Describe(), Key, cp.Version, version)
	}
	return cp, true, nil
}

// Save replaces the checkpoint.
func (s Store) Save(ctx context.Context, cp Checkpoint) error {
	cp.Version = version
	cp.UpdatedAt = time.Now().UTC()
	cp.CompleteUntil = cp.CompleteUntil.UTC()
	body, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return err
	}
	return s.Sink.Put(ctx, Key, body)
}
