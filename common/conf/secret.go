package conf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// FileSuffix names the flag that reads a secret from a file: the flag
// "kafka-sasl-password" has "kafka-sasl-password-file".
const FileSuffix = "-file"

// ErrSecretFile is returned by ReadSecret for a file that cannot be read,
// is empty, or is given together with the value itself.
var ErrSecretFile = errors.New("secret file")

// ReadSecret fills *value from file, the value of the flag name+FileSuffix,
// when file is set: secrets mounted as files (Docker and Kubernetes
// secrets) then never pass through the environment or the command line.
// One trailing newline is trimmed. A file that cannot be read or is empty,
// or a file given together with the value, is an error that names the flag
// and the file but never the value.
func ReadSecret(value *string, name, file string) error {
	if file == "" {
		return nil
	}
	fileFlag := name + FileSuffix
	if *value != "" {
		return fmt.Errorf("%w: --%s and --%s (or %s) are both set: use one", ErrSecretFile, fileFlag, name, EnvName(name))
	}
	data, err := os.ReadFile(file)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("%w: --%s %s: %v", ErrSecretFile, fileFlag, file, err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if s == "" {
		return fmt.Errorf("%w: --%s %s: the file is empty", ErrSecretFile, fileFlag, file)
	}
	*value = s
	return nil
}

// SecretWarning is the line to log when the secret flag name was given on
// the command line, where other users can read it; "" when it was not.
func SecretWarning(args []string, name string) string {
	if !OnCommandLine(args, name) {
		return ""
	}
	return "--" + name + " was given on the command line, where other users can read it; set " + EnvName(name) + " or --" + name + FileSuffix + " instead"
}

// OnCommandLine reports whether the flag name is among args.
func OnCommandLine(args []string, name string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		a = strings.TrimLeft(a, "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}
