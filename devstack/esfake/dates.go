package esfake

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// defaultDateFormat is the format of a date field that does not name one.
const defaultDateFormat = "strict_date_optional_time||epoch_millis"

// dateUnit is the smallest unit a parsed date gave. Range queries round a
// date up to the end of that unit for gt and lte, as Elasticsearch fills
// missing date components.
type dateUnit int

const (
	unitMilli dateUnit = iota
	unitSecond
	unitMinute
	unitHour
	unitDay
	unitWeek
	unitMonth
	unitYear
)

// dateFormat parses dates as a date field's "format" parameter says:
// alternatives separated by "||", each a named format or a simple
// yyyy-MM-dd style pattern.
type dateFormat struct {
	spec    string
	parsers []func(s string, loc *time.Location) (time.Time, dateUnit, bool)
}

func newDateFormat(spec string) (*dateFormat, error) {
	f := &dateFormat{spec: spec}
	for _, name := range strings.Split(spec, "||") {
		name = strings.TrimSpace(name)
		switch name {
		case "strict_date_optional_time", "strict_date_optional_time_nanos", "strict_date_time",
			"strict_date_time_no_millis", "strict_date", "strict_date_hour_minute_second",
			"strict_date_hour_minute_second_millis", "strict_date_hour_minute_second_fraction":
			f.parsers = append(f.parsers, isoParser(true))
		case "date_optional_time", "date_time", "date_time_no_millis", "date",
			"date_hour_minute_second", "date_hour_minute_second_millis", "date_hour_minute_second_fraction":
			f.parsers = append(f.parsers, isoParser(false))
		case "epoch_millis":
			f.parsers = append(f.parsers, epochParser(1))
		case "epoch_second":
			f.parsers = append(f.parsers, epochParser(1000))
		default:
			layout, err := javaLayout(name)
			if err != nil {
				return nil, err
			}
			f.parsers = append(f.parsers, func(s string, loc *time.Location) (time.Time, dateUnit, bool) {
				t, err := time.ParseInLocation(layout, s, loc)
				return t, unitMilli, err == nil
			})
		}
	}
	return f, nil
}

var defaultDates = mustDateFormat(defaultDateFormat)

// defaultDynamicDates are the formats date detection tries when a mapping
// has no dynamic_date_formats, as in Elasticsearch: ISO 8601, then
// slashed dates such as 2026/11/21 and 2026/11/21 10:00:00.
var defaultDynamicDates = []*dateFormat{defaultDates, slashedDates}

var slashedDates = mustDateFormat("yyyy/MM/dd HH:mm:ss||yyyy/MM/dd||epoch_millis")

// parseDynamicDateFormats reads a mapping's dynamic_date_formats: a list of
// date formats.
func parseDynamicDateFormats(v any) ([]*dateFormat, *esError) {
	list, ok := v.([]any)
	if !ok {
		list = []any{v}
	}
	var out []*dateFormat
	for _, x := range list {
		spec, _ := x.(string)
		f, err := newDateFormat(spec)
		if err != nil || spec == "" {
			return nil, newError(400, "mapper_parsing_exception", "Invalid format: [%v]: %v", x, err)
		}
		out = append(out, f)
	}
	return out, nil
}

func mustDateFormat(spec string) *dateFormat {
	f, err := newDateFormat(spec)
	if err != nil {
		panic(err)
	}
	return f
}

// parse reads s with the first parser that accepts it. Dates without a
// zone are in loc (UTC unless a query says otherwise).
func (f *dateFormat) parse(s string, loc *time.Location) (time.Time, dateUnit, bool) {
	if loc == nil {
		loc = time.UTC
	}
	for _, p := range f.parsers {
		if t, u, ok := p(s, loc); ok {
			return t, u, true
		}
	}
	return time.Time{}, 0, false
}

// millis parses a field value to epoch milliseconds.
func (f *dateFormat) millis(s string) (int64, bool) {
	t, _, ok := f.parse(s, time.UTC)
	if !ok {
		return 0, false
	}
	return t.UnixMilli(), true
}

func (f *dateFormat) parseError(field, value string) *esError {
	return &esError{
		status: 400,
		typ:    "illegal_argument_exception",
		reason: fmt.Sprintf("failed to parse date field [%s] with format [%s]", value, f.spec),
		causedBy: &esError{
			typ:    "date_time_parse_exception",
			reason: "Failed to parse with all enclosed parsers",
		},
	}
}

// isoParser reads ISO 8601 dates as strict_date_optional_time does:
// yyyy[-MM[-dd['T'HH[:mm[:ss[.fraction]]][zone]]]]. The strict variant wants
// four-digit years and two-digit fields.
func isoParser(strict bool) func(string, *time.Location) (time.Time, dateUnit, bool) {
	return func(s string, loc *time.Location) (time.Time, dateUnit, bool) {
		return parseISO(s, strict, loc)
	}
}

