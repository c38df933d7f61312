// Package real runs logpipe's real backends for development and tests:
// Apache Kafka (a single KRaft node, broker and controller in one JVM) and
// OpenSearch (a single node embedded in a JVM) behind a small proxy that
// makes it answer Elasticsearch clients. Each runs as a child process of
// the Go program, which stops it on Close and, through the kernel, when it
// dies.
//
// The jars come from Maven Central through the pinned Maven projects in
// kafka/pom.xml and opensearch/pom.xml beside this file, which are built
// into the Go binary. Prepare fetches them once with Maven, compiles the two
// small Java mains in kafka/src and opensearch/src with javac, and keeps the
// result in a cache folder (see CacheDir) keyed by a hash of those files, so
// later runs start without Maven:
//
//	dist, err := real.Prepare(ctx, log)
//	k, err := real.StartKafka(ctx, dist, real.KafkaOptions{Topics: []string{"logs"}})
//	defer k.Close()
//	node, err := real.StartOpenSearch(ctx, dist, real.OpenSearchOptions{})
//	defer node.Close()
//
// Java (17 or newer) and Maven must be on the PATH; make test-deps installs
// Debian's openjdk-17-jdk-headless and maven.
//
// Addresses with port 0 get a random loopback port below the kernel's
// ephemeral range (32768), and a start that finds the port taken tries
// another one. The JVMs write their output to a log file in their data
// folder (kafka.log, opensearch.log); a failed start returns the first
// lines that look like errors and the last lines.
package real
