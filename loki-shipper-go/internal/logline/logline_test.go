package logline

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// schemaDir is the repository's shared schema folder.
var schemaDir = filepath.Join("..", "..", "..", "schema")

func TestParse(t *testing.T) {
	cases := []struct {
		name string
		line string
		max  int
		want Parsed
	}{
		{
			name: "a JSON line yields its top-level keys and its level",
			line: `{"level":"ERROR","msg":"disk full","attempt":3,"ok":false,"ctx":{"a":[1,2]},"none":null}`,
			want: Parsed{Level: "error", Fields: map[string]string{
				"level": "ERROR", "msg": "disk full", "attempt": "3", "ok": "false", "ctx": `{"a":[1,2]}`, "none": "null",
			}},
		},
		{
			name: "JSON escapes are decoded, including surrogate pairs",
			line: `{"msg":"a\"b\\c\nd \u00e9 \ud83d\ude00","lvl":"warning"}`,
			want: Parsed{Level: "warn", Fields: map[string]string{"msg": "a\"b\\c\nd é 😀", "lvl": "warning"}},
		},
		{
			name: "a lone surrogate in JSON becomes U+FFFD as encoding/json does",
			line: `{"msg":"x\ud800y"}`,
			want: Parsed{Fields: map[string]string{"msg": "x\uFFFDy"}},
		},
		{
			name: "a level key in another case is found",
			line: `{"Severity":"Critical","msg":"x"}`,
			want: Parsed{Level: "fatal", Fields: map[string]string{"Severity": "Critical", "msg": "x"}},
		},
		{
			name: "a numeric pino level is mapped",
			line: `{"level":30,"msg":"hello"}`,
			want: Parsed{Level: "info", Fields: map[string]string{"level": "30", "msg": "hello"}},
		},
		{
			name: "an unknown level value leaves the level empty",
			line: `{"level":"chatty"}`,
			want: Parsed{Fields: map[string]string{"level": "chatty"}},
		},
		{
			name: "broken JSON is plain text without fields",
			line: `{"level":"info", "msg": oops}`,
			want: Parsed{},
		},
		{
			name: "a logfmt line yields its keys and level",
			line: `ts=2024-01-02T10:00:00Z level=warn caller=main.go:12 msg="slow request" path=/a?b=c empty=`,
			want: Parsed{Level: "warn", Fields: map[string]string{
				"ts": "2024-01-02T10:00:00Z", "level": "warn", "caller": "main.go:12", "msg": "slow request", "path": "/a?b=c", "empty": "",
			}},
		},
		{
			name: "logfmt quoted values are unescaped",
			line: `level=info msg="say \"hi\"\tnow"`,
			want: Parsed{Level: "info", Fields: map[string]string{"level": "info", "msg": "say \"hi\"\tnow"}},
		},
		{
			name: "free text with one key=value is not logfmt",
			line: `user=bob logged in from 10.0.0.1`,
			want: Parsed{},
		},
		{
			name: "an upper-case level word opens a plain line",
			line: `ERROR could not connect`,
			want: Parsed{Level: "error"},
		},
		{
			name: "a bracketed level in lower case counts",
			line: `[warn] disk at 91%`,
			want: Parsed{Level: "warn"},
		},
		{
			name: "a level after a date and time counts (HDFS style)",
			line: `081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating`,
			want: Parsed{Level: "info"},
		},
		{
			name: "a level after a slash date counts (Spark style)",
			line: `17/06/09 20:10:40 WARN executor.Executor: lost task`,
			want: Parsed{Level: "warn"},
		},
		{
			name: "a klog header gives the level",
			line: `E0102 15:04:05.123456    1 controller.go:42] sync failed`,
			want: Parsed{Level: "error"},
		},
		{
			name: "a lower-case level word in a sentence is not a level",
			line: `fatal error avoided by retry`,
			want: Parsed{},
		},
		{
			name: "a level word beyond the first tokens is part of the message",
			line: `one two three four ERROR`,
			want: Parsed{},
		},
		{
			name: "a number alone is not a level",
			line: `30 items processed`,
			want: Parsed{},
		},
		{
			name: "an empty line has nothing",
			line: ``,
			want: Parsed{},
		},
		{
			name: "a long line is truncated on a rune boundary and flagged",
			line: "ERROR " + strings.Repeat("é", 10),
			max:  9,
			want: Parsed{Line: "ERROR é", Level: "error", Truncated: true},
		},
		{
			name: "invalid UTF-8 is replaced and flagged",
			line: "INFO bad \xff\xfe byte",
			want: Parsed{Line: "INFO bad \uFFFD byte", Level: "info", RepairedUTF8: true},
		},
		{
			name: "a line at the limit is not truncated",
			line: "abc",
			max:  3,
			want: Parsed{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want.Line == "" && !tc.want.Truncated && !tc.want.RepairedUTF8 {
				tc.want.Line = tc.line
			}
			got := Parse(tc.line, tc.max)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%q)\n got %#v\nwant %#v", tc.line, got, tc.want)
			}
		})
	}
}

