#!/bin/sh
# Creates (or replaces) the Kibana data view of the logpipe data stream, with
# @timestamp as its time field. Runs in the curl image (docker-compose.yml,
# service init-kibana).
#
#   KIBANA_URL  Kibana's URL                    (http://kibana:5601)
#   DATA_VIEW   index pattern of the data view  (logs-logpipe-default)
set -eu

kibana=${KIBANA_URL:-http://kibana:5601}
title=${DATA_VIEW:-logs-logpipe-default}

body='{"override":true,"data_view":{"id":"logpipe","name":"logpipe","title":"'$title'","timeFieldName":"@timestamp","allowNoIndex":true}}'

curl -fsS --retry 10 --retry-connrefused --retry-delay 2 -o /dev/null \
	-X POST "$kibana/api/data_views/data_view" \
	-H 'kbn-xsrf: true' -H 'Content-Type: application/json' -d "$body"
echo "data view $title created in Kibana"
