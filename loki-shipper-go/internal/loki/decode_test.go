package loki

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"monologue.dev/loki-shipper/internal/retry"
)

// referenceResponse decodes a query_range response with encoding/json: the
// decoder the scanner replaced, and the meaning it must keep.
type referenceResponse struct {
	Status string `json:"status"`
	Data   struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Stream map[string]string `json:"stream"`
			Values [][2]string       `json:"values"`
		} `json:"result"`
	} `json:"data"`
}

type decoded struct {
	Timestamp int64
	Labels    map[string]string
	Line      string
}

func referenceDecode(body string) ([]decoded, error) {
	var r referenceResponse
	if err := json.NewDecoder(strings.NewReader(body)).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" || r.Data.ResultType != "streams" {
		return nil, fmt.Errorf("status %q, result type %q", r.Status, r.Data.ResultType)
	}
	var out []decoded
	for _, s := range r.Data.Result {
		for _, v := range s.Values {
			ts, err := strconv.ParseInt(v[0], 10, 64)
			if err != nil {
				return nil, err
			}
			labels := s.Stream
			if labels == nil {
				labels = map[string]string{}
			}
			out = append(out, decoded{ts, labels, v[1]})
		}
	}
	return out, nil
}

func newTestClient() *Client {
	return NewClient(Config{}, retry.Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func scan(c *Client, body string) ([]decoded, error) {
	entries, err := c.decodeJSON(strings.NewReader(body), 100)
	if err != nil {
		return nil, err
	}
	var out []decoded
	for _, e := range entries {
		labels := e.Stream.Labels
		if labels == nil {
			labels = map[string]string{}
		}
		out = append(out, decoded{e.Timestamp, labels, e.Line})
	}
	return out, nil
}

func TestDecodeJSONReadsWhatEncodingJSONReads(t *testing.T) {
	const head = `{"status":"success","data":{"resultType":"streams","result":[`
	const tail = `]}}`
	cases := []struct {
		name string
		body string
	}{
		{"plain lines of two streams", head + `{"stream":{"app":"api","pod":"a"},"values":[["1","GET /"],["3","POST /"]]},{"stream":{"app":"api","pod":"b"},"values":[["2","x"]]}` + tail},
		{"escaped quotes, backslashes and control characters",
			head + `{"stream":{"app":"api"},"values":[["1","{\"msg\":\"a \\\\ b\",\"n\":1}\n\t\r\b\f\/"]]}` + tail},
		{"unicode escapes, a surrogate pair and lone surrogates",
			head + `{"stream":{"app":"api"},"values":[["1","\u00e9\u4e16\ud83d\ude00 \ud83d x \ude00 \ud83d\u0041"]]}` + tail},
		{"raw multi-byte UTF-8 and invalid bytes", head + "{\"stream\":{\"app\":\"api\"},\"values\":[[\"1\",\"h\u00e9llo \xff\xfe w\xe4rld \xe2\x82\"]]}" + tail},
		{"labels with escapes", head + `{"stream":{"app":"a\"pi","k\u00e9y":"v"},"values":[["1","x"]]}` + tail},
		{"structured metadata as a third element", head + `{"stream":{"app":"api"},"values":[["1","x",{"trace_id":"abc","n":[1,2.5e3,true,null]}],["2","y"]]}` + tail},
		{"stats and fields the decoder does not know", `{"status":"success","warnings":["w"],"data":{"resultType":"streams","stats":{"summary":{"bytesProcessedPerSecond":123,"execTime":0.01,"x":-1.5E-3,"ok":false}},"result":[{"stream":{"app":"api"},"values":[["1","x"]]}],"encodingFlags":["categorize-labels"]}}`},
		{"values before the stream's labels", head + `{"values":[["1","x"],["2","y"]],"stream":{"app":"api"}}` + tail},
		{"whitespace between every token", "{ \"status\" : \"success\" ,\n \"data\" : {\n\t\"resultType\" : \"streams\" , \"result\" : [ { \"stream\" : { \"app\" : \"api\" } , \"values\" : [ [ \"1\" , \"x\" ] ] } ] } }\n"},
		{"an empty result", head + tail},
		{"a null result", `{"status":"success","data":{"resultType":"streams","result":null}}`},
		{"a stream without labels", head + `{"values":[["1","x"]]}` + tail},
		{"an empty line", head + `{"stream":{"app":"api"},"values":[["1",""]]}` + tail},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want, err := referenceDecode(tc.body)
			if err != nil {
				t.Fatalf("the reference refuses the case: %v", err)
			}
			got, err := scan(newTestClient(), tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestDecodeJSONRefusesWhatIsNotAPageOfLines(t *testing.T) {
	cases := []struct {
		name, body, wantErr string
	}{
		{"a metric query's matrix", `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"2"]]}]}}`, "not a metric query"},
		{"an error status", `{"status":"error","data":{"resultType":"streams","result":[]}}`, `status "error"`},
		{"a body cut short", `{"status":"success","data":{"resultType":"streams","result":[{"stream":{"app":"api"},"values":[["1","x`, "unexpected end"},
		{"a timestamp that is not a number", `{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[["1a","x"]]}]}}`, "bad timestamp"},
		{"an invalid escape", `{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[["1","\x"]]}]}}`, "invalid escape"},
		{"a number where a line belongs", `{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[["1",2]]}]}}`, "want a string"},
		{"an empty body", ``, "unexpected end"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := scan(newTestClient(), tc.body)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// FuzzDecodeJSON puts arbitrary bytes where Loki puts a line, a label value
// and a timestamp: whatever encoding/json accepts must decode to the same.
func FuzzDecodeJSON(f *testing.F) {
	f.Add(`GET /`, `api`, `1`)
	f.Add(`{\"a\":\"\\u00e9\"}`, `a\"b`, `1700000000000000000`)
	f.Add("\xff\\ud800\\udc00\\ud800", `\u0041`, `-1`)
	f.Fuzz(func(t *testing.T, line, label, ts string) {
		body := `{"status":"success","data":{"resultType":"streams","result":[{"stream":{"app":"` + label +
			`"},"values":[["` + ts + `","` + line + `"],["2","` + line + `",{"k":"` + label + `"}]]}]}}`
		got, err := scan(newTestClient(), body)
		want, refErr := referenceDecode(body)
		if refErr != nil {
			return // the scanner may be more lenient, never less
		}
		if err != nil {
			t.Fatalf("encoding/json reads %q, the scanner fails: %v", body, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\ngot  %+v\nwant %+v", body, got, want)
		}
	})
}

// page is a response like Loki's for a 5000-line page of the benchmark:
// three line shapes, twelve streams, stats.
func benchmarkPage() string {
	type stream struct {
		Stream map[string]string `json:"stream"`
		Values [][2]string       `json:"values"`
	}
	var result []stream
	for s := range 12 {
		st := stream{Stream: map[string]string{"app": "bench", "pod": fmt.Sprintf("bench-%d", s%4), "detected_level": []string{"info", "warn", "error"}[s/4], "service_name": "bench"}}
		for i := s; i < 5000; i += 12 {
			var line string
			switch i % 3 {
			case 0:
				line = fmt.Sprintf(`{"level":"info","ts":"2024-01-02T10:00:00.000Z","msg":"request served","path":"/api/v1/items","req":"%09d"}`, i)
			case 1:
				line = fmt.Sprintf(`level=warn ts=2024-01-02T10:00:00.000Z caller=handler.go:88 msg="slow upstream" upstream=db req=%09d`, i)
			default:
				line = fmt.Sprintf(`2024-01-02 10:00:00,000 ERROR [worker-3] job failed: connection reset by peer (attempt 2) req=%09d`, i)
			}
			st.Values = append(st.Values, [2]string{strconv.FormatInt(1795494600048000000+int64(i)*6_000_000, 10), line})
		}
		result = append(result, st)
	}
	stats := map[string]any{"summary": map[string]any{"bytesProcessedPerSecond": 123456789, "execTime": 0.042, "totalEntriesReturned": 5000}}
	b, _ := json.Marshal(map[string]any{"status": "success", "data": map[string]any{"resultType": "streams", "result": result, "stats": stats}})
	return string(b)
}

func BenchmarkDecodeJSON(b *testing.B) {
	page := benchmarkPage()
	b.Run("scanner", func(b *testing.B) {
		c := newTestClient()
		b.SetBytes(int64(len(page)))
		for b.Loop() {
			if _, err := c.decodeJSON(strings.NewReader(page), 5000); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		for b.Loop() {
			if _, err := referenceDecode(page); err != nil {
				b.Fatal(err)
			}
		}
	})
}
