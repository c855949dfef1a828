package loki

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	pq "github.com/parquet-go/parquet-go"
)

const parquetType = "application/vnd.apache.parquet"

// decodeJSON reads a query_range response: the lines of each stream in
// the order Loki sent them, streams one after the other.
//
// Every line of the page is copied into one block of text that becomes one
// string, and the entries' lines are substrings of it: a page costs a few
// allocations, not one per line. A line keeps its whole page alive while it
// is referenced, which is until its batch of rows is encoded.
func (c *Client) decodeJSON(body io.Reader, limit int) ([]Entry, error) {
	c.body.Reset()
	if _, err := c.body.ReadFrom(body); err != nil {
		return nil, err
	}
	s := scanner{b: c.body.Bytes()}
	var (
		status, resultType string
		text               strings.Builder
		unquoted           []byte
		spans              = c.spans[:0]
	)
	entries := make([]Entry, 0, min(limit, 1<<16))
	text.Grow(len(s.b))

	values := func() error { // [["<ts>", "<line>", {structured metadata}?], ...]
		return s.array(func() error {
			if err := s.expect('['); err != nil {
				return err
			}
			raw, _, err := s.rawString()
			if err != nil {
				return err
			}
			ts, err := parseTimestamp(raw)
			if err != nil {
				return fmt.Errorf("bad timestamp %q: %w", raw, err)
			}
			if err := s.expect(','); err != nil {
				return err
			}
			raw, escaped, err := s.rawString()
			if err != nil {
				return err
			}
			if escaped {
				if unquoted, err = appendUnquoted(unquoted[:0], raw); err != nil {
					return err
				}
				raw = unquoted
			}
			spans = append(spans, span{text.Len(), len(raw)})
			text.Write(raw)
			entries = append(entries, Entry{Timestamp: ts})
			for s.next() == ',' { // structured metadata, sent only when asked for
				s.i++
				if err := s.skip(); err != nil {
					return err
				}
			}
			return s.expect(']')
		})
	}
	stream := func() error { // {"stream": {labels}, "values": [...]}
		first := len(entries)
		var labels map[string]string
		err := s.object(func(key []byte) error {
			switch string(key) {
			case "stream":
				labels = map[string]string{}
				return s.object(func(name []byte) error {
					value, err := s.string()
					labels[string(name)] = value
					return err
				})
			case "values":
				return values()
			default:
				return s.skip()
			}
		})
		if err != nil {
			return err
		}
		st := c.stream(labels)
		for i := first; i < len(entries); i++ {
			entries[i].Stream = st
		}
		return nil
	}
	err := s.object(func(key []byte) error {
		switch string(key) {
		case "status":
			var err error
			status, err = s.string()
			return err
		case "data":
			return s.object(func(key []byte) error {
				switch string(key) {
				case "resultType":
					var err error
					resultType, err = s.string()
					return err
				case "result":
					if resultType != "" && resultType != "streams" {
						return s.skip()
					}
					return s.array(stream)
				default:
					return s.skip()
				}
			})
		default:
			return s.skip()
		}
	})
	c.spans = spans[:0]
	if err != nil {
		return nil, err
	}
	if status != "success" {
		return nil, fmt.Errorf("status %q", status)
	}
	if resultType != "streams" {
		return nil, fmt.Errorf("the query returns %q, not log lines: --loki.query must be a log query, not a metric query", resultType)
	}
	page := text.String()
	for i, sp := range spans {
		entries[i].Line = page[sp.offset : sp.offset+sp.length]
	}
	return entries, nil
}

// span is where a line lies in its page's text.
type span struct{ offset, length int }

// parquetRow is Loki's row type for log responses (pkg/querier/queryrange/parquet.go).
type parquetRow struct {
	Timestamp int64             `parquet:"timestamp"`
	Labels    map[string]string `parquet:"labels"`
	Line      string            `parquet:"line"`
}

func (c *Client) decodeParquet(body io.Reader) ([]Entry, error) {
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	if len(data) == 0 {
		return nil, nil
	}
	rows, err := pq.Read[parquetRow](bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, err
	}
	entries := make([]Entry, len(rows))
	var last *Stream
	for i, r := range rows {
		// Rows of one stream come together, each with its own copy of the map.
		if last == nil || !sameLabels(last.Labels, r.Labels) {
			last = c.stream(r.Labels)
		}
		entries[i] = Entry{Timestamp: r.Timestamp, Stream: last, Line: r.Line}
	}
	return entries, nil
}

func sameLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
