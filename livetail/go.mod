module github.com/logpipe/logpipe/livetail

go 1.26.8
