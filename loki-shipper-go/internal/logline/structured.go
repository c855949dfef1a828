package logline

import (
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxJSONDepth bounds nesting so that "[[[[..." cannot exhaust the stack.
const maxJSONDepth = 256

// parseJSONObject reads the top-level keys of a JSON object. String values
// are unescaped; any other value is kept as its JSON text ("42", "true",
// "null", `{"a":1}`). The whole line must be one valid JSON object; a
// duplicate key keeps its last value, as encoding/json does.
func parseJSONObject(s string) (map[string]string, bool) {
	i := skipSpace(s, 0)
	if i >= len(s) || s[i] != '{' {
		return nil, false
	}
	i = skipSpace(s, i+1)
	fields := map[string]string{}
	if i < len(s) && s[i] == '}' {
		return fields, skipSpace(s, i+1) == len(s)
	}
	for {
		if i >= len(s) || s[i] != '"' {
			return nil, false
		}
		key, next, ok := readJSONString(s, i)
		if !ok {
			return nil, false
		}
		i = skipSpace(s, next)
		if i >= len(s) || s[i] != ':' {
			return nil, false
		}
		i = skipSpace(s, i+1)
		var value string
		if i < len(s) && s[i] == '"' {
			value, next, ok = readJSONString(s, i)
		} else {
			next, ok = skipJSONValue(s, i, 0)
			if ok {
				value = s[i:next]
			}
		}
		if !ok {
			return nil, false
		}
		fields[key] = value
		i = skipSpace(s, next)
		if i >= len(s) {
			return nil, false
		}
		switch s[i] {
		case ',':
			i = skipSpace(s, i+1)
		case '}':
			return fields, skipSpace(s, i+1) == len(s)
		default:
			return nil, false
		}
	}
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// readJSONString reads the string starting at s[i] == '"' and returns its
// unescaped value and the index after the closing quote.
func readJSONString(s string, i int) (string, int, bool) {
	start := i + 1
	j := start
	for j < len(s) {
		c := s[j]
		switch {
		case c == '"':
			return s[start:j], j + 1, true
		case c == '\\':
			return unescapeJSONString(s, start)
		case c < 0x20:
			return "", 0, false
		}
		j++
	}
	return "", 0, false
}

// unescapeJSONString is the slow path of readJSONString, for strings with escapes.
func unescapeJSONString(s string, start int) (string, int, bool) {
	var b strings.Builder
	j := start
	for j < len(s) {
		c := s[j]
		switch {
		case c == '"':
			return b.String(), j + 1, true
		case c < 0x20:
			return "", 0, false
		case c != '\\':
			b.WriteByte(c)
			j++
			continue
		}
		if j+1 >= len(s) {
			return "", 0, false
		}
		j++
		switch s[j] {
		case '"', '\\', '/':
			b.WriteByte(s[j])
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := hex4(s, j+1)
			if !ok {
				return "", 0, false
			}
			j += 4
			if utf16.IsSurrogate(r) {
				// A valid pair makes one rune; a lone half becomes U+FFFD, as in encoding/json.
				if r2, ok := hex4(s, j+3); ok && j+2 < len(s) && s[j+1] == '\\' && s[j+2] == 'u' {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						b.WriteRune(dec)
						j += 6
						break
					}
				}
				r = utf8.RuneError
			}
			b.WriteRune(r)
		default:
			return "", 0, false
		}
		j++
	}
	return "", 0, false
}

func hex4(s string, i int) (rune, bool) {
	if i < 0 || i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// skipJSONValue validates the value at s[i] and returns the index after it.
func skipJSONValue(s string, i, depth int) (int, bool) {
	if i >= len(s) || depth > maxJSONDepth {
		return 0, false
	}
	switch c := s[i]; {
	case c == '"':
		_, next, ok := readJSONString(s, i)
		return next, ok
	case c == '{' || c == '[':
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		i = skipSpace(s, i+1)
		if i < len(s) && s[i] == closing {
			return i + 1, true
		}
		for {
			if c == '{' {
				if i >= len(s) || s[i] != '"' {
					return 0, false
				}
				_, next, ok := readJSONString(s, i)
				if !ok {
					return 0, false
				}
				i = skipSpace(s, next)
				if i >= len(s) || s[i] != ':' {
					return 0, false
				}
				i = skipSpace(s, i+1)
			}
			next, ok := skipJSONValue(s, i, depth+1)
			if !ok {
				return 0, false
			}
			i = skipSpace(s, next)
			if i >= len(s) {
				return 0, false
			}
			if s[i] == closing {
				return i + 1, true
			}
			if s[i] != ',' {
				return 0, false
			}
			i = skipSpace(s, i+1)
		}
	case c == 't':
		return literal(s, i, "true")
	case c == 'f':
		return literal(s, i, "false")
	case c == 'n':
		return literal(s, i, "null")
	default:
		return skipJSONNumber(s, i)
	}
}

func literal(s string, i int, word string) (int, bool) {
	if strings.HasPrefix(s[i:], word) {
		return i + len(word), true
	}
	return 0, false
}

func skipJSONNumber(s string, i int) (int, bool) {
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		i = skipDigits(s, i)
	default:
		return 0, false
	}
	if i < len(s) && s[i] == '.' {
		j := skipDigits(s, i+1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := skipDigits(s, i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

func skipDigits(s string, i int) int {
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return i
}

// parseLogfmt reads a line made only of key=value pairs (values may be
// "quoted"). Anything else, such as free text with one "k=v" in it, is not
// logfmt: reading every word of a sentence as a field would fill the fields
// column with noise.
func parseLogfmt(s string) (map[string]string, bool) {
	// Cheap rejection first: most plain lines have no '=' in their first word.
	firstEnd := strings.IndexAny(s, " \t")
	if firstEnd < 0 {
		firstEnd = len(s)
	}
	if eq := strings.IndexByte(s[:firstEnd], '='); eq <= 0 {
		return nil, false
	}
	var fields map[string]string
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i >= len(s) {
			return fields, fields != nil
		}
		keyStart := i
		for i < len(s) && s[i] != '=' && s[i] != ' ' && s[i] != '\t' && s[i] != '"' {
			i++
		}
		if i == keyStart || i >= len(s) || s[i] != '=' {
			return nil, false
		}
		key := s[keyStart:i]
		i++ // '='
		var value string
		if i < len(s) && s[i] == '"' {
			end, escaped := closingQuote(s, i+1)
			if end < 0 {
				return nil, false
			}
			value = s[i+1 : end]
			if escaped {
				if unq, err := strconv.Unquote(s[i : end+1]); err == nil {
					value = unq
				}
			}
			i = end + 1
			if i < len(s) && s[i] != ' ' && s[i] != '\t' {
				return nil, false
			}
		} else {
			valueStart := i
			for i < len(s) && s[i] != ' ' && s[i] != '\t' {
				if s[i] == '"' {
					return nil, false
				}
				i++
			}
			value = s[valueStart:i]
		}
		if fields == nil {
			fields = make(map[string]string, 8)
		}
		fields[key] = value
	}
}

// closingQuote returns the index of the quote that ends a string opened just
// before s[i], and whether the string contains escapes.
func closingQuote(s string, i int) (int, bool) {
	escaped := false
	for i < len(s) {
		switch s[i] {
		case '\\':
			escaped = true
			i += 2
			continue
		case '"':
			return i, escaped
		}
		i++
	}
	return -1, escaped
}
