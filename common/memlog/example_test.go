package memlog_test

import (
	"fmt"
	"net/http"

	"github.com/logpipe/logpipe/common/memlog"
)

func ExampleRing() {
	ring := memlog.New(16)
	fmt.Fprintln(ring, "first line")
	fmt.Fprintln(ring, "second")
	fmt.Fprint(ring, "third, not finished")
	fmt.Printf("%q\n", ring.Lines())
	// Output: ["second"]
}

func ExampleRing_SnapshotAndSubscribe() {
	ring := memlog.New(1 << 10)
	fmt.Fprintln(ring, "before")

	past, lines, cancel := ring.SnapshotAndSubscribe(16)
	defer cancel()
	fmt.Fprintln(ring, "after")

	fmt.Println(past, <-lines)
	// Output: [before] after
}

func ExampleRing_Handler() {
	ring := memlog.New(1 << 20)
	mux := http.NewServeMux()
	// curl http://HOST/debug/logs prints the retained lines;
	// websocat ws://HOST/debug/logs prints them and then follows.
	mux.Handle("GET /debug/logs", ring.Handler())
}
