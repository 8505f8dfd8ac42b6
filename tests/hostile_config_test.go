//go:build e2e

package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 10 (security review), end to end against the real binary:
// hostile values in flags, the config file and the environment; the
// control socket's path; output files and symbolic links; a snapshot
// through a daemon that does not trace what it asks; stop time.

// runFor runs tracerd with args and extra environment, killing it after
// limit (a refused start must not turn into a running daemon). It
// returns the exit code (-1 when killed) and the combined output.
func runFor(t *testing.T, limit time.Duration, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.tracerd, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return -1, string(out)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// closedPort is a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}

// TestHostileConfigStart: every out-of-range value, from a flag, the
// config file or an OTEL_* variable, stops tracerd at start with exit
// code 2 and a message naming the setting, the value and the range;
// never a panic (makechan), never memory exhaustion, never a daemon
// that runs. Refused before any BPF is loaded (not as root, the
// settings tracerd checks after its privileges skip).
func TestHostileConfigStart(t *testing.T) {
	endpoint := "http://" + closedPort(t)
	dir := t.TempDir()
	cfgFile := func(name, body string) string {
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := []string{"run", "--port", "1", "--metrics-addr", "off", "--control-socket", "off", "--go=false"}
	otlp := "exporters:\n  metrics_addr: \"off\"\n  otlp:\n    endpoint: " + endpoint + "\n"
	cases := []struct {
		name string
		env  []string
		args []string
		msg  string
	}{
		{"queue 1e17 flag", nil, []string{"--otlp-endpoint", endpoint, "--otlp-queue-size", "99999999999999999"},
			"--otlp-queue-size: 99999999999999999 is out of range: want 1 to 1048576 spans"},
		{"queue 1e10 flag", nil, []string{"--otlp-endpoint", endpoint, "--otlp-queue-size", "10000000000"},
			"--otlp-queue-size: 10000000000 is out of range: want 1 to 1048576 spans"},
		{"queue 1e17 file", nil, []string{"--config", cfgFile("queue", otlp+"    queue_size: \"99999999999999999\"\ncontrol:\n  socket: \"off\"\n")},
			"queue.yaml:5: exporters.otlp.queue_size: 99999999999999999 is out of range: want 1 to 1048576 spans"},
		{"queue 1e17 env", []string{"OTEL_BSP_MAX_QUEUE_SIZE=99999999999999999"}, []string{"--otlp-endpoint", endpoint},
			"OTEL_BSP_MAX_QUEUE_SIZE: 99999999999999999 is out of range: want 1 to 1048576 spans"},
		{"batch flag", nil, []string{"--otlp-batch-size", "1000000"}, "--otlp-batch-size: 1000000 is out of range: want 1 to 16384 spans"},
		{"batch env", []string{"OTEL_BSP_MAX_EXPORT_BATCH_SIZE=1000000"}, []string{"--otlp-endpoint", endpoint}, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE: 1000000 is out of range"},
		{"batch delay flag", nil, []string{"--otlp-batch-delay", "87600h"}, "--otlp-batch-delay: 87600h is out of range: want 1ms to 1m"},
		{"batch delay env wraps", []string{"OTEL_BSP_SCHEDULE_DELAY=9223372036854775807"}, []string{"--otlp-endpoint", endpoint}, "OTEL_BSP_SCHEDULE_DELAY: 9223372036854775807 ms is out of range"},
		{"timeout flag", nil, []string{"--otlp-timeout", "0s"}, "--otlp-timeout: 0s is out of range: want 1ms to 5m"},
		{"latency budget", nil, []string{"--latency-budget", "-5ms"}, "--latency-budget: -5ms is out of range: want 0s to 1h (0: none)"},
		{"ratio NaN flag", nil, []string{"--sample-ratio", "NaN"}, "--sample-ratio: NaN is out of range: want a ratio from 0 to 1"},
		{"ratio NaN env", []string{"OTEL_TRACES_SAMPLER=traceidratio", "OTEL_TRACES_SAMPLER_ARG=NaN"}, []string{"--otlp-endpoint", endpoint}, "OTEL_TRACES_SAMPLER_ARG: NaN is out of range"},
		{"ratio NaN file", nil, []string{"--config", cfgFile("ratio", "exporters:\n  sampling:\n    ratio: NaN\n")}, "ratio.yaml:3: exporters.sampling.ratio: NaN is out of range: want a ratio from 0 to 1"},
		{"max conns flag", nil, []string{"--max-conns", "4000000000"}, "--max-conns: 4000000000 is out of range: want 1 to 4194304 connections"},
		{"max conns file", nil, []string{"--config", cfgFile("conns", "engine:\n  max_conns: 4000000000\n")}, "conns.yaml:2: engine.max_conns: 4000000000 is out of range"},
		{"ring buffer file", nil, []string{"--config", cfgFile("ring", "engine:\n  ring_buffer_bytes: 2147483648\n")}, "ring.yaml:2: engine.ring_buffer_bytes: 2147483648 is out of range: want 4096 to 268435456 bytes"},
		{"go max calls flag", nil, []string{"--go-max-calls", "99999999999999999999"}, `--go-max-calls: "99999999999999999999" is out of range: want 0 to 1000000 calls per second`},
		{"go max calls file", nil, []string{"--config", cfgFile("gocalls", "engine:\n  go_max_calls_per_second: -1\n")}, "gocalls.yaml:2: engine.go_max_calls_per_second: -1 is out of range"},
		{"idle timeout flag", nil, []string{"--idle-timeout", "-1s"}, "--idle-timeout: -1s is out of range: want 1ms to 10m"},
		{"idle timeout file", nil, []string{"--config", cfgFile("idle", "engine:\n  idle_timeout: 87600h\n")}, "idle.yaml:2: engine.idle_timeout: 87600h is out of range"},
		{"required hook file", nil, []string{"--config", cfgFile("hook", "engine:\n  skip_hooks: [sys_exit_accept4]\n")}, "hook.yaml:2: engine.skip_hooks: hook sys_exit_accept4 is required and cannot be skipped"},
		{"unknown hook file", nil, []string{"--config", cfgFile("nohook", "engine:\n  skip_hooks: [nope]\n")}, `nohook.yaml:2: engine.skip_hooks: no hook named "nope"`},
		{"metrics port file", nil, []string{"--config", cfgFile("metrics", "exporters:\n  metrics_addr: 127.0.0.1:99999\n")}, `metrics.yaml:2: exporters.metrics_addr: "127.0.0.1:99999": port 99999 is out of range`},
		{"metrics port flag", nil, []string{"--metrics-addr", "127.0.0.1:99999"}, `--metrics-addr: "127.0.0.1:99999": port 99999 is out of range`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			code, out := runFor(t, 20*time.Second, c.env, append(append([]string{}, base...), c.args...)...)
			skipRefusedPrivileges(t, out)
			if code != 2 || !strings.Contains(out, c.msg) || strings.Contains(out, "panic") {
				t.Errorf("exit %d after %s, output %q; want exit 2 and %q", code, time.Since(start).Round(time.Millisecond), out, c.msg)
			}
		})
	}
}

// TestHostileConfigReload: a running daemon whose file gets an
// out-of-range value and SIGHUP refuses the reload with a log line,
// keeps its configuration and goes on tracing (the same value killed it).
func TestHostileConfigReload(t *testing.T) {
	needRoot(t)
	srv := startServer(t, nil)
	cfgPath := filepath.Join(t.TempDir(), "tracerd.yaml")
	good := fmt.Sprintf("targets:\n  ports: [%d]\nengine:\n  go: false\nexporters:\n  metrics_addr: \"off\"\n  otlp:\n    endpoint: http://%s\n    batch_delay: 50ms\ncontrol:\n  socket: \"off\"\n", srv.Port, closedPort(t))
	write := func(s string) {
		if err := os.WriteFile(cfgPath, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(good)
	jsonPath := filepath.Join(t.TempDir(), "requests.jsonl")
	d := startDaemon(t, nil, "--config", cfgPath, "--json", jsonPath)
	bad := []struct{ insert, msg string }{
		{"    queue_size: \"99999999999999999\"\n", "exporters.otlp.queue_size: 99999999999999999 is out of range"},
		{"    queue_size: \"10000000000\"\n", "exporters.otlp.queue_size: 10000000000 is out of range"},
		{"  sampling:\n    ratio: NaN\n", "exporters.sampling.ratio: NaN is out of range"},
		{"    batch_size: \"9999999\"\n", "exporters.otlp.batch_size: 9999999 is out of range"},
	}
	for i, b := range bad {
		write(strings.Replace(good, "control:", b.insert+"control:", 1))
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatalf("the daemon is gone before reload %d: %v\n%s", i+1, err, d.stderr)
		}
		d.waitLog(t, "reload failed: keeping the running configuration", i+1, 10*time.Second)
		if !strings.Contains(d.stderr.String(), b.msg) {
			t.Errorf("the refused reload does not say why (%q):\n%s", b.msg, d.stderr)
		}
		c := dial(t, srv.Addr)
		if _, err := request(c, fmt.Sprintf("/after-bad-reload/%d", i), 0); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	// A good file still reloads.
	write(good)
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "msg=reloaded", 1, 10*time.Second)
	// A record of each request made after a refused reload.
	var targets []string
	for i := range bad {
		targets = append(targets, fmt.Sprintf("/after-bad-reload/%d", i))
	}
	waitRecords(t, jsonPath, 10*time.Second, targets...)
	d.stop(t, syscall.SIGTERM)
	if strings.Contains(d.stderr.String(), "panic") {
		t.Errorf("panic in the log:\n%s", d.stderr)
	}
}

// TestRunHelpNoPanic: 'tracerd run -h' printed seven "panic calling
// String method on zero main.replaceList" lines.
func TestRunHelpNoPanic(t *testing.T) {
	for _, cmd := range []string{"run", "snapshot", "status", "check"} {
		code, out := runFor(t, 10*time.Second, nil, cmd, "-h")
		if code != 0 || strings.Contains(out, "panic") || !strings.Contains(strings.ToLower(out), "usage") {
			t.Errorf("tracerd %s -h: exit %d\n%s", cmd, code, out)
		}
	}
}

// TestControlSocketUnsafePath: --control-socket naming a regular file
// or a symbolic link is refused (exit 2) and left as it was (the file
// was deleted); a live daemon's socket is not taken from it.
func TestControlSocketUnsafePath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "precious.txt")
	os.WriteFile(file, []byte("keep me"), 0o644)
	link := filepath.Join(dir, "link.sock")
	os.Symlink(file, link)
	base := []string{"run", "--port", "1", "--metrics-addr", "off", "--go=false", "--control-socket"}
	for _, c := range []struct{ path, msg string }{
		{file, "exists and is not a socket (a regular file): left as it is"},
		{link, "is a symbolic link, not a socket: left as it is"},
	} {
		code, out := runFor(t, 20*time.Second, nil, append(base, c.path)...)
		if code != 2 || !strings.Contains(out, c.msg) {
			t.Errorf("--control-socket %s: exit %d, %q; want exit 2 and %q", c.path, code, out, c.msg)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Errorf("the regular file was touched: %q %v", b, err)
	}
	if got, err := os.Readlink(link); err != nil || got != file {
		t.Errorf("the symbolic link was touched: %q %v", got, err)
	}

	needRoot(t)
	srv := startServer(t, nil)
	sock := filepath.Join(t.TempDir(), "control.sock")
	d := startDaemon(t, nil, "--port", fmt.Sprint(srv.Port), "--metrics-addr", "off", "--go=false", "--control-socket", sock)
	code, out := runFor(t, 20*time.Second, nil, append(base, sock)...)
	if code == 0 || code == -1 || !strings.Contains(out, "another tracerd answers there") {
		t.Errorf("a second daemon on a live socket: exit %d, %q", code, out)
	}
	if st, err := exec.Command(bin.tracerd, "status", "--control-socket", sock).CombinedOutput(); err != nil || !strings.Contains(string(st), fmt.Sprintf("pid %d", d.cmd.Process.Pid)) {
		t.Errorf("the first daemon's socket no longer answers: %v\n%s", err, st)
	}
	d.stop(t, syscall.SIGTERM)
	if _, err := os.Lstat(sock); err == nil {
		t.Error("the daemon left its socket behind")
	}
}

// stickyDir is a /tmp-like directory: mode 1777.
func stickyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestOutputsNoFollow: a symbolic link planted in a shared sticky
// directory, given as -o or --json (snapshot and run) or as
// TRACERD_CPUPROFILE, is refused and its target left intact; so is
// another user's file there.
func TestOutputsNoFollow(t *testing.T) {
	needRoot(t) // a file of another user; tracing when the refusal fails
	dir := stickyDir(t)
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious"), 0o644)
	link := filepath.Join(dir, "out")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	theirs := filepath.Join(dir, "theirs.jsonl")
	os.WriteFile(theirs, []byte("not yours"), 0o666)
	if err := os.Chown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(freePort(t))
	snap := []string{"snapshot", "--standalone", "--duration", "1s", "--port", port, "--go=false"}
	run := []string{"run", "--port", port, "--metrics-addr", "off", "--control-socket", "off", "--go=false"}
	for _, c := range []struct {
		name string
		args []string
		msg  string
	}{
		{"snapshot --json link", append(snap, "--json", link), "--json: " + link + " is a symbolic link: refusing to follow it"},
		{"snapshot -o link", append(snap, "-o", link), "-o: " + link + " is a symbolic link"},
		{"run --json link", append(run, "--json", link), "--json: " + link + " is a symbolic link"},
		{"snapshot --json theirs", append(snap, "--json", theirs), "belongs to uid 65534"},
		{"run --json theirs", append(run, "--json", theirs), "belongs to uid 65534"},
	} {
		code, out := runFor(t, 20*time.Second, nil, c.args...)
		if code != 2 || !strings.Contains(out, c.msg) {
			t.Errorf("%s: exit %d, %q; want exit 2 and %q", c.name, code, out, c.msg)
		}
	}
	code, out := runFor(t, 10*time.Second, []string{"TRACERD_CPUPROFILE=" + link}, "version")
	if code != 0 || !strings.Contains(out, "TRACERD_CPUPROFILE: "+link+" is a symbolic link") {
		t.Errorf("TRACERD_CPUPROFILE at a link: exit %d, %q", code, out)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("the link's target was written: %q", b)
	}
	if b, _ := os.ReadFile(theirs); string(b) != "not yours" {
		t.Errorf("another user's file was written: %q", b)
	}
}

// TestOutputsMode: new outputs are created 0600, even under umask 0
// (they were 0666): snapshot -o and --json, run --json, TRACERD_CPUPROFILE.
func TestOutputsMode(t *testing.T) {
	needRoot(t)
	srv := startServer(t, nil)
	dir := stickyDir(t)
	umask0 := func(args ...string) *exec.Cmd {
		return exec.Command("/bin/sh", append([]string{"-c", `umask 0; exec "$@"`, "sh", bin.tracerd}, args...)...)
	}
	jsonPath, profile, runJSON, cpu := filepath.Join(dir, "snap.jsonl"), filepath.Join(dir, "cut.pb.gz"), filepath.Join(dir, "run.jsonl"), filepath.Join(dir, "cpu.prof")
	cmd := umask0("snapshot", "--standalone", "--duration", "1s", "--port", fmt.Sprint(srv.Port), "--go=false", "--json", jsonPath, "-o", profile)
	cmd.Env = append(os.Environ(), "TRACERD_CPUPROFILE="+cpu)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("snapshot under umask 0: %v\n%s", err, out)
	}
	d := startDaemonCmd(t, umask0("run", "--port", fmt.Sprint(srv.Port), "--metrics-addr", "off", "--control-socket", "off", "--go=false", "--json", runJSON), nil)
	d.stop(t, syscall.SIGTERM)
	for _, p := range []string{jsonPath, profile, runJSON, cpu} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v under umask 0, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
}

// TestSnapshotNotCovered: a snapshot through a daemon whose selection
// does not cover it is refused (exit 2, saying so and to use
// --standalone) and creates no output; it recorded 0 requests and
// exited 0.
func TestSnapshotNotCovered(t *testing.T) {
	needRoot(t)
	a, b := startServer(t, nil), startServer(t, nil)
	sock := filepath.Join(t.TempDir(), "control.sock")
	startDaemon(t, nil, "--port", fmt.Sprint(a.Port), "--metrics-addr", "off", "--go=false", "--control-socket", sock)
	out := filepath.Join(t.TempDir(), "out.jsonl")
	for _, sel := range [][]string{{"--port", fmt.Sprint(b.Port)}, {}, {"--port", fmt.Sprint(a.Port), "--port", fmt.Sprint(b.Port)}, {"--pid", fmt.Sprint(a.PID)}} {
		args := append([]string{"snapshot", "--control-socket", sock, "--duration", "2s", "--json", out, "-o", out + ".pb.gz"}, sel...)
		code, msg := runFor(t, 20*time.Second, nil, args...)
		if code != 2 || !strings.Contains(msg, "does not cover") || !strings.Contains(msg, "--standalone") {
			t.Errorf("snapshot %v through a daemon tracing port %d: exit %d, %q", sel, a.Port, code, msg)
		}
		for _, p := range []string{out, out + ".pb.gz"} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("a refused snapshot created %s", p)
			}
		}
	}
	// Covered: through the daemon.
	code, msg := runFor(t, 20*time.Second, nil, "snapshot", "--control-socket", sock, "--duration", "1s", "--port", fmt.Sprint(a.Port))
	if code != 0 || !strings.Contains(msg, "through the daemon") {
		t.Errorf("covered snapshot: exit %d, %q", code, msg)
	}
}
