package loki

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner reads the one JSON document query_range answers with. It is not
// a general decoder: it walks the bytes of a whole response held in memory,
// hands out strings as raw byte ranges, and skips what it does not need
// (stats, structured metadata) without building it. encoding/json spent a
// third of the shipper's CPU time on this document, most of it allocating a
// string per line and reflecting over [][2]string.
//
// Strings decode exactly as encoding/json decodes them: escapes, \u
// surrogate pairs, and invalid UTF-8 or lone surrogates as U+FFFD (the
// line_id hashes the line as decoded, so it must not change with the
// decoder). Control characters inside strings are accepted, which
// encoding/json refuses; Loki never sends them.
type scanner struct {
	b []byte
	i int
}

var errEnd = errors.New("unexpected end of JSON input")

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("JSON at offset %d: %s", s.i, fmt.Sprintf(format, args...))
}

// next skips whitespace and returns the next byte without consuming it, 0 at the end.
func (s *scanner) next() byte {
	for s.i < len(s.b) {
		switch c := s.b[s.i]; c {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return c
		}
	}
	return 0
}

func (s *scanner) expect(c byte) error {
	switch s.next() {
	case c:
		s.i++
		return nil
	case 0:
		return errEnd
	default:
		return s.errorf("want %q, found %q", c, s.b[s.i])
	}
}

// null consumes a null if one comes next.
func (s *scanner) null() bool {
	if s.next() == 'n' && bytes.HasPrefix(s.b[s.i:], []byte("null")) {
		s.i += len("null")
		return true
	}
	return false
}

// object calls member for each key of an object; member must consume the
// value. A null is an object without members, as for encoding/json.
func (s *scanner) object(member func(key []byte) error) error {
	if s.null() {
		return nil
	}
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.next() == '}' {
		s.i++
		return nil
	}
	var keyBuf []byte
	for {
		raw, escaped, err := s.rawString()
		if err != nil {
			return err
		}
		key := raw
		if escaped {
			if keyBuf, err = appendUnquoted(keyBuf[:0], raw); err != nil {
				return err
			}
			key = keyBuf
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := member(key); err != nil {
			return err
		}
		if more, err := s.more('}', "an object member"); !more {
			return err
		}
	}
}

// array calls element for each element of an array; element must consume
// it. A null is an empty array.
func (s *scanner) array(element func() error) error {
	if s.null() {
		return nil
	}
	if err := s.expect('['); err != nil {
		return err
	}
	if s.next() == ']' {
		s.i++
		return nil
	}
	for {
		if err := element(); err != nil {
			return err
		}
		if more, err := s.more(']', "an array element"); !more {
			return err
		}
	}
}

// more consumes what follows an item of an object or array: a ',' (more
// items follow) or the closing byte (the last one, or an error).
func (s *scanner) more(closing byte, item string) (bool, error) {
	switch s.next() {
	case ',':
		s.i++
		return true, nil
	case closing:
		s.i++
		return false, nil
	case 0:
		return false, errEnd
	default:
		return false, s.errorf("want ',' or '%c' after %s, found %q", closing, item, s.b[s.i])
	}
}

// rawString consumes a string and returns its bytes between the quotes,
// still escaped; escaped says whether it needs appendUnquoted (escapes or
// bytes that are not valid UTF-8), otherwise raw is the value itself.
func (s *scanner) rawString() (raw []byte, escaped bool, err error) {
	switch s.next() {
	case '"':
	case 0:
		return nil, false, errEnd
	default:
		return nil, false, s.errorf("want a string, found %q", s.b[s.i])
	}
	start := s.i + 1
	from := start
	for {
		q := bytes.IndexByte(s.b[from:], '"')
		if q < 0 {
			return nil, false, errEnd
		}
		q += from
		// The quote ends the string unless an odd number of backslashes precedes it.
		backslashes := 0
		for p := q - 1; p >= start && s.b[p] == '\\'; p-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			raw = s.b[start:q]
			s.i = q + 1
			escaped = backslashes > 0 || bytes.IndexByte(raw, '\\') >= 0 || !utf8.Valid(raw)
			return raw, escaped, nil
		}
		from = q + 1
	}
}

// string consumes a string and returns it as a new Go string.
func (s *scanner) string() (string, error) {
	raw, escaped, err := s.rawString()
	if err != nil || !escaped {
		return string(raw), err
	}
	b, err := appendUnquoted(nil, raw)
	return string(b), err
}

// skip consumes one value of any kind.
func (s *scanner) skip() error {
	switch c := s.next(); {
	case c == '{':
		return s.object(func([]byte) error { return s.skip() })
	case c == '[':
		return s.array(s.skip)
	case c == '"':
		_, _, err := s.rawString()
		return err
	case c == 0:
		return errEnd
	case c == '-' || c >= '0' && c <= '9' || c == 't' || c == 'f' || c == 'n':
		start := s.i
		for s.i < len(s.b) && isLiteralByte(s.b[s.i]) {
			s.i++
		}
		switch lit := string(s.b[start:s.i]); lit {
		case "true", "false", "null":
			return nil
		default:
			if _, err := strconv.ParseFloat(lit, 64); err != nil {
				s.i = start
				return s.errorf("invalid literal %q", lit)
			}
			return nil
		}
	default:
		return s.errorf("unexpected %q", c)
	}
}

func isLiteralByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '+' || c == '.'
}

// parseTimestamp reads a decimal nanosecond timestamp.
func parseTimestamp(raw []byte) (int64, error) {
	if len(raw) == 0 || len(raw) > 19 {
		// Empty or beyond int64: let strconv say what is wrong.
		return strconv.ParseInt(string(raw), 10, 64)
	}
	var n uint64 // 19 digits fit
	for _, c := range raw {
		if c < '0' || c > '9' {
			return strconv.ParseInt(string(raw), 10, 64) // a sign, or not a number
		}
		n = n*10 + uint64(c-'0')
	}
	if n > math.MaxInt64 {
		return strconv.ParseInt(string(raw), 10, 64)
	}
	return int64(n), nil
}

var errEscape = errors.New("invalid escape in a JSON string")

// appendUnquoted appends the decoded value of a string's raw bytes, the way
// encoding/json decodes it.
func appendUnquoted(dst, raw []byte) ([]byte, error) {
	// In valid UTF-8, whatever lies between escapes is copied as it is.
	valid := utf8.Valid(raw)
	for i := 0; i < len(raw); {
		if valid {
			plain := bytes.IndexByte(raw[i:], '\\')
			if plain < 0 {
				return append(dst, raw[i:]...), nil
			}
			dst = append(dst, raw[i:i+plain]...)
			i += plain
		}
		c := raw[i]
		switch {
		case c == '\\':
			if i+1 == len(raw) {
				return dst, errEscape
			}
			i++
			switch raw[i] {
			case '"', '\\', '/':
				dst = append(dst, raw[i])
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := hex4(raw[i+1:])
				if r < 0 {
					return dst, errEscape
				}
				i += 5
				if utf16.IsSurrogate(r) {
					if len(raw) >= i+6 && raw[i] == '\\' && raw[i+1] == 'u' {
						if pair := utf16.DecodeRune(r, hex4(raw[i+2:])); pair != unicode.ReplacementChar {
							dst = utf8.AppendRune(dst, pair)
							i += 6
							continue
						}
					}
					r = unicode.ReplacementChar
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default:
				return dst, errEscape
			}
			i++
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, size := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, raw[i:i+size]...)
			}
			i += size
		}
	}
	return dst, nil
}

// hex4 reads four hex digits, or returns -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}
