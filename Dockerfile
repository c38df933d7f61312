# syntax=docker/dockerfile:1
#
# One image per binary, built from the repository root with the go.work
# workspace:
#
#   docker build --target agent    -t logpipe/agent .
#   docker build --target transfer -t logpipe/transfer .
#   docker build --target livetail -t logpipe/livetail .
#
# The binaries are static (CGO_ENABLED=0). They run on Alpine rather than a
# distroless image so that the container health checks have busybox wget to
# call /readyz with; the images run as the unprivileged user 65532.

ARG GO_VERSION=1.26.8
ARG ALPINE_VERSION=3.22

FROM golang:${GO_VERSION}-alpine AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
COPY . .

FROM build AS build-agent
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/agent ./agent

FROM build AS build-transfer
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/transfer ./transfer

FROM build AS build-livetail
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/livetail ./livetail

FROM alpine:${ALPINE_VERSION} AS runtime
RUN apk add --no-cache ca-certificates tzdata \
 && addgroup -S -g 65532 logpipe \
 && adduser -S -D -H -u 65532 -G logpipe -h /nonexistent -s /sbin/nologin logpipe

FROM runtime AS agent
# The state directory exists in the image, owned by the agent's user, so that
# a new named volume mounted on it is writable.
RUN install -d -o 65532 -g 65532 -m 0750 /var/lib/logpipe/agent
COPY --from=build-agent /out/agent /usr/local/bin/agent
USER 65532:65532
ENV LOGPIPE_STATE_DIR=/var/lib/logpipe/agent \
    LOGPIPE_METRICS_ADDR=0.0.0.0:9101
EXPOSE 9101
ENTRYPOINT ["/usr/local/bin/agent"]

FROM runtime AS transfer
COPY --from=build-transfer /out/transfer /usr/local/bin/transfer
USER 65532:65532
ENV LOGPIPE_METRICS_ADDR=0.0.0.0:9102
EXPOSE 9102
ENTRYPOINT ["/usr/local/bin/transfer"]

FROM runtime AS livetail
COPY --from=build-livetail /out/livetail /usr/local/bin/livetail
USER 65532:65532
ENV LOGPIPE_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/livetail"]
