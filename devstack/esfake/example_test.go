package esfake_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/logpipe/logpipe/devstack/esfake"
)

// Serve esfake with httptest and use the official client against it.
func Example() {
	srv := esfake.New()
	ts := httptest.NewServer(srv)
	defer ts.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()

	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{ts.URL}, Transport: tr})
	if err != nil {
		panic(err)
	}
	res, err := es.Bulk(strings.NewReader(`{"create":{"_index":"greetings","_id":"1"}}` + "\n" + `{"text":"hello"}` + "\n"))
	if err != nil {
		panic(err)
	}
	res.Body.Close()
	fmt.Println(res.StatusCode, srv.Count("greetings"))
	fmt.Println(string(srv.Docs("greetings")[0].Source))
	// Output:
	// 200 1
	// {"text":"hello"}
}

func ExampleStartupLine() {
	fmt.Println(esfake.StartupLine("127.0.0.1:9200"))
	// Output: esfake (development stand-in for Elasticsearch, not Elasticsearch) listening on http://127.0.0.1:9200
}
