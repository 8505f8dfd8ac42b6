#!/usr/bin/env bash
# Keeps the split between unit and end-to-end tests (see the Makefile):
# a test that needs root, loads BPF, uses a service installed on the host
# or the network beyond loopback is end-to-end, and its file starts with
# `//go:build e2e`, so `make unit` does not even compile it. This fails
#  - for a test file of package tests (tests/*_test.go) without the tag;
#  - outside tests/, for a tagged file not named *_e2e_test.go or the
#    other way round, so that the name says which run a test is in;
#  - for an untagged test file that asks for root or installs packages;
#  - for a file built only without the tag (!e2e): the tagged build,
#    which vet and staticcheck use, must see every file.
set -euo pipefail
cd "$(dirname "$0")/../.."

bad=0
fail() {
	echo "check-test-split: $*" >&2
	bad=1
}
tagged() { head -1 "$1" | grep -qx '//go:build e2e'; }

while IFS= read -r f; do
	case "$f" in
	./tests/*/*) in_tests= ;;
	./tests/*) in_tests=1 ;;
	*) in_tests= ;;
	esac
	if tagged "$f"; then
		if [ -z "$in_tests" ] && [[ "$f" != *_e2e_test.go ]]; then
			fail "$f: tagged e2e, so name it *_e2e_test.go"
		fi
		continue
	fi
	if [ -n "$in_tests" ]; then
		fail "$f: package tests holds end-to-end tests only: start it with //go:build e2e"
	elif [[ "$f" == *_e2e_test.go ]]; then
		fail "$f: named *_e2e_test.go but does not start with //go:build e2e"
	fi
	if lines=$(grep -nE 'Geteuid\(\)|Getuid\(\)|RemoveMemlock|apt-get' "$f"); then
		fail "$f: a unit test must not need root or install packages; move it to a *_e2e_test.go file:"$'\n'"$lines"
	fi
done < <(find . -name '*_test.go' -not -path './.git/*' | sort)

if lines=$(grep -rnE --include='*.go' '^//go:build .*!e2e' .); then
	fail "files built only without the e2e tag:"$'\n'"$lines"
fi
exit $bad
