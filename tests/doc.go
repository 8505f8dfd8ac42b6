// Package tests holds tracerd's privileged end-to-end tests: real
// servers, real conditions provoked on purpose, traced by the real
// tracerd binary, and each measured phase compared with the truth the
// test injected or the server measured itself. Every test file starts
// with `//go:build e2e` (make e2e, or go test -tags e2e ./tests/). They
// skip, with the reason, when not run as root.
package tests
