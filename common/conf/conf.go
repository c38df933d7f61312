// Package conf is the configuration plumbing every logpipe binary shares:
// kebab-case flags, the same names as environment variables
// LOGPIPE_<FLAG_IN_UPPER_SNAKE>, and an optional --config FILE.yaml whose keys
// are the flag names. Precedence: flag > env > file > default.
//
// A binary registers its flags on a standard flag.FlagSet, calls Parse, then
// validates. main passes any error to Exit, which prints one line and exits
// with code 2 (0 for --help).
package conf

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment variable that sets a flag.
const EnvPrefix = "LOGPIPE_"

// ConfigFlag is the flag (and LOGPIPE_CONFIG) naming the YAML file.
const ConfigFlag = "config"

var (
	// ErrHelp is returned by Parse when --help or -h was given; usage has been printed.
	ErrHelp = flag.ErrHelp
	// ErrFile is returned for a config file that cannot be read or parsed.
	ErrFile = errors.New("config file")
	// ErrValue wraps a bad value from any source.
	ErrValue = errors.New("bad value")
)

// EnvName is the environment variable for flag name: "kafka-brokers" → "LOGPIPE_KAFKA_BROKERS".
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Parse parses args into fs and then fills every flag that was not given on
// the command line from the environment and then from the YAML file. It
// registers --config itself when fs lacks it. Usage goes to fs.Output() (stderr
// by default) only for --help; errors are returned, one line each, naming the
// flag, the source and the value.
func Parse(fs *flag.FlagSet, args []string, env func(string) (string, bool)) error {
	if env == nil {
		env = os.LookupEnv
	}
	if fs.Lookup(ConfigFlag) == nil {
		fs.String(ConfigFlag, "", "YAML file of flag values (keys are flag names)")
	}
	out := fs.Output()
	fs.Usage = func() {} // errors are returned as one line, not printed with the usage
	fs.SetOutput(io.Discard)
	defer fs.SetOutput(out)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			Usage(out, fs)
			return ErrHelp
		}
		msg := strings.Replace(err.Error(), "flag -", "flag --", 1)
		msg = strings.Replace(msg, "defined: -", "defined: --", 1)
		return fmt.Errorf("%w: %s", ErrValue, msg)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (flags start with --)", ErrValue, fs.Arg(0))
	}

	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	// The environment, for flags not on the command line.
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		if v, ok := env(EnvName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%w: %s=%q: %v", ErrValue, EnvName(f.Name), v, e)
				return
			}
			given[f.Name] = true
		}
	})
	if err != nil {
		return err
	}

	// The file, for flags set neither way.
	path := fs.Lookup(ConfigFlag).Value.String()
	if path == "" {
		return nil
	}
	values, err := readFile(path)
	if err != nil {
		return err
	}
	for _, name := range sortedKeys(values) {
		f := fs.Lookup(name)
		if f == nil || name == ConfigFlag {
			return fmt.Errorf("%w %s: unknown key %q (keys are flag names, such as %q)", ErrFile, path, name, anyFlag(fs))
		}
		if given[name] {
			continue
		}
		if e := fs.Set(name, values[name]); e != nil {
			return fmt.Errorf("%w: %s: %s: %q: %v", ErrValue, path, name, values[name], e)
		}
	}
	return nil
}

// readFile reads a flat YAML mapping of flag names to scalars or lists of
// scalars (a list becomes a comma-separated value).
func readFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFile, err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w %s: %s", ErrFile, path, oneLine(err.Error()))
	}
	values := make(map[string]string, len(raw))
	for k, v := range raw {
		s, err := scalar(v)
		if err != nil {
			return nil, fmt.Errorf("%w %s: key %q: %v", ErrFile, path, k, err)
		}
		values[k] = s
	}
	return values, nil
}

func scalar(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			s, err := scalar(e)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("want a scalar or a list, got %T", v)
}

// Usage writes every flag with its default and environment variable.
func Usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage of %s:\n", fs.Name())
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%s\n    \t%s (default %q; env %s)\n", line, usage, f.DefValue, EnvName(f.Name))
	})
	fmt.Fprintf(w, "Precedence: flag > environment > --config file > default.\n")
}

// Exit ends a binary whose configuration failed: status 0 after --help,
// otherwise one line "<binary>: <error>" on stderr and status 2.
func Exit(binary string, err error) {
	if errors.Is(err, ErrHelp) {
		os.Exit(0)
	}
	fmt.Fprintf(os.Stderr, "%s: %s\n", binary, oneLine(err.Error()))
	os.Exit(2)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func anyFlag(fs *flag.FlagSet) string {
	name := ""
	fs.VisitAll(func(f *flag.Flag) {
		if name == "" && f.Name != ConfigFlag {
			name = f.Name
		}
	})
	return name
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
