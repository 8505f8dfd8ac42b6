# tracerd — see README.md. Every target installs what it needs.
GO      ?= go
BIN     := bin
TRACERD := $(BIN)/tracerd
PREFIX  ?= /usr/local

.PHONY: all build generate vmlinux test unit bench demo install clean test-kernels

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

# The whole suite: unit tests and the privileged end-to-end tests
# (they skip with the reason when not root), then the same scenarios
# inside Debian's 6.1 and 6.12 kernels (test-kernels).
# Packages run one at a time (-p 1): the loader's tests count tracerd's
# kernel objects, which an end-to-end test's tracerd would add to.
test:
	tests/tools/install-deps.sh test
	tests/tools/install-test-services.sh
	$(GO) vet ./...
	$(GO) test -count=1 -p 1 -timeout 45m ./...
	$(MAKE) test-kernels

# Boots Debian 12's 6.1 and 6.12 kernels under qemu (TCG) and runs the
# end-to-end scenarios inside each (tests/kernels); writes docs/kernels.md
# and fails when a scenario fails. Kernel packages are cached in
# /var/cache/tracerd-kernels.
test-kernels:
	tests/tools/install-deps.sh kernels
	$(GO) run ./tests/kernels -out docs/kernels.md -readme README.md

unit:
	$(GO) test -count=1 -short ./...

bench: build
	tests/tools/install-deps.sh bench
	$(GO) run ./tests/bench -tracerd $(TRACERD) -out BENCHMARKS.md
	$(GO) run ./tests/bench/goaware -tracerd $(TRACERD) -out BENCHMARKS.md

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
