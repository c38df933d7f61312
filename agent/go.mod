module github.com/logpipe/logpipe/agent

go 1.26.8
