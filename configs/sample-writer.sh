#!/bin/sh
# Writes sample logs so that something moves through a fresh pipeline
# (docker-compose.yml, service sample-writer): a web access log, a JSON-lines
# service with levels, and a worker that logs a stack trace now and then
# (continuation lines start with a tab or "Caused by: ", as the multiline
# pattern in configs/agent-config.json expects).
#
#   SAMPLE_DIR       where the files go        (/var/log/sample)
#   SAMPLE_INTERVAL  seconds between rounds    (0.5)
#   SAMPLE_ROUNDS    rounds, 0 for no end      (0)
#   SAMPLE_SEED      seed of the random choices                (the PID)
#   SAMPLE_MAX_BYTES a file this big is rotated, the way logrotate does it
#                    (rename to .1, then a new file)          (10485760)
set -eu

dir=${SAMPLE_DIR:-/var/log/sample}
interval=${SAMPLE_INTERVAL:-0.5}
rounds=${SAMPLE_ROUNDS:-0}
max_bytes=${SAMPLE_MAX_BYTES:-10485760}
mkdir -p "$dir"

seed=${SAMPLE_SEED:-$$}
rand() { # rand N: a number in [0, N)
	seed=$(((seed * 1103515245 + 12345) % 2147483648))
	r=$(((seed / 65536) % $1))
}
pick() { # pick WORD...: one of the words
	rand $#
	shift "$r"
	w=$1
}

i=0
while [ "$rounds" -eq 0 ] || [ "$i" -lt "$rounds" ]; do
	i=$((i + 1))
	now=$(date -u '+%Y-%m-%dT%H:%M:%SZ')

	pick GET GET GET POST PUT DELETE
	method=$w
	pick /api/items /api/items/42 /api/users/7 /healthz /static/app.js /login
	path=$w
	pick 200 200 200 200 201 204 301 404 500
	status=$w
	rand 20000
	size=$r
	rand 250
	ip=10.0.0.$r
	printf '%s - - [%s] "%s %s HTTP/1.1" %s %s "-" "Mozilla/5.0 (X11; Linux x86_64)"\n' \
		"$ip" "$(date -u '+%d/%b/%Y:%H:%M:%S +0000')" "$method" "$path" "$status" "$size" >>"$dir/access.log"

	pick info info info info debug warn error
	level=$w
	rand 900
	ms=$r
	printf '{"time":"%s","level":"%s","msg":"request served","method":"%s","path":"%s","status":%s,"duration_ms":%s,"request_id":"req-%s"}\n' \
		"$now" "$level" "$method" "$path" "$status" "$ms" "$i" >>"$dir/api.jsonl"

	rand 10
	if [ "$r" -eq 0 ]; then
		{
			printf '%s ERROR job %s failed: java.lang.IllegalStateException: queue closed\n' "$now" "$i"
			printf '\tat com.example.worker.Queue.take(Queue.java:88)\n'
			printf '\tat com.example.worker.Worker.run(Worker.java:42)\n'
			printf '\tat java.base/java.lang.Thread.run(Thread.java:1583)\n'
			printf 'Caused by: java.io.IOException: connection reset by peer\n'
			printf '\tat com.example.worker.Client.read(Client.java:120)\n'
			printf '\t... 3 more\n'
		} >>"$dir/worker.log"
	else
		printf '%s INFO job %s done in %sms\n' "$now" "$i" "$ms" >>"$dir/worker.log"
	fi

	if [ $((i % 100)) -eq 0 ]; then
		for f in access.log api.jsonl worker.log; do
			if [ "$(wc -c <"$dir/$f")" -ge "$max_bytes" ]; then
				mv "$dir/$f" "$dir/$f.1"
			fi
		done
	fi

	sleep "$interval"
done