func parseISO(s string, strict bool, loc *time.Location) (time.Time, dateUnit, bool) {
	p := 0
	num := func(min, max int) (int, bool) {
		start := p
		for p < len(s) && p-start < max && s[p] >= '0' && s[p] <= '9' {
			p++
		}
		if p-start < min {
			return 0, false
		}
		n, err := strconv.Atoi(s[start:p])
		return n, err == nil
	}
	two := 1
	yearMax := 9
	if strict {
		two = 2
		yearMax = 4
	}
	year, ok := num(4, yearMax)
	if !ok && !strict {
		p = 0
		year, ok = num(1, yearMax)
	}
	if !ok {
		return time.Time{}, 0, false
	}
	month, day, hour, minute, sec, nsec := 1, 1, 0, 0, 0, 0
	unit := unitYear
	zone := loc
	if p < len(s) && s[p] == '-' {
		p++
		if month, ok = num(two, 2); !ok {
			return time.Time{}, 0, false
		}
		unit = unitMonth
		if p < len(s) && s[p] == '-' {
			p++
			if day, ok = num(two, 2); !ok {
				return time.Time{}, 0, false
			}
			unit = unitDay
		}
	}
	if unit == unitDay && p < len(s) && s[p] == 'T' {
		p++
		if hour, ok = num(two, 2); !ok {
			return time.Time{}, 0, false
		}
		unit = unitHour
		if p < len(s) && s[p] == ':' {
			p++
			if minute, ok = num(two, 2); !ok {
				return time.Time{}, 0, false
			}
			unit = unitMinute
			if p < len(s) && s[p] == ':' {
				p++
				if sec, ok = num(two, 2); !ok {
					return time.Time{}, 0, false
				}
				unit = unitSecond
				if p < len(s) && (s[p] == '.' || s[p] == ',') {
					p++
					start := p
					frac, ok := num(1, 9)
					if !ok {
						return time.Time{}, 0, false
					}
					nsec = frac * int(math.Pow10(9-(p-start)))
					unit = unitMilli
				}
			}
		}
		if p < len(s) {
			z, ok := parseZone(s[p:])
			if !ok {
				return time.Time{}, 0, false
			}
			zone = z
			p = len(s)
		}
	}
	if p != len(s) || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, 0, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, zone)
	if t.Day() != day { // February 30th and the like
		return time.Time{}, 0, false
	}
	return t, unit, true
}

// parseZone reads Z, ±HH, ±HHmm or ±HH:mm.
func parseZone(z string) (*time.Location, bool) {
	if z == "Z" {
		return time.UTC, true
	}
	if len(z) < 3 || (z[0] != '+' && z[0] != '-') {
		return nil, false
	}
	digits := strings.Replace(z[1:], ":", "", 1)
	if len(digits) != 2 && len(digits) != 4 {
		return nil, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return nil, false
		}
	}
	h, _ := strconv.Atoi(digits[:2])
	m := 0
	if len(digits) == 4 {
		m, _ = strconv.Atoi(digits[2:])
	}
	if h > 18 || m > 59 {
		return nil, false
	}
	off := h*3600 + m*60
	if z[0] == '-' {
		off = -off
	}
	return time.FixedZone("", off), true
}

// epochParser reads epoch_millis (scale 1) or epoch_second (scale 1000),
// with an optional fraction.
func epochParser(scale float64) func(string, *time.Location) (time.Time, dateUnit, bool) {
	return func(s string, _ *time.Location) (time.Time, dateUnit, bool) {
		if s == "" || strings.ContainsAny(s, "eE+") || strings.HasPrefix(s, ".") {
			return time.Time{}, 0, false
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && scale == 1 {
			return time.UnixMilli(n).UTC(), unitMilli, true
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return time.Time{}, 0, false
		}
		ms := f * scale
		if math.Abs(ms) > 9e15 {
			return time.Time{}, 0, false
		}
		return time.UnixMilli(int64(ms)).UTC(), unitMilli, true
	}
}

// javaLayout turns a simple Java date pattern such as
// yyyy-MM-dd'T'HH:mm:ss.SSSXXX into a Go time layout.
func javaLayout(pattern string) (string, error) {
	tokens := []struct{ java, goLayout string }{
		{"yyyy", "2006"}, {"uuuu", "2006"}, {"yy", "06"},
		{"MMMM", "January"}, {"MMM", "Jan"}, {"MM", "01"}, {"M", "1"},
		{"dd", "02"}, {"d", "2"}, {"EEEE", "Monday"}, {"EEE", "Mon"},
		{"HH", "15"}, {"hh", "03"}, {"h", "3"}, {"mm", "04"}, {"ss", "05"},
		{"SSSSSSSSS", "000000000"}, {"SSSSSS", "000000"}, {"SSS", "000"},
		{"XXX", "Z07:00"}, {"XX", "Z0700"}, {"X", "Z07"}, {"ZZZ", "-0700"}, {"Z", "-0700"}, {"a", "PM"},
	}
	var b strings.Builder
	for i := 0; i < len(pattern); {
		c := pattern[i]
		if c == '\'' {
			end := strings.IndexByte(pattern[i+1:], '\'')
			if end < 0 {
				return "", fmt.Errorf("invalid date format [%s]: unterminated quote", pattern)
			}
			b.WriteString(pattern[i+1 : i+1+end])
			i += end + 2
			continue
		}
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') {
			found := false
			for _, t := range tokens {
				if strings.HasPrefix(pattern[i:], t.java) {
					b.WriteString(t.goLayout)
					i += len(t.java)
					found = true
					break
				}
			}
			if !found {
				return "", fmt.Errorf("invalid date format [%s]: esfake does not support the pattern letter [%c]", pattern, c)
			}
			continue
		}
		b.WriteByte(c)
		i++
	}
	return b.String(), nil
}

