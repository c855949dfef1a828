// Package logline turns one raw Loki line into the columns derived from it:
// the line made safe to store (valid UTF-8, bounded size), its level and its
// top-level fields. The rules are shared with the Python side and written
// down in schema/README.md; change both together.
//
// Everything here runs on untrusted input, once per shipped line: it must
// never panic, and it avoids allocating for lines that carry no structure.
package logline

import (
	"strings"
	"unicode/utf8"
)

// Parsed is what a line contributes to its row.
type Parsed struct {
	Line         string            // valid UTF-8, at most the size limit
	Level        string            // canonical level or "" when unknown
	Fields       map[string]string // top-level keys of a JSON or logfmt line; nil otherwise
	Truncated    bool
	RepairedUTF8 bool
}

// Parse repairs and bounds the line, then extracts its level and fields.
// maxBytes <= 0 means no limit.
func Parse(raw string, maxBytes int) Parsed {
	var p Parsed
	line := raw
	if !utf8.ValidString(line) {
		line = strings.ToValidUTF8(line, "\uFFFD")
		p.RepairedUTF8 = true
	}
	if maxBytes > 0 && len(line) > maxBytes {
		line = truncateUTF8(line, maxBytes)
		p.Truncated = true
	}
	p.Line = line
	// Structure is read from the stored (bounded) line, so a reader can always
	// re-derive level and fields from the line column alone.
	body := strings.TrimLeft(line, " \t")
	switch {
	case strings.HasPrefix(body, "{"):
		if fields, ok := parseJSONObject(body); ok {
			p.Fields = fields
			p.Level = levelFromFields(fields)
			return p
		}
	default:
		if fields, ok := parseLogfmt(body); ok {
			p.Fields = fields
			p.Level = levelFromFields(fields)
			return p
		}
	}
	p.Level = levelFromPrefix(body)
	return p
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	// Step back over continuation bytes so the cut lands on a rune start.
	for cut > 0 && cut > n-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