func TestLineIDMatchesTheSharedVectors(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(schemaDir, "line_id_vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Vectors []struct {
			Name        string            `json:"name"`
			Labels      map[string]string `json:"labels"`
			TimestampNs string            `json:"timestamp_ns"`
			Line        string            `json:"line"`
			LineID      string            `json:"line_id"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	var h Hasher
	for _, v := range doc.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			ts, err := strconv.ParseInt(v.TimestampNs, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			if got := h.ID(IDPrefix(v.Labels), ts, v.Line); got != v.LineID {
				t.Errorf("line_id = %s, want %s", got, v.LineID)
			}
		})
	}
}

func TestLevelTablesMatchTheSharedSchema(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(schemaDir, "logs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Levels        map[string][]string `json:"levels"`
		LevelKeys     []string            `json:"level_keys"`
		NumericLevels map[string]string   `json:"numeric_levels"`
		KlogPrefixes  map[string]string   `json:"klog_prefixes"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	klog := map[string]string{}
	for k, v := range klogPrefixes {
		klog[string(k)] = v
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"levels", levelAliases, doc.Levels},
		{"level_keys", levelKeys, doc.LevelKeys},
		{"numeric_levels", numericLevels, doc.NumericLevels},
		{"klog_prefixes", klog, doc.KlogPrefixes},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s differs from schema/logs.json:\n go   %v\n json %v", c.name, c.got, c.want)
		}
	}
}

// FuzzParse checks the properties every line must keep, whatever its bytes:
// no panic, valid UTF-8 out, the size bound holds, and JSON objects agree
// with encoding/json on their top-level keys.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{"level":"info","msg":"x"}`, `{"a":{"b":[1,{"c":"\u00e9"}]},"d":-1.5e3}`, `{}`, `{"a":"\ud800"}`,
		`level=info msg="a \"b\""`, `a= b="" c`, `E0102 x`, `[ERROR] x`, "\xff\xfe", `{"a":1,"a":2}`,
		`[[[[[[[[[[`, `{"x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`,
	} {
		f.Add(seed, 0)
		f.Add(seed, 5)
	}
	f.Fuzz(func(t *testing.T, line string, max int) {
		if max < 0 {
			max = -max
		}
		p := Parse(line, max)
		if !utf8.ValidString(p.Line) {
			t.Fatalf("invalid UTF-8 out: %q", p.Line)
		}
		if max > 0 && len(p.Line) > max {
			t.Fatalf("line of %d bytes over the limit %d", len(p.Line), max)
		}
		if p.Truncated != (max > 0 && len(strings.ToValidUTF8(line, "\uFFFD")) > max) {
			t.Fatalf("truncated flag %v is wrong", p.Truncated)
		}
		if p.RepairedUTF8 == utf8.ValidString(line) {
			t.Fatalf("repaired flag %v is wrong", p.RepairedUTF8)
		}
		for k, v := range p.Fields {
			if !utf8.ValidString(k) {
				t.Fatalf("field key %q is not UTF-8", k)
			}
			_ = v
		}
		// Oracle: for a line that is one JSON object, the keys and string
		// values must be those encoding/json sees.
		body := strings.TrimLeft(p.Line, " \t")
		var want map[string]any
		isObject := strings.HasPrefix(strings.TrimLeft(body, " \t\r\n"), "{") && json.Unmarshal([]byte(body), &want) == nil && want != nil
		got, ok := parseJSONObject(body)
		if isObject != ok && !(isObject && jsonDepth(body) > maxJSONDepth) {
			t.Fatalf("parseJSONObject(%q) ok=%v, encoding/json says object=%v", body, ok, isObject)
		}
		if ok {
			if len(got) != len(want) {
				t.Fatalf("keys %v, encoding/json %v", got, want)
			}
			for k, w := range want {
				if s, isString := w.(string); isString && got[k] != s {
					t.Fatalf("key %q = %q, encoding/json %q", k, got[k], s)
				}
			}
		}
	})
}

// jsonDepth is a rough nesting depth, enough to excuse the depth limit.
func jsonDepth(s string) int {
	depth, max := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{', '[':
			depth++
			if depth > max {
				max = depth
			}
		case '}', ']':
			depth--
		}
	}
	return max
}

func BenchmarkParse(b *testing.B) {
	lines := []string{
		`{"level":"info","ts":"2024-01-02T10:00:00Z","msg":"request served","path":"/api/v1/items","status":200}`,
		`level=info ts=2024-01-02T10:00:00Z caller=server.go:88 msg="request served" status=200 path=/api`,
		`081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38 terminating`,
	}
	for b.Loop() {
		for _, l := range lines {
			Parse(l, 1<<16)
		}
	}
}
