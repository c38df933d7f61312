# logpipe — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

MODULES  := common devstack agent transfer livetail deploy e2e bench
BINARIES := agent transfer livetail devstack
PKGS     := $(addprefix ./,$(addsuffix /...,$(MODULES)))
# Debian packages the tests use that Go does not fetch: command → package.
# Java and Maven run the real backends (Apache Kafka, OpenSearch).
TEST_TOOLS := etcdctl:etcd-client kcat:kcat redis-server:redis-server chromium:chromium curl:curl openssl:openssl \
	java:openjdk-17-jdk-headless javac:openjdk-17-jdk-headless mvn:maven
# make run's backends: embedded (in devstack's process) or real (JVMs).
BACKENDS ?= embedded
# SECURE=1: make run with TLS and passwords on every backend (devstack --secure).
SECURE ?=
GO_TEST_FLAGS ?= -race -count=1 -timeout 14m
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: help build run test test-deps test-repeat bench lint fmt clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

build: ## build agent, transfer, livetail and devstack into bin/
	@mkdir -p bin
	@for b in $(BINARIES); do echo "go build -o bin/$$b ./$$b" && go build -o bin/$$b ./$$b || exit 1; done

run: build ## start the whole pipeline (BACKENDS=real: on Apache Kafka and OpenSearch; SECURE=1: with TLS and passwords; Ctrl-C stops it)
	./bin/devstack --all --backends $(BACKENDS)$(if $(filter 1 yes true,$(SECURE)), --secure)

# The cross-binary tests run on both kinds of backends: embedded ones in each
# test, and one real devstack (Apache Kafka, OpenSearch) shared by the whole
# run, started beside `go test` by scripts/with-real-backends.
test: test-deps ## install what the tests need, then run every test with -race, on embedded and real backends
	@mkdir -p bin && go build -o bin/devstack ./devstack
	./bin/devstack --backends real --fetch
	LOGPIPE_ARTIFACTS=$(CURDIR)/test-output scripts/with-real-backends go test $(GO_TEST_FLAGS) $(PKGS)
	@echo "screenshots of the viewer: test-output/"

N ?= 5
REPEAT_DIR := test-output/repeat

test-repeat: test-deps ## run every test N times (make test-repeat N=5), as make test does, and list those that failed, with counts
	@rm -rf $(REPEAT_DIR) && mkdir -p $(REPEAT_DIR)
	@mkdir -p bin && go build -o bin/devstack ./devstack
	./bin/devstack --backends real --fetch
	@for i in $$(seq 1 $(N)); do \
		echo "run $$i of $(N): go test $(GO_TEST_FLAGS) -json ... > $(REPEAT_DIR)/run-$$i.json"; \
		LOGPIPE_ARTIFACTS=$(CURDIR)/$(REPEAT_DIR)/run-$$i scripts/with-real-backends go test $(GO_TEST_FLAGS) -json $(PKGS) > $(REPEAT_DIR)/run-$$i.json 2>&1 || true; \
	done
	@go run ./devstack/proc/tally $$(seq -f '$(REPEAT_DIR)/run-%g.json' 1 $(N))

test-deps: ## install missing test tools (Debian packages), non-interactively
	@missing=""; for t in $(TEST_TOOLS); do \
		command -v "$${t%%:*}" >/dev/null 2>&1 || case " $$missing " in *" $${t#*:} "*) ;; *) missing="$$missing $${t#*:}";; esac; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
		export DEBIAN_FRONTEND=noninteractive; \
		$$sudo apt-get update -qq && \
		$$sudo apt-get install -y -qq $$missing >/dev/null || exit 1; \
	fi

bench: ## run the benchmarks and print their tables (several minutes)
	go run ./bench/agent
	go run ./bench/transfer
	go run ./bench/livetail
	go run ./bench/livetail -cases scale -backends real
	go run ./bench/latency
	go test -run '^$$' -bench . -benchmem ./common/... ./devstack/esfake/...

lint: ## gofmt check, go vet and staticcheck over every module
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet $(PKGS)
	go run $(STATICCHECK) $(PKGS)

fmt: ## gofmt every module
	gofmt -w $(MODULES)

clean: ## remove build output
	rm -rf bin
