package logline

import "strings"

// Levels are normalised to six names so that a query for "error" finds
// "ERR", "Error" and "severe" alike. The table is schema/logs.json "levels";
// a test keeps the two equal.
var levelAliases = map[string][]string{
	"trace": {"trace", "trc", "finest", "finer", "verbose"},
	"debug": {"debug", "dbg", "fine"},
	"info":  {"info", "inf", "information", "informational", "notice"},
	"warn":  {"warn", "warning", "wrn"},
	"error": {"error", "err", "eror", "severe"},
	"fatal": {"fatal", "ftl", "critical", "crit", "panic", "emerg", "emergency", "alert"},
}

// levelKeys are the field names that carry a level, in order of preference,
// matched case-insensitively (schema/logs.json "level_keys").
var levelKeys = []string{"level", "lvl", "severity", "loglevel", "log_level", "log.level", "levelname"}

// numericLevels is the pino/bunyan scale (schema/logs.json "numeric_levels").
var numericLevels = map[string]string{"10": "trace", "20": "debug", "30": "info", "40": "warn", "50": "error", "60": "fatal"}

// klogPrefixes: klog lines start with a severity letter and MMDD, e.g. "I0102 15:04:05".
var klogPrefixes = map[byte]string{'I': "info", 'W': "warn", 'E': "error", 'F': "fatal"}

var canonicalLevel = func() map[string]string {
	m := make(map[string]string)
	for level, aliases := range levelAliases {
		for _, a := range aliases {
			m[a] = level
		}
	}
	return m
}()

const maxLevelWord = 16

// normalizeLevel maps a level word in any case to its canonical name, or "".
func normalizeLevel(word string) string {
	if len(word) == 0 || len(word) > maxLevelWord {
		return numericLevels[word]
	}
	var buf [maxLevelWord]byte
	for i := 0; i < len(word); i++ {
		c := word[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	if level, ok := canonicalLevel[string(buf[:len(word)])]; ok {
		return level
	}
	return numericLevels[word]
}

func levelFromFields(fields map[string]string) string {
	for _, key := range levelKeys {
		if v, ok := fields[key]; ok {
			return normalizeLevel(strings.TrimSpace(v))
		}
	}
	// Rare: a level key in another case ("Level", "SEVERITY").
	for k, v := range fields {
		for _, key := range levelKeys {
			if len(k) == len(key) && k != key && strings.EqualFold(k, key) {
				return normalizeLevel(strings.TrimSpace(v))
			}
		}
	}
	return ""
}

const (
	prefixTokens = 4   // a level word later than this is part of the message
	prefixBytes  = 128 // and so is one beyond this many bytes
)

// levelFromPrefix finds a level word among the first tokens of a plain line:
// "ERROR ...", "[warn] ...", "2024-01-02 10:00:00,123 INFO ...", "I0102 ...".
// Lower-case words count only when decorated ("[info]", "info:"), so that a
// message such as "fatal error avoided" is not read as a level, unless it
// is written in capitals.
func levelFromPrefix(body string) string {
	if len(body) > prefixBytes {
		body = body[:prefixBytes]
	}
	for i := 0; i < prefixTokens && len(body) > 0; i++ {
		body = strings.TrimLeft(body, " \t")
		end := strings.IndexAny(body, " \t")
		if end < 0 {
			end = len(body)
		}
		token := body[:end]
		body = body[end:]
		if i == 0 && isKlogHeader(token) {
			return klogPrefixes[token[0]]
		}
		word := strings.TrimLeft(token, "[(<")
		decorated := len(word) != len(token)
		trimmed := strings.TrimRight(word, "])>:,|")
		decorated = decorated || len(trimmed) != len(word)
		if trimmed == "" {
			continue
		}
		if !decorated && !isUpper(trimmed) {
			continue
		}
		if level := normalizeLevel(trimmed); level != "" && !isNumeric(trimmed) {
			return level
		}
	}
	return ""
}

func isKlogHeader(token string) bool {
	if len(token) != 5 {
		return false
	}
	if _, ok := klogPrefixes[token[0]]; !ok {
		return false
	}
	return isNumeric(token[1:])
}

func isUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			return false
		}
	}
	return true
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
