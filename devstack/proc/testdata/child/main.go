// Command child is the program package proc's tests run: it prints what its
// flags say, may listen on a port, and waits for SIGTERM.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/logpipe/logpipe/common/logging"
)

func main() {
	stdout := flag.String("stdout", "", "lines to print on stdout, separated by |")
	stderr := flag.String("stderr", "", "lines to print on stderr, separated by |")
	listen := flag.String("listen", "", "listen on 127.0.0.1:0 and log the listening line with this listener name")
	format := flag.String("log-format", "text", "format of the listening line: text or json")
	endpoint := flag.String("endpoint", "", "listen on 127.0.0.1:0 and print '<name>      http://<addr>' on stdout")
	partial := flag.String("partial", "", "text to print on stdout without a newline, before exiting")
	flood := flag.Int("flood", 0, "lines of 100 bytes to print on stderr, then 'flood done'")
	exit := flag.Int("exit", -1, "exit with this status once printed, instead of waiting for SIGTERM")
	ignoreTerm := flag.Bool("ignore-term", false, "ignore SIGTERM")
	flag.Parse()

	term := make(chan os.Signal, 1)
	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(term, syscall.SIGTERM)
	}
	printLines(os.Stdout, *stdout)
	printLines(os.Stderr, *stderr)
	if *listen != "" {
		ln := mustListen()
		defer ln.Close()
		log, err := logging.New("info", *format, os.Stderr, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		logging.Listening(log.WithField("component", "test"), *listen, ln.Addr().String())
	}
	if *endpoint != "" {
		ln := mustListen()
		defer ln.Close()
		fmt.Printf("%-9s http://%s\n", *endpoint, ln.Addr())
	}
	for i := range *flood {
		fmt.Fprintf(os.Stderr, "flood %08d %s\n", i, strings.Repeat("x", 84))
	}
	if *flood > 0 {
		fmt.Fprintln(os.Stderr, "flood done")
	}
	if *partial != "" {
		fmt.Print(*partial)
		os.Exit(0)
	}
	if *exit >= 0 {
		os.Exit(*exit)
	}
	fmt.Println("waiting")
	if *ignoreTerm {
		select {}
	}
	<-term
	fmt.Println("stopping")
}

func printLines(f *os.File, lines string) {
	if lines == "" {
		return
	}
	for _, l := range strings.Split(lines, "|") {
		fmt.Fprintln(f, l)
	}
}

func mustListen() net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return ln
}
