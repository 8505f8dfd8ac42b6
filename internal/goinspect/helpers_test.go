package goinspect

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Test programs are built from testdata/server with a chosen toolchain.
// Toolchains other than the installed one are fetched by the go command
// from the module proxy (GOTOOLCHAIN=goX.Y.Z) into GOMODCACHE, and their
// compiled standard library lands in GOCACHE, so only the first run pays
// for the download and the std build.

// olderToolchain is the older Go used by the ordinary tests.
const olderToolchain = "go1.22.12"

// moduleProxyTests is set by the end-to-end build (proxy_e2e_test.go):
// unit tests use no network, so a test fetching a toolchain or a module
// from the module proxy is end-to-end.
var moduleProxyTests bool

// needModuleProxy skips, outside the end-to-end build, a test that
// fetches what from the module proxy.
func needModuleProxy(t testing.TB, what string) {
	t.Helper()
	if !moduleProxyTests {
		t.Skipf("fetches %s from the module proxy: end-to-end (go test -tags e2e)", what)
	}
}

var (
	buildDir     string
	buildMu      sync.Mutex
	builds       = map[string]*buildResult{}
	toolchainsMu sync.Mutex
	toolchains   = map[string]toolchainResult{}
)

type buildResult struct {
	path string
	err  error
}

type toolchainResult struct {
	version string // "go1.22.12"
	skip    string // non-empty: why it is unavailable
}

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "goinspect-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

func goCmd() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	// The test binary runs where it was built, so the build's GOROOT holds
	// the go command that built it.
	//lint:ignore SA1019 see above
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// toolchainEnv is the environment for running the go command with the
// given toolchain ("local" for the installed one) outside this module.
func toolchainEnv(toolchain string) []string {
	var env []string
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "GOTOOLCHAIN="), strings.HasPrefix(kv, "GOFLAGS="),
			strings.HasPrefix(kv, "GOWORK="), strings.HasPrefix(kv, "GO111MODULE="),
			strings.HasPrefix(kv, "GOOS="), strings.HasPrefix(kv, "GOARCH="):
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GOTOOLCHAIN="+toolchain, "GOFLAGS=-buildvcs=false", "GOWORK=off",
		"GO111MODULE=on", "GOOS=linux", "GOARCH=amd64")
}

// toolchainVersion runs `go env GOVERSION` with the toolchain, which
// downloads it when needed. A failure makes the caller skip.
func toolchainVersion(t testing.TB, toolchain string) string {
	t.Helper()
	toolchainsMu.Lock()
	defer toolchainsMu.Unlock()
	r, ok := toolchains[toolchain]
	if !ok {
		cmd := exec.Command(goCmd(), "env", "GOVERSION")
		cmd.Dir = buildDir
		cmd.Env = toolchainEnv(toolchain)
		// Only stdout is the version: the first use of a toolchain prints
		// "go: downloading goX (linux/amd64)" on stderr.
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			r.skip = fmt.Sprintf("toolchain %s unavailable (module proxy download failed?): %v: %s", toolchain, err, bytes.TrimSpace(stderr.Bytes()))
		} else {
			r.version = strings.TrimSpace(string(out))
		}
		toolchains[toolchain] = r
	}
	if r.skip != "" {
		t.Skip(r.skip)
	}
	return r.version
}

// buildServer builds testdata/server with the toolchain and extra go build
// arguments, once per test binary run, and returns the executable's path.
func buildServer(t testing.TB, toolchain string, args ...string) string {
	t.Helper()
	toolchainVersion(t, toolchain)
	key := toolchain + " " + strings.Join(args, " ")
	buildMu.Lock()
	defer buildMu.Unlock()
	if r, ok := builds[key]; ok {
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.path
	}
	r := &buildResult{}
	builds[key] = r
	src := filepath.Join(buildDir, "src")
	if _, err := os.Stat(src); err != nil {
		main, err := os.ReadFile(filepath.Join("testdata", "server", "main.go"))
		if err == nil {
			err = os.MkdirAll(src, 0o755)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(src, "main.go"), main, 0o644)
		}
		if err == nil {
			// go 1.18: the oldest toolchain the table covers must accept it.
			err = os.WriteFile(filepath.Join(src, "go.mod"), []byte("module example.com/server\n\ngo 1.18\n"), 0o644)
		}
		if err != nil {
			r.err = err
			t.Fatal(err)
		}
	}
	r.path = filepath.Join(buildDir, fmt.Sprintf("server-%d", len(builds)))
	cmd := exec.Command(goCmd(), append(append([]string{"build", "-o", r.path}, args...), ".")...)
	cmd.Dir = src
	cmd.Env = toolchainEnv(toolchain)
	if out, err := cmd.CombinedOutput(); err != nil {
		r.err = fmt.Errorf("build with %s %v: %v\n%s", toolchain, args, err, out)
		t.Fatal(r.err)
	}
	return r.path
}
