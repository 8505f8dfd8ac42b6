//go:build e2e

package tests

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runTracerd runs tracerd to completion and returns its exit code and
// combined output.
func runTracerd(t *testing.T, cred *syscall.Credential, args ...string) (int, string) {
	t.Helper()
	// A start that should be refused and is not must not hang the test.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.tracerd, args...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func TestBadInput(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"unknown flag", []string{"snapshot", "--frobnicate"}, 2, "flag provided but not defined: -frobnicate"},
		{"bad pid", []string{"snapshot", "--pid", "abc"}, 2, `"abc" is not a valid pid`},
		{"missing pid", []string{"snapshot", "--pid", "4194304"}, 2, "--pid 4194304: no such process"},
		{"missing cgroup", []string{"snapshot", "--cgroup", "/sys/fs/cgroup/no-such-tracerd-cgroup"}, 2, "--cgroup /sys/fs/cgroup/no-such-tracerd-cgroup: no such file or directory"},
		{"not a cgroup", []string{"snapshot", "--cgroup", "/tmp"}, 2, "not a cgroup directory"},
		{"bad port", []string{"snapshot", "--port", "70000"}, 2, `"70000" is not a valid port`},
		{"negative duration", []string{"snapshot", "--duration", "-1s"}, 2, "--duration: -1s is out of range: want 1ms to 24h"},
		{"stray argument", []string{"snapshot", "8080"}, 2, `unexpected argument "8080"`},
		{"negative Go call bound", []string{"snapshot", "--go-max-calls", "-5"}, 2, "--go-max-calls: -5 is out of range: want 0 to 1000000 calls per second (0: no bound)"},
		{"huge top", []string{"snapshot", "--top", "99999999999"}, 2, "--top: 99999999999 is out of range: want 0 to 1000 requests"},
		// Issue 10, item 12: these exited 1 (or were accepted) instead of 2.
		{"NaN sample ratio", []string{"run", "--port", "1", "--metrics-addr", "off", "--sample-ratio", "NaN"}, 2, "--sample-ratio: NaN is out of range: want a ratio from 0 to 1"},
		{"negative idle timeout (snapshot)", []string{"snapshot", "--idle-timeout", "-1s"}, 2, "--idle-timeout: -1s is out of range: want 1ms to 10m"},
		{"negative idle timeout (run)", []string{"run", "--port", "1", "--metrics-addr", "off", "--idle-timeout", "-1s"}, 2, "--idle-timeout: -1s is out of range"},
		{"unknown hook", []string{"snapshot", "--skip-hook", "nope"}, 2, `--skip-hook: no hook named "nope": optional hooks are`},
		{"required hook", []string{"run", "--port", "1", "--metrics-addr", "off", "--skip-hook", "sys_exit_accept4"}, 2, "--skip-hook: hook sys_exit_accept4 is required and cannot be skipped"},
		{"metrics port out of range", []string{"run", "--port", "1", "--metrics-addr", "127.0.0.1:99999"}, 2, `--metrics-addr: "127.0.0.1:99999": port 99999 is out of range`},
		{"unwritable output", []string{"snapshot", "-o", "/nonexistent/dir/cut.pb.gz"}, 2, "-o: open /nonexistent/dir/cut.pb.gz"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out := runTracerd(t, nil, c.args...)
			if code != c.code || !strings.Contains(out, c.msg) {
				t.Errorf("tracerd %v: exit %d, output %q; want exit %d and %q", c.args, code, out, c.code, c.msg)
			}
		})
	}
}

// TestWithoutRoot: an unprivileged user gets a clear error, exit 1, from
// both snapshot and check.
func TestWithoutRoot(t *testing.T) {
	needRoot(t) // to switch to an unprivileged user
	if err := os.Chmod(bin.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	code, out := runTracerd(t, nobody, "snapshot", "--duration", "1s")
	if code != 1 || !strings.Contains(out, "not enough privileges to load BPF programs: run as root") {
		t.Errorf("snapshot as nobody: exit %d, %q", code, out)
	}
	code, out = runTracerd(t, nobody, "check")
	if code != 1 || !strings.Contains(out, "privileges  missing") || !strings.Contains(out, "tracing cannot work here") {
		t.Errorf("check as nobody: exit %d, %q", code, out)
	}
	code, out = runTracerd(t, nil, "check")
	if code != 0 || !strings.Contains(out, "tracing works here") {
		t.Errorf("check as root: exit %d, %q", code, out)
	}
}
