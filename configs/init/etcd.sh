#!/bin/sh
# Puts the example collect config into etcd at /logpipe/agents/$AGENT_NAME,
# unless that key already exists: a config changed with etcdctl survives the
# next `docker compose up`. To go back to the example, delete the key
# (etcdctl del /logpipe/agents/node-1) and run this again.
#
# etcd's images have no shell, so this talks to etcd's JSON gateway with
# curl: a transaction "if the key was never created, put it". Runs in the curl
# image (docker-compose.yml, service init-etcd).
#
#   ETCD_URL     etcd client URL       (http://etcd:2379)
#   AGENT_NAME   the agent's --name    (node-1)
#   CONFIG_FILE  the collect config    (/configs/agent-config.json)
set -eu

etcd=${ETCD_URL:-http://etcd:2379}
name=${AGENT_NAME:-node-1}
file=${CONFIG_FILE:-/configs/agent-config.json}
key=/logpipe/agents/$name

b64() { base64 | tr -d '\n'; }

k=$(printf '%s' "$key" | b64)
v=$(b64 <"$file")
body='{"compare":[{"key":"'$k'","target":"CREATE","result":"EQUAL","create_revision":"0"}],"success":[{"request_put":{"key":"'$k'","value":"'$v'"}}]}'

resp=$(curl -fsS --retry 10 --retry-connrefused --retry-delay 1 -X POST "$etcd/v3/kv/txn" -d "$body")
resp=$(printf '%s' "$resp" | tr -d ' \n')
case $resp in
*'"succeeded":true'*) echo "put $file at $key" ;;
*'"header"'*) echo "kept the config already at $key" ;;
*)
	echo "unexpected answer from $etcd: $resp" >&2
	exit 1
	;;
esac
