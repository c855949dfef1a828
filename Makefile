# monologue: one entry point. Every target installs what it needs (scripts/setup
# is idempotent and cached: a warm run takes seconds).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# memory_templates is run by memory.py (bench-memory); listed alone it is bench-memory_templates.
# figures is the JSON line of a figure, for the others.
BENCHES := $(filter-out memory_templates figures,$(patsubst bench/%.py,%,$(wildcard bench/*.py)))

.PHONY: help setup demo test test-python test-go bench lock proto clean

help: ## list the targets
	@grep -E '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: ## install everything: .venv, llama.cpp, real servers for tests, models
	@scripts/setup

demo: ## the main job on embedded defaults: sample logs -> Space -> answers with citations
	@scripts/setup --no-servers
	@$(VENV)/bin/monologue demo

test: setup ## every test (unit, integration against real servers, Go)
	@$(MAKE) --no-print-directory test-go
	@$(PY) -m pytest

test-python: setup
	@$(PY) -m pytest

test-go:
	@if [ -f loki-shipper-go/go.mod ]; then cd loki-shipper-go && GOTOOLCHAIN=local go test ./...; fi

bench: setup ## every benchmark (JSON lines)
	@for b in $(BENCHES); do $(PY) bench/$$b.py || exit 1; done

bench-%: setup ## one benchmark: make bench-<component>
	@$(PY) bench/$*.py

lock: ## re-resolve requirements.in into requirements.lock
	@scripts/lock

proto: setup ## regenerate the gRPC stubs from proto/
	@scripts/gen-proto

clean: ## remove the environment and build outputs (the cache outside stays)
	rm -rf $(VENV) build
