#!/bin/sh
# Makes a throwaway CA and the certificates of the secured compose variant
# (docker-compose.secure.yml, service init-certs), once: when the CA is
# already in CERTS_DIR, nothing is done. Runs in the alpine image, adding
# openssl when it is missing.
#
#   CERTS_DIR     where to write them                  (/certs)
#   SERVER_NAMES  a server certificate for each name, valid for that name,
#                 localhost and 127.0.0.1               ("kafka etcd elasticsearch")
#   CLIENT_NAME   one client certificate (mutual TLS)   (client)
#   DAYS          validity                              (825)
#
# Layout: ca/ca.pem; NAME/NAME.pem and NAME/NAME-key.pem for each name;
# kafka/keystore.pem, the key and certificate in one file, as Kafka's PEM
# keystore wants them. Keys are RSA in PKCS#8, which Kafka, Elasticsearch,
# etcd and Go all read.
#
# Every container that mounts the volume can read every key (they run as
# different users): this CA is for one machine. In production, use your CA
# and mount each key into its own service only.
set -eu

dir=${CERTS_DIR:-/certs}
servers=${SERVER_NAMES:-kafka etcd elasticsearch}
client=${CLIENT_NAME:-client}
days=${DAYS:-825}

if [ -s "$dir/ca/ca.pem" ]; then
	echo "the CA and certificates are already in $dir"
	exit 0
fi
command -v openssl >/dev/null 2>&1 || apk add --no-cache openssl >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$dir/ca"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/ca-key.pem" 2>/dev/null
openssl req -x509 -new -key "$tmp/ca-key.pem" -subj "/CN=logpipe compose CA" -days "$days" -out "$dir/ca/ca.pem"

# issue NAME USAGE SUBJECT_ALT_NAMES
issue() {
	mkdir -p "$dir/$1"
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/$1/$1-key.pem" 2>/dev/null
	openssl req -new -key "$dir/$1/$1-key.pem" -subj "/CN=$1" -out "$tmp/$1.csr"
	printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=%s\nsubjectAltName=%s\n' "$2" "$3" >"$tmp/$1.ext"
	openssl x509 -req -in "$tmp/$1.csr" -CA "$dir/ca/ca.pem" -CAkey "$tmp/ca-key.pem" -CAcreateserial \
		-days "$days" -extfile "$tmp/$1.ext" -out "$dir/$1/$1.pem" 2>/dev/null
	echo "issued $dir/$1/$1.pem ($2: $3)"
}

for name in $servers; do
	issue "$name" serverAuth "DNS:$name,DNS:localhost,IP:127.0.0.1"
done
issue "$client" clientAuth "DNS:$client"
if [ -d "$dir/kafka" ]; then
	cat "$dir/kafka/kafka-key.pem" "$dir/kafka/kafka.pem" >"$dir/kafka/keystore.pem"
fi
# The CA's key is not kept: no certificate is issued after this run.
chmod -R a+rX "$dir"
