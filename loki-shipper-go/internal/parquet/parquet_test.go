package parquet

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	pq "github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// sampleRows cover every column and flag, so the file the Python test reads
// (see writeSample) exercises the whole schema.
func sampleRows() []Row {
	api := map[string]string{"app": "api", "namespace": "prod"}
	return []Row{
		{Timestamp: 1700000000000000000, Labels: api, Line: `{"level":"info","msg":"up"}`, LineID: "00112233445566778899aabbccddeeff",
			Level: "info", Fields: map[string]string{"level": "info", "msg": "up"}},
		{Timestamp: 1700000000000000001, Labels: api, Line: "plain text, no level", LineID: "ffeeddccbbaa99887766554433221100",
			Fields: map[string]string{}},
		{Timestamp: 1700000000000000002, Labels: map[string]string{"app": "web"}, Line: "ERROR cut", LineID: "0123456789abcdef0123456789abcdef",
			Level: "error", Fields: map[string]string{}, Truncated: true, RepairedUTF8: true},
	}
}

type sharedSchema struct {
	Compression string `json:"compression"`
	Columns     []struct {
		Name     string `json:"name"`
		Arrow    string `json:"arrow_type"`
		Physical string `json:"parquet_physical"`
		Nullable bool   `json:"nullable"`
	} `json:"columns"`
}

func loadSharedSchema(t *testing.T) sharedSchema {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "schema", "logs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s sharedSchema
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func encode(t *testing.T, rows []Row) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, Config{RowGroupRows: 2, ZstdLevel: "default"})
	if err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestWrittenFileMatchesTheSharedSchema reads back a written file and checks
// each column against schema/logs.json. With MONOLOGUE_PARQUET_SAMPLE set it
// also leaves the file there, for tests/shipper/test_parquet_schema.py.
func TestWrittenFileMatchesTheSharedSchema(t *testing.T) {
	shared := loadSharedSchema(t)
	data := encode(t, sampleRows())
	if out := os.Getenv("MONOLOGUE_PARQUET_SAMPLE"); out != "" {
		if err := os.WriteFile(out, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	file, err := pq.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	fields := file.Schema().Fields()
	if len(fields) != len(shared.Columns) {
		t.Fatalf("file has %d columns, schema/logs.json %d", len(fields), len(shared.Columns))
	}
	for i, col := range shared.Columns {
		f := fields[i]
		t.Run(col.Name, func(t *testing.T) {
			if f.Name() != col.Name {
				t.Fatalf("column %d is %q, want %q", i, f.Name(), col.Name)
			}
			if f.Optional() != col.Nullable {
				t.Errorf("optional = %v, want nullable %v", f.Optional(), col.Nullable)
			}
			if got := arrowType(f); got != col.Arrow {
				t.Errorf("type %s, want %s", got, col.Arrow)
			}
		})
	}
	for _, rg := range file.Metadata().RowGroups {
		for _, cc := range rg.Columns {
			if cc.MetaData.Codec != format.Zstd {
				t.Errorf("column %v is compressed with %v, want %s", cc.MetaData.PathInSchema, cc.MetaData.Codec, shared.Compression)
			}
		}
	}
}

// arrowType names a Parquet field the way pyarrow prints the type it reads.
func arrowType(f pq.Field) string {
	var logical format.LogicalTypeValue
	if lt := f.Type().LogicalType(); lt != nil {
		logical = lt.Value
	}
	switch v := logical.(type) {
	case *format.TimestampType:
		unit := "unit " + v.Unit.String()
		if _, ok := v.Unit.Value.(*format.NanoSeconds); ok {
			unit = "ns"
		}
		if v.IsAdjustedToUTC {
			return "timestamp[" + unit + ", tz=UTC]"
		}
		return "timestamp[" + unit + "]"
	case *format.MapType:
		kv := f.Fields()[0].Fields()
		return "map<" + arrowType(kv[0]) + ", " + arrowType(kv[1]) + ">"
	case *format.StringType:
		return "string"
	}
	if f.Leaf() && f.Type().Kind() == pq.Boolean {
		return "bool"
	}
	return f.Type().String()
}

func TestLinesLineIDsAndMapsCarryNoMinMaxStatistics(t *testing.T) {
	data := encode(t, sampleRows())
	file, err := pq.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	bounded := map[string]bool{"timestamp": true, "level": true, "truncated": true, "repaired_utf8": true}
	for i, column := range file.Schema().Columns() {
		name := strings.Join(column, ".")
		stats := file.Metadata().RowGroups[0].Columns[i].MetaData.Statistics
		has := stats.MinValue != nil || stats.MaxValue != nil
		if has != bounded[column[0]] {
			t.Errorf("%s: min/max statistics %v, want %v", name, has, bounded[column[0]])
		}
	}
}

func TestRowsRoundTrip(t *testing.T) {
	want := sampleRows()
	data := encode(t, want)
	got, err := pq.Read[Row](bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read back\n%+v\nwant\n%+v", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"the defaults are valid", Config{RowGroupRows: 100_000, ZstdLevel: "default"}, false},
		{"an empty row group is rejected", Config{RowGroupRows: 0, ZstdLevel: "default"}, true},
		{"an unknown zstd level is rejected", Config{RowGroupRows: 1, ZstdLevel: "max"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err != nil) != tc.wantErr {
				t.Errorf("Validate() = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}
