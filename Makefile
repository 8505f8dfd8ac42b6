# tracerd — see README.md. Every target installs what it needs.
GO      ?= go
BIN     := bin
TRACERD := $(BIN)/tracerd
PREFIX  ?= /usr/local

.PHONY: all build generate vmlinux test lint unit e2e bench demo install clean test-kernels

all: build

VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(TRACERD) ./cmd/tracerd

# Regenerates the committed bpf2go outputs from bpf/*.c and the committed
# bpf/vmlinux.h, with the pinned clang (clang-14, Debian's package of that
# name); CI checks the result equals what is committed.
generate:
	tests/tools/install-deps.sh generate
	cd internal/loader && $(GO) generate ./...

# Regenerates bpf/vmlinux.h from the running kernel's BTF: only on purpose
# (CO-RE relocates against each kernel's own BTF at load, so one header
# serves every kernel), then make generate.
vmlinux:
	tests/tools/install-deps.sh generate
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/vmlinux.h

# Two kinds of tests, split by a build tag:
#  - unit tests (make unit) need no root, no BPF, no tracerd binary, no
#    service installed on the host and no network beyond loopback; they
#    run with the race detector.
#  - end-to-end tests (make e2e) need some of these: package tests/ and,
#    elsewhere, the *_e2e_test.go files. Each such file starts with
#    `//go:build e2e`, so the unit run does not even compile it; run one
#    with `go test -tags e2e`. Those that need root skip, saying why,
#    when not root.
# tests/tools/check-test-split.sh (make lint) fails when a test file is
# on the wrong side.
E2E_PKGS = $(sort $(dir $(shell grep -rlx --include='*_test.go' '//go:build e2e' .)))

# Pinned; fetched from the Go module proxy on first use.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

# The whole suite: lint, unit tests, the end-to-end tests, then the same
# scenarios inside Debian's 6.1 and 6.12 kernels (test-kernels).
# One target after another: the loader's end-to-end tests count tracerd's
# kernel objects, which another test's tracerd would add to.
test:
	$(MAKE) lint
	$(MAKE) unit
	$(MAKE) e2e
	$(MAKE) test-kernels

# With -tags e2e: no file is built only without it, so this sees them all.
lint:
	tests/tools/check-test-split.sh
	$(GO) vet -tags e2e ./...
	$(GO) run $(STATICCHECK) -tags e2e ./...

unit:
	tests/tools/install-deps.sh unit
	$(GO) test -race -count=1 ./...

# Packages one at a time (-p 1), for the same reason as in test. The
# tagged build of a package also runs its unit tests, again. A failing
# test is run once more, alone, and reported FLAKY when it then passes
# (tests/tools/e2e.sh says why and bounds it).
e2e:
	tests/tools/install-deps.sh test
	tests/tools/install-test-services.sh
	GO=$(GO) tests/tools/e2e.sh $(E2E_PKGS)

# Boots Debian 12's 6.1 and 6.12 kernels under qemu (TCG) and runs the
# end-to-end scenarios inside each (tests/kernels); writes docs/kernels.md
# and fails when a scenario fails. Kernel packages are cached in
# /var/cache/tracerd-kernels.
test-kernels:
	tests/tools/install-deps.sh kernels
	$(GO) run ./tests/kernels -out docs/kernels.md -readme README.md

bench: build
	tests/tools/install-deps.sh bench
	$(GO) run ./tests/bench -tracerd $(TRACERD) -out BENCHMARKS.md
	$(GO) run ./tests/bench/goaware -tracerd $(TRACERD) -out BENCHMARKS.md
	$(GO) run ./tests/bench -only selfcost -tracerd $(TRACERD) -out BENCHMARKS.md
	$(GO) run ./tests/bench -only outbound -tracerd $(TRACERD) $(if $(OUTBOUND_FORMER),-outbound-former $(OUTBOUND_FORMER)) -out BENCHMARKS.md

demo: build
	tests/demo/demo.sh

# Binary, systemd unit (ExecStart pointing at the installed binary) and
# the default config (kept when one exists). Then:
# systemctl daemon-reload && systemctl enable --now tracerd
install: build
	install -D -m 0755 $(TRACERD) $(DESTDIR)$(PREFIX)/bin/tracerd
	install -d -m 0755 $(DESTDIR)/etc/systemd/system $(DESTDIR)/etc/tracerd
	sed 's|/usr/local/bin/tracerd|$(PREFIX)/bin/tracerd|' deploy/tracerd.service > $(DESTDIR)/etc/systemd/system/tracerd.service
	chmod 0644 $(DESTDIR)/etc/systemd/system/tracerd.service
	test -e $(DESTDIR)/etc/tracerd/tracerd.yaml || install -m 0644 deploy/tracerd.yaml $(DESTDIR)/etc/tracerd/tracerd.yaml

clean:
	rm -rf $(BIN)
