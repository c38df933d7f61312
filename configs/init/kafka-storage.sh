#!/bin/sh
# Formats the Kafka data volume of the secured compose variant
# (docker-compose.secure.yml, service init-kafka-storage) with the SCRAM
# user the clients log in as, once: a volume already formatted is left as
# it is. The broker has no plaintext listener its clients could reach to
# create a user later, so the user is made with the storage. Runs in the
# Kafka image, as the broker's user, before the broker starts.
#
#   CLUSTER_ID     the cluster id; the kafka service must have the same
#   LOG_DIRS       the data directory            (/var/lib/kafka/data)
#   KAFKA_USER     the SCRAM-SHA-512 user        (logpipe)
#   PASSWORD_FILE  the file holding its password (a compose secret)
#   KAFKA_BIN      Kafka's bin directory         (/opt/kafka/bin)
#
# kafka-storage.sh takes the credential only as an argument: it is on this
# one-shot container's command line while the format runs.
set -eu

dir=${LOG_DIRS:-/var/lib/kafka/data}
user=${KAFKA_USER:-logpipe}
bin=${KAFKA_BIN:-/opt/kafka/bin}

if [ -s "$dir/meta.properties" ]; then
	echo "$dir is already formatted"
	exit 0
fi
props=$(mktemp)
trap 'rm -f "$props"' EXIT
cat >"$props" <<PROPS
node.id=1
process.roles=broker,controller
controller.quorum.voters=1@kafka:9093
controller.listener.names=CONTROLLER
listeners=CONTROLLER://:9093
log.dirs=$dir
PROPS
password=$(tr -d '\n' <"${PASSWORD_FILE:?PASSWORD_FILE is not set}")
"$bin/kafka-storage.sh" format --cluster-id "${CLUSTER_ID:?CLUSTER_ID is not set}" --config "$props" \
	--add-scram "SCRAM-SHA-512=[name=$user,password=$password]"
echo "formatted $dir with SCRAM-SHA-512 user $user"
