#!/bin/sh
# Creates the Kafka topics of the pipeline, once: a topic that already exists
# is left as it is (its partition count is not changed, since that would move
# jobs to other partitions). Runs in the Kafka image (docker-compose.yml,
# service init-topics).
#
#   BOOTSTRAP   Kafka bootstrap server   (kafka:19092)
#   TOPICS      topics to create         ("logs logs.dlq")
#   PARTITIONS  partitions of each topic (6)
#   REPLICATION replication factor       (1)
#   KAFKA_BIN   Kafka's bin directory    (/opt/kafka/bin)
#
# Against a SASL_SSL listener (docker-compose.secure.yml), also:
#   SASL_USERNAME       the SCRAM-SHA-512 user
#   SASL_PASSWORD_FILE  the file holding its password (a compose secret)
#   CA_FILE             the PEM CA of the broker's certificate
# The client properties, which hold the password, are written to a private
# temporary file, never to the command line.
set -eu

bootstrap=${BOOTSTRAP:-kafka:19092}
topics=${TOPICS:-logs logs.dlq}
partitions=${PARTITIONS:-6}
replication=${REPLICATION:-1}
bin=${KAFKA_BIN:-/opt/kafka/bin}

set --
if [ -n "${SASL_PASSWORD_FILE:-}" ]; then
	props=$(mktemp)
	trap 'rm -f "$props"' EXIT
	chmod 600 "$props"
	password=$(cat "$SASL_PASSWORD_FILE")
	cat >"$props" <<-PROPS
	security.protocol=SASL_SSL
	sasl.mechanism=SCRAM-SHA-512
	sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="${SASL_USERNAME:?SASL_USERNAME is not set}" password="$password";
	ssl.truststore.type=PEM
	ssl.truststore.location=${CA_FILE:?CA_FILE is not set}
	PROPS
	set -- --command-config "$props"
fi

for topic in $topics; do
	"$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" "$@" --create --if-not-exists \
		--topic "$topic" --partitions "$partitions" --replication-factor "$replication"
done
for topic in $topics; do
	"$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" "$@" --describe --topic "$topic"
done