// roundDown truncates t to the start of unit u, in t's location.
func roundDown(t time.Time, u dateUnit) time.Time {
	y, mo, d := t.Date()
	loc := t.Location()
	switch u {
	case unitYear:
		return time.Date(y, 1, 1, 0, 0, 0, 0, loc)
	case unitMonth:
		return time.Date(y, mo, 1, 0, 0, 0, 0, loc)
	case unitWeek:
		wd := (int(t.Weekday()) + 6) % 7 // Monday is 0
		return time.Date(y, mo, d-wd, 0, 0, 0, 0, loc)
	case unitDay:
		return time.Date(y, mo, d, 0, 0, 0, 0, loc)
	case unitHour:
		return time.Date(y, mo, d, t.Hour(), 0, 0, 0, loc)
	case unitMinute:
		return time.Date(y, mo, d, t.Hour(), t.Minute(), 0, 0, loc)
	case unitSecond:
		return time.Date(y, mo, d, t.Hour(), t.Minute(), t.Second(), 0, loc)
	default:
		return t.Truncate(time.Millisecond)
	}
}

// roundUp gives the last millisecond of the unit u that holds t.
func roundUp(t time.Time, u dateUnit) time.Time {
	return addUnit(roundDown(t, u), u, 1).Add(-time.Millisecond)
}

func addUnit(t time.Time, u dateUnit, n int) time.Time {
	switch u {
	case unitYear:
		return t.AddDate(n, 0, 0)
	case unitMonth:
		return t.AddDate(0, n, 0)
	case unitWeek:
		return t.AddDate(0, 0, 7*n)
	case unitDay:
		return t.AddDate(0, 0, n)
	case unitHour:
		return t.Add(time.Duration(n) * time.Hour)
	case unitMinute:
		return t.Add(time.Duration(n) * time.Minute)
	case unitSecond:
		return t.Add(time.Duration(n) * time.Second)
	default:
		return t.Add(time.Duration(n) * time.Millisecond)
	}
}

var mathUnits = map[byte]dateUnit{
	'y': unitYear, 'M': unitMonth, 'w': unitWeek, 'd': unitDay,
	'h': unitHour, 'H': unitHour, 'm': unitMinute, 's': unitSecond,
}

// dateMath evaluates a date in a query: a date in format f, "now", or
// either followed by date math ("now-5m", "2026-01-01||+1M/d"). With up
// set, the result is rounded up the way gt and lte bounds are.
func dateMath(expr string, f *dateFormat, loc *time.Location, now time.Time, up bool) (int64, *esError) {
	if loc == nil {
		loc = time.UTC
	}
	var anchor time.Time
	var rest string // the date math after the anchor
	switch {
	case strings.HasPrefix(expr, "now"):
		anchor, rest = now.In(loc), expr[3:]
	case strings.Contains(expr, "||"):
		i := strings.Index(expr, "||")
		t, _, ok := f.parse(expr[:i], loc)
		if !ok {
			return 0, dateParseFailure(expr, f)
		}
		anchor, rest = t, expr[i+2:]
	default:
		t, unit, ok := f.parse(expr, loc)
		if !ok {
			return 0, dateParseFailure(expr, f)
		}
		if up && unit != unitMilli {
			t = roundUp(t, unit)
		}
		return t.UnixMilli(), nil
	}
	t := anchor
	for i := 0; i < len(rest); {
		op := rest[i]
		i++
		switch op {
		case '/':
			if i >= len(rest) {
				return 0, dateParseFailure(expr, f)
			}
			u, ok := mathUnits[rest[i]]
			if !ok {
				return 0, dateParseFailure(expr, f)
			}
			i++
			if up {
				t = roundUp(t, u)
			} else {
				t = roundDown(t, u)
			}
		case '+', '-':
			start := i
			for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
				i++
			}
			n := 1
			if i > start {
				n, _ = strconv.Atoi(rest[start:i])
			}
			if i >= len(rest) {
				return 0, dateParseFailure(expr, f)
			}
			u, ok := mathUnits[rest[i]]
			if !ok {
				return 0, dateParseFailure(expr, f)
			}
			i++
			if op == '-' {
				n = -n
			}
			t = addUnit(t, u, n)
		default:
			return 0, dateParseFailure(expr, f)
		}
	}
	return t.UnixMilli(), nil
}

func dateParseFailure(expr string, f *dateFormat) *esError {
	return &esError{
		status: 400,
		typ:    "parse_exception",
		reason: fmt.Sprintf("failed to parse date field [%s] with format [%s]: [failed to parse date field [%s] with format [%s]]", expr, f.spec, expr, f.spec),
	}
}
