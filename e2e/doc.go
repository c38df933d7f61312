// Package e2e holds the end-to-end tests: the real agent, transfer,
// livetail and devstack binaries run as processes against devstack's
// backends (the pipeline on embedded and on real ones, see
// stack.ForBackends), and the tests check what a user would see: documents
// in the index, lines in a WebSocket client, and a make run stack that
// comes up.
package e2e
