package main

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// goBinary is one program the guest runs, built on the host.
type goBinary struct {
	name string   // file name in the guest's binary directory
	dir  string   // where `go` runs (tests/goserver is a module of its own)
	args []string // after `go`
	env  []string
}

// guestBinaries: tracerd, the servers the tests start, and the tests
// themselves compiled into one binary; TRACERD_E2E_PREBUILT makes the
// tests use the prebuilt ones (tests/harness_test.go, buildGoServer).
// The goserver names follow tests/goaware_test.go's goBuilds; only the
// builds of the local toolchain are made (another toolchain would be a
// download per run), so the others skip in the guest.
func guestBinaries(repo, out string) []goBinary {
	goserver := filepath.Join(repo, "tests/goserver")
	// As buildGoServer does: the goserver module resolves its own
	// dependencies, with the local toolchain.
	goserverEnv := []string{"GOFLAGS=-mod=mod", "GOTOOLCHAIN=local"}
	return []goBinary{
		{"tracerd", repo, []string{"build", "-o", filepath.Join(out, "tracerd"), "./cmd/tracerd"}, nil},
		{"testserver", repo, []string{"build", "-o", filepath.Join(out, "testserver"), "./tests/testserver"}, nil},
		{"goserver-local", goserver, []string{"build", "-o", filepath.Join(out, "goserver-local"), "."}, goserverEnv},
		{"goserver-local-stripped", goserver, []string{"build", "-o", filepath.Join(out, "goserver-local-stripped"), "-ldflags=-s -w", "."}, goserverEnv},
		{"tests.test", repo, []string{"test", "-c", "-tags", "e2e", "-o", filepath.Join(out, "tests.test"), "./tests"}, nil},
	}
}

// buildBinaries builds every guest binary into out, statically: the
// guest has no libc, and with gcc present plain `go build` links it.
func buildBinaries(repo, out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, b := range guestBinaries(repo, out) {
		cmd := exec.Command("go", b.args...)
		cmd.Dir = b.dir
		cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), b.env...)
		if msg, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(b.args, " "), err, msg)
		}
		if err := checkStatic(filepath.Join(out, b.name)); err != nil {
			return err
		}
	}
	return nil
}

// checkStatic fails for an executable that needs a dynamic loader,
// which the guest's initramfs does not give Go programs.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", path)
		}
	}
	return nil
}
