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
#
# Against a secured etcd (docker-compose.secure.yml), also:
#   CA_FILE, CERT_FILE, KEY_FILE  TLS: etcd's CA, the client certificate and key
#   ETCD_USER, ETCD_PASSWORD_FILE a user who may write the key, used once auth
#                                 is enabled (before that, no user is needed)
set -eu

etcd=${ETCD_URL:-http://etcd:2379}
name=${AGENT_NAME:-node-1}
file=${CONFIG_FILE:-/configs/agent-config.json}
key=/logpipe/agents/$name

b64() { base64 | tr -d '\n'; }

# post PATH BODY CURL_OPTIONS...: etcd's JSON gateway, with the token once
# there is one. The TLS options are kept in "$@".
set --
[ -n "${CA_FILE:-}" ] && set -- "$@" --cacert "$CA_FILE"
[ -n "${CERT_FILE:-}" ] && set -- "$@" --cert "$CERT_FILE" --key "${KEY_FILE:?KEY_FILE is not set}"
token=
post() {
	path=$1 data=$2
	shift 2
	if [ -n "$token" ]; then
		set -- "$@" -H "Authorization: $token"
	fi
	curl -fsS --retry 10 --retry-connrefused --retry-delay 1 "$@" -X POST "$etcd$path" -d "$data"
}
if [ -n "${ETCD_USER:-}" ]; then
	# The password goes in the request body, read from curl's standard input.
	auth=$(printf '{"name":"%s","password":"%s"}' "$ETCD_USER" "$(cat "${ETCD_PASSWORD_FILE:?ETCD_PASSWORD_FILE is not set}")" |
		curl -sS --retry 10 --retry-connrefused --retry-delay 1 "$@" -X POST "$etcd/v3/auth/authenticate" -d @- | tr -d ' \n')
	case $auth in
	*'"token":"'*) token=${auth#*\"token\":\"}; token=${token%%\"*} ;;
	*'notenabled'*) ;; # auth is off (spaces are stripped): no token needed
	*)
		echo "cannot authenticate to $etcd as $ETCD_USER: $auth" >&2
		exit 1
		;;
	esac
fi

k=$(printf '%s' "$key" | b64)
v=$(b64 <"$file")
body='{"compare":[{"key":"'$k'","target":"CREATE","result":"EQUAL","create_revision":"0"}],"success":[{"request_put":{"key":"'$k'","value":"'$v'"}}]}'

resp=$(post /v3/kv/txn "$body" "$@")
resp=$(printf '%s' "$resp" | tr -d ' \n')
case $resp in
*'"succeeded":true'*) echo "put $file at $key" ;;
*'"header"'*) echo "kept the config already at $key" ;;
*)
	echo "unexpected answer from $etcd: $resp" >&2
	exit 1
	;;
esac
