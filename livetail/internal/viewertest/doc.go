// Package viewertest tests livetail's browser viewer (the static files of
// package web) in a real headless Chromium driven by chromedp, against a real
// livetail process reading devstack's Kafka: kfake, and for the subtests
// named "real" the shared Apache Kafka of the test run (see stack.New). The
// tests need Debian's chromium at /usr/bin/chromium, which `make test`
// installs when it is missing.
//
// Screenshots of the page with data are written to the tests' artifact
// directories: run `go test -artifacts -outputdir DIR ./internal/viewertest`
// to keep them under DIR/_artifacts/, or set LOGPIPE_ARTIFACTS to a
// directory.
package viewertest
