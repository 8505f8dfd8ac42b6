#!/usr/bin/env bash
# Installs what the exporter tests run besides tracerd: Prometheus from
# Debian's packages, and Jaeger v2 all-in-one built from the Go module
# proxy (tests/tools/jaeger) into the machine's Go cache folder, where
# tests/otlp_test.go looks for it (and builds it itself when missing).
# Idempotent: does nothing when both are present.
set -euo pipefail
cd "$(dirname "$0")"

./install-deps.sh services

# Same name as jaegerBinary in tests/otlp_test.go: the go.sum hash.
GO=${GO:-go}
dir="$(dirname "$($GO env GOCACHE)")/tracerd-tools"
bin="$dir/jaeger-$(sha256sum jaeger/go.sum | cut -c1-12)"
if [ ! -x "$bin" ]; then
	echo "building Jaeger into $bin (once per machine: a few minutes)" >&2
	mkdir -p "$dir"
	(cd jaeger && $GO build -o "$bin.tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
	mv "$bin.tmp" "$bin"
	# Builds of older go.sum files are of no use any more.
	find "$dir" -maxdepth 1 -name 'jaeger-*' ! -path "$bin" -delete
fi
