#!/usr/bin/env bash
# Installs, from Debian's packages, what building and testing tracerd
# needs and this machine lacks. Idempotent: does nothing when all present.
set -euo pipefail

want=()
need() { # need COMMAND PACKAGE
	command -v "$1" >/dev/null 2>&1 || want+=("$2")
}
case "${1:-test}" in
generate)
	need clang-14 clang-14
	need llvm-strip-14 llvm-14
	need bpftool bpftool
	[ -f /usr/include/bpf/bpf_helpers.h ] || want+=(libbpf-dev)
	;;
unit)
	# -race needs cgo, and goinspect's tests link externally.
	need gcc gcc
	;;
test)
	need nginx nginx-light # TestNginxTLS too: its ssl module links libssl3
	need nft nftables
	need curl curl
	need ip iproute2
	need caddy caddy
	need taskset util-linux
	need setpriv util-linux
	need systemd-analyze systemd
	;;
bench)
	need wrk wrk
	;;
kernels)
	# make test-kernels: boot Debian's kernels under qemu (tests/kernels);
	# the guest gets a static busybox and the host's nft, tc, ip, taskset.
	need qemu-system-x86_64 qemu-system-x86
	dpkg -s busybox-static >/dev/null 2>&1 || want+=(busybox-static)
	need cpio cpio
	need xz xz-utils
	need depmod kmod
	need nft nftables
	need tc iproute2
	need taskset util-linux
	;;
services)
	# The exporter tests start their own Prometheus on a free loopback port.
	need prometheus prometheus
	;;
esac
if [ ${#want[@]} -gt 0 ]; then
	echo "installing: ${want[*]}" >&2
	if [ "$(id -u)" -ne 0 ]; then
		echo "need root to install ${want[*]} (or install them yourself)" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi
