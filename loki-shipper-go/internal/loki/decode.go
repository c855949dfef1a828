package loki

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	pq "github.com/parquet-go/parquet-go"
)

const parquetType = "application/vnd.apache.parquet"

type jsonResponse struct {
	Status string `json:"status"`
	Data   struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Stream map[string]string `json:"stream"`
			// [timestamp, line]; a third element (structured metadata, only
			// sent when asked for) is ignored by the decoder.
			Values [][2]string `json:"values"`
		} `json:"result"`
	} `json:"data"`
}

func (c *Client) decodeJSON(body io.Reader) ([]Entry, error) {
	var r jsonResponse
	if err := json.NewDecoder(body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("status %q", r.Status)
	}
	if r.Data.ResultType != "streams" {
		return nil, fmt.Errorf("the query returns %q, not log lines: --loki.query must be a log query, not a metric query", r.Data.ResultType)
	}
	n := 0
	for _, s := range r.Data.Result {
		n += len(s.Values)
	}
	entries := make([]Entry, 0, n)
	for _, s := range r.Data.Result {
		stream := c.stream(s.Stream)
		for _, v := range s.Values {
			ts, err := strconv.ParseInt(v[0], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("bad timestamp %q: %w", v[0], err)
			}
			entries = append(entries, Entry{Timestamp: ts, Stream: stream, Line: v[1]})
		}
	}
	return entries, nil
}

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
