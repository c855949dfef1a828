package logline

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strconv"
)

// IDPrefix is the label part of a line_id hash input, computed once per stream:
// for each label sorted by name, name 0x00 value 0x00 (schema/README.md).
func IDPrefix(labels map[string]string) []byte {
	names := make([]string, 0, len(labels))
	size := 0
	for name, value := range labels {
		names = append(names, name)
		size += len(name) + len(value) + 2
	}
	sort.Strings(names)
	prefix := make([]byte, 0, size)
	for _, name := range names {
		prefix = append(prefix, name...)
		prefix = append(prefix, 0)
		prefix = append(prefix, labels[name]...)
		prefix = append(prefix, 0)
	}
	return prefix
}

// Hasher computes line ids. It reuses one buffer, so it is cheap per line
// and not safe for concurrent use.
type Hasher struct{ buf []byte }

// ID is the line_id: hex of the first 16 bytes of
// SHA-256(IDPrefix(labels) || decimal(ts_ns) || 0x00 || line),
// over the line exactly as Loki returned it (before repair or truncation),
// so that the id names the line at its source.
func (h *Hasher) ID(prefix []byte, tsNanos int64, line string) string {
	b := append(h.buf[:0], prefix...)
	b = strconv.AppendInt(b, tsNanos, 10)
	b = append(b, 0)
	b = append(b, line...)
	h.buf = b
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}
