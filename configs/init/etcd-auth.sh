#!/bin/sh
# Turns etcd's auth on for the secured compose variant
# (docker-compose.secure.yml, service init-etcd-auth), once: when auth is
# already enabled, nothing is done. Creates the root user, and the agent's
# user with the smallest role it needs (README, "Connecting to secured
# clusters"): read its config key, read and write its status key. Runs in
# the curl image against etcd's JSON gateway.
#
#   ETCD_URL                 etcd client URL      (https://etcd:2379)
#   CA_FILE, CERT_FILE, KEY_FILE  TLS: etcd's CA, the client certificate and key
#   ROOT_PASSWORD_FILE       the root user's password
#   AGENT_NAME               the agent's --name   (node-1)
#   AGENT_PASSWORD_FILE      the password of user logpipe-agent-$AGENT_NAME
#
# Passwords are read from files (compose secrets) and sent in request
# bodies on curl's standard input, never on a command line.
set -eu

etcd=${ETCD_URL:-https://etcd:2379}
name=${AGENT_NAME:-node-1}
user=logpipe-agent-$name
config=/logpipe/agents/$name
status=/logpipe/status/agents/$name

set --
[ -n "${CA_FILE:-}" ] && set -- "$@" --cacert "$CA_FILE"
[ -n "${CERT_FILE:-}" ] && set -- "$@" --cert "$CERT_FILE" --key "${KEY_FILE:?KEY_FILE is not set}"

b64() { printf '%s' "$1" | base64 | tr -d '\n'; }

# call PATH: POST standard input to the JSON gateway; fails on an error.
call() {
	resp=$(curl -sS --retry 10 --retry-connrefused --retry-delay 1 "$@" -X POST "$etcd$path" -d @- | tr -d ' \n')
	case $resp in
	*'"error"'* | *'"code":'*)
		echo "$path: $resp" >&2
		exit 1
		;;
	esac
}

path=/v3/auth/status
resp=$(printf '{}' | curl -fsS --retry 10 --retry-connrefused --retry-delay 1 "$@" -X POST "$etcd$path" -d @- | tr -d ' \n')
case $resp in
*'"enabled":true'*)
	echo "auth is already enabled on $etcd"
	exit 0
	;;
esac

password() { tr -d '\n' <"$1"; }

path=/v3/auth/user/add
printf '{"name":"root","password":"%s"}' "$(password "${ROOT_PASSWORD_FILE:?ROOT_PASSWORD_FILE is not set}")" | call "$@"
path=/v3/auth/user/grant
printf '{"user":"root","role":"root"}' | call "$@"
path=/v3/auth/role/add
printf '{"name":"%s"}' "$user" | call "$@"
path=/v3/auth/role/grant
printf '{"name":"%s","perm":{"permType":"READ","key":"%s"}}' "$user" "$(b64 "$config")" | call "$@"
printf '{"name":"%s","perm":{"permType":"READWRITE","key":"%s"}}' "$user" "$(b64 "$status")" | call "$@"
path=/v3/auth/user/add
printf '{"name":"%s","password":"%s"}' "$user" "$(password "${AGENT_PASSWORD_FILE:?AGENT_PASSWORD_FILE is not set}")" | call "$@"
path=/v3/auth/user/grant
printf '{"user":"%s","role":"%s"}' "$user" "$user" | call "$@"
path=/v3/auth/enable
printf '{}' | call "$@"
echo "auth enabled on $etcd: users root and $user (role $user: read $config, readwrite $status)"
