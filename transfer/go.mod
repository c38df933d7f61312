module github.com/logpipe/logpipe/transfer

go 1.26.8
