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
set -eu

bootstrap=${BOOTSTRAP:-kafka:19092}
topics=${TOPICS:-logs logs.dlq}
partitions=${PARTITIONS:-6}
replication=${REPLICATION:-1}
bin=${KAFKA_BIN:-/opt/kafka/bin}

for topic in $topics; do
	"$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --create --if-not-exists \
		--topic "$topic" --partitions "$partitions" --replication-factor "$replication"
done
for topic in $topics; do
	"$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --describe --topic "$topic"
done
