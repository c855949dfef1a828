// Package parquet writes log rows as Parquet in the layout of
// schema/logs.json, the one description shared with the Python side.
package parquet

import (
	"errors"
	"flag"
	"fmt"
	"io"

	pq "github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"
)

// Row is one log line. Field tags are the schema: keep them equal to
// schema/logs.json (TestWrittenFileMatchesTheSharedSchema checks it).
type Row struct {
	Timestamp    int64             `parquet:"timestamp,timestamp(nanosecond:utc),delta"`
	Labels       map[string]string `parquet:"labels" parquet-key:",dict" parquet-value:",dict"`
	Line         string            `parquet:"line"`
	LineID       string            `parquet:"line_id"`
	Level        string            `parquet:"level,optional,dict"`
	Fields       map[string]string `parquet:"fields" parquet-key:",dict"`
	Truncated    bool              `parquet:"truncated"`
	RepairedUTF8 bool              `parquet:"repaired_utf8"`
}

// Config tunes the files written.
type Config struct {
	RowGroupRows int64
	ZstdLevel    string
}

// One codec per level for the whole process: a codec pools its zstd
// encoders, whose history buffers are megabytes each. A codec per file
// would allocate them again for every window.
var zstdLevels = map[string]*zstd.Codec{
	"fastest": {Level: zstd.SpeedFastest},
	"default": {Level: zstd.SpeedDefault},
	"better":  {Level: zstd.SpeedBetterCompression},
	"best":    {Level: zstd.SpeedBestCompression},
}

func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Int64Var(&c.RowGroupRows, "parquet.row-group-rows", 100_000,
		"Rows per Parquet row group; bounds the memory a window takes while it is encoded.")
	fs.StringVar(&c.ZstdLevel, "parquet.zstd-level", "default",
		"zstd level of the Parquet pages: fastest, default, better or best.")
}

func (c *Config) Validate() error {
	var errs []error
	if c.RowGroupRows < 1 {
		errs = append(errs, fmt.Errorf("--parquet.row-group-rows must be at least 1, got %d", c.RowGroupRows))
	}
	if _, ok := zstdLevels[c.ZstdLevel]; !ok {
		errs = append(errs, fmt.Errorf("--parquet.zstd-level must be fastest, default, better or best, got %q", c.ZstdLevel))
	}
	return errors.Join(errs...)
}

// Writer encodes rows to one Parquet file. Rows are appended in batches and
// compressed page by page, so a window never holds all its rows uncompressed.
type Writer struct {
	w *pq.GenericWriter[Row]
}

func NewWriter(out io.Writer, cfg Config) *Writer {
	codec, ok := zstdLevels[cfg.ZstdLevel]
	if !ok {
		codec = zstdLevels["default"]
	}
	rowGroup := cfg.RowGroupRows
	if rowGroup < 1 {
		rowGroup = 100_000
	}
	options := []pq.WriterOption{
		pq.Compression(codec),
		pq.MaxRowsPerRowGroup(rowGroup),
		pq.CreatedBy("monologue loki-shipper", "", ""),
	}
	for _, path := range unboundedColumns {
		options = append(options, pq.SkipPageBounds(path...), pq.SkipPageStatistics(path...))
	}
	return &Writer{w: pq.NewGenericWriter[Row](out, options...)}
}

// unboundedColumns get no min/max statistics: no reader prunes by the
// smallest log line or line id, nor by a map's keys and values (DuckDB
// cannot push a filter on labels['app'] down to them), and computing them
// took a fifth of the writer's time. timestamp, level and the flags keep theirs.
var unboundedColumns = [][]string{
	{"line"}, {"line_id"},
	{"labels", "key_value", "key"}, {"labels", "key_value", "value"},
	{"fields", "key_value", "key"}, {"fields", "key_value", "value"},
}

func (w *Writer) Write(rows []Row) error {
	_, err := w.w.Write(rows)
	return err
}

// Close writes the footer; the file is complete only after it returns nil.
func (w *Writer) Close() error { return w.w.Close() }
