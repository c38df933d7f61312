package conf

import (
	"fmt"
	"strconv"
	"strings"
)

// List is a comma-separated list flag ("a:9092,b:9092"). Setting it replaces
// the whole list, so that env and file values do not append to the default.
type List []string

// String implements flag.Value.
func (l *List) String() string { return strings.Join(*l, ",") }

// Set implements flag.Value.
func (l *List) Set(s string) error {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return fmt.Errorf("empty list")
	}
	*l = out
	return nil
}

// Bytes is a size flag: a number of bytes with an optional unit, "512",
// "64KiB", "1MiB", "2GiB" (also KB/MB/GB, read as powers of 1024).
type Bytes int64

// String implements flag.Value.
func (b *Bytes) String() string {
	n := int64(*b)
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

// Set implements flag.Value.
func (b *Bytes) Set(s string) error {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"GiB", 1 << 30}, {"GB", 1 << 30}, {"G", 1 << 30}, {"MiB", 1 << 20}, {"MB", 1 << 20}, {"M", 1 << 20}, {"KiB", 1 << 10}, {"KB", 1 << 10}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.size
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("want a size such as 512, 64KiB or 1MiB")
	}
	*b = Bytes(n * mult)
	return nil
}

// OneOf is a string flag restricted to a set of values.
type OneOf struct {
	Value   string
	Allowed []string
}

// String implements flag.Value.
func (o *OneOf) String() string {
	if o == nil {
		return ""
	}
	return o.Value
}

// Set implements flag.Value.
func (o *OneOf) Set(s string) error {
	for _, a := range o.Allowed {
		if s == a {
			o.Value = s
			return nil
		}
	}
	return fmt.Errorf("want one of %s", strings.Join(o.Allowed, ", "))
}
