package main

import (
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tracerd/tracerd/internal/loader"
)

// captureStderr runs f with os.Stderr going to a file and returns what
// was written.
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	tmp, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = tmp
	defer func() { os.Stderr = old }()
	f()
	b, _ := os.ReadFile(tmp.Name())
	return string(b)
}

// TestRunHelp: 'tracerd run -h' lists every flag, and no "panic calling
// String method on zero main.replaceList" (flag.PrintDefaults calls
// String on a zero value of each flag.Value type).
func TestRunHelp(t *testing.T) {
	var err error
	out := captureStderr(t, func() { _, _, err = runConfig([]string{"-h"}) })
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run -h: %v", err)
	}
	if strings.Contains(out, "panic") {
		t.Errorf("run -h panics:\n%s", out)
	}
	for _, f := range []string{"-skip-hook", "-service-name", "-otlp-header", "-port", "-otlp-queue-size"} {
		if !strings.Contains(out, f) {
			t.Errorf("run -h does not list %s:\n%s", f, out)
		}
	}
	if s := (&replaceList{}).String(); s != "" {
		t.Errorf("zero replaceList: %q", s)
	}
}

// TestFlagRanges: each numeric flag refuses a value out of its range as
// a usage error (exit 2) naming the flag, the value and the range.
func TestFlagRanges(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--otlp-queue-size", "99999999999999999"}, "--otlp-queue-size: 99999999999999999 is out of range: want 1 to 1048576 spans"},
		{[]string{"--otlp-queue-size", "10000000000"}, "--otlp-queue-size: 10000000000 is out of range"},
		{[]string{"--otlp-batch-size", "0"}, "--otlp-batch-size: 0 is out of range: want 1 to 16384 spans"},
		{[]string{"--otlp-batch-delay", "0s"}, "--otlp-batch-delay: 0s is out of range: want 1ms to 1m"},
		{[]string{"--otlp-timeout", "1000h"}, "--otlp-timeout: 1000h is out of range: want 1ms to 5m"},
		{[]string{"--latency-budget", "-1s"}, "--latency-budget: -1s is out of range: want 0s to 1h (0: none)"},
		{[]string{"--sample-ratio", "NaN"}, "--sample-ratio: NaN is out of range: want a ratio from 0 to 1"},
		{[]string{"--sample-ratio", "Inf"}, "--sample-ratio: +Inf is out of range"},
		{[]string{"--idle-timeout", "-1s"}, "--idle-timeout: -1s is out of range: want 1ms to 10m"},
		{[]string{"--max-conns", "4294967296"}, "--max-conns: 4294967296 is out of range: want 1 to 4194304 connections"},
		{[]string{"--go-max-calls", "-5"}, "--go-max-calls: -5 is out of range: want 0 to 1000000 calls per second (0: no bound)"},
		{[]string{"--skip-hook", "nope"}, `--skip-hook: no hook named "nope": optional hooks are`},
		{[]string{"--skip-hook", "sys_exit_accept4"}, "--skip-hook: hook sys_exit_accept4 is required and cannot be skipped"},
		{[]string{"--metrics-addr", "127.0.0.1:99999"}, `--metrics-addr: "127.0.0.1:99999": port 99999 is out of range`},
	} {
		_, _, err := runConfig(append([]string{"--port", "1"}, tc.args...))
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %v: %v, want a usage error with %q", tc.args, err, tc.want)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--duration", "-1s"}, "--duration: -1s is out of range: want 1ms to 24h"},
		{[]string{"--top", "99999999999"}, "--top: 99999999999 is out of range: want 0 to 1000 requests"},
		{[]string{"--idle-timeout", "-1s"}, "--idle-timeout: -1s is out of range"},
		{[]string{"--skip-hook", "nope"}, `--skip-hook: no hook named "nope"`},
	} {
		var code int
		out := captureStderr(t, func() { code = snapshotCmd(append([]string{"--standalone", "--port", "1"}, tc.args...)) })
		if code != exitUsage || !strings.Contains(out, tc.want) {
			t.Errorf("snapshot %v: exit %d %q, want exit 2 and %q", tc.args, code, out, tc.want)
		}
	}
}

// TestOTLPEnvRanges: the OTEL_* variables are held to the same ranges
// (a huge OTEL_BSP_MAX_QUEUE_SIZE panicked in makechan).
func TestOTLPEnvRanges(t *testing.T) {
	for _, tc := range []struct{ env, val, want string }{
		{"OTEL_BSP_MAX_QUEUE_SIZE", "99999999999999999", "OTEL_BSP_MAX_QUEUE_SIZE: 99999999999999999 is out of range"},
		{"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100000", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE: 100000 is out of range"},
		{"OTEL_BSP_SCHEDULE_DELAY", "9999999999", "OTEL_BSP_SCHEDULE_DELAY: "},
		{"OTEL_EXPORTER_OTLP_TIMEOUT", "9999999999", "OTEL_EXPORTER_OTLP_TIMEOUT: "},
		{"OTEL_TRACES_SAMPLER_ARG", "NaN", "OTEL_TRACES_SAMPLER_ARG: NaN is out of range"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv("OTEL_TRACES_SAMPLER", "traceidratio")
			t.Setenv(tc.env, tc.val)
			f := &exporterFlags{metricsAddr: "off"}
			f.otlp.Endpoint = "http://127.0.0.1:1"
			x, err := f.build(slog.New(slog.DiscardHandler))
			if err == nil {
				x.shutdown()
				t.Fatalf("%s=%s accepted", tc.env, tc.val)
			}
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want a usage error with %q", err, tc.want)
			}
		})
	}
}

// TestReloadRefusesOutOfRange: a reload whose file holds a value out of
// range is refused and the running configuration kept (the same file
// killed a running daemon: makechan panic while building exporters).
func TestReloadRefusesOutOfRange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tracerd.yaml")
	good := "exporters:\n  metrics_addr: \"off\"\n  otlp:\n    endpoint: http://127.0.0.1:1\ncontrol:\n  socket: \"off\"\n"
	os.WriteFile(path, []byte(good), 0o600)
	args := []string{"--config", path}
	cfg, opts, err := runConfig(args)
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	x, err := exporterFlagsOf(cfg.Exporters).build(log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { x.shutdown() }()
	d := &daemon{args: args, opts: opts, log: log, cfg: cfg, x: x, sink: x.sink()}
	for _, bad := range []string{
		"    queue_size: \"99999999999999999\"\n",
		"    queue_size: \"10000000000\"\n",
		"    batch_size: \"0\"\n",
		"  sampling:\n    ratio: NaN\n",
	} {
		doc := strings.Replace(good, "control:", bad+"control:", 1)
		os.WriteFile(path, []byte(doc), 0o600)
		logs.Reset()
		d.reload()
		if !strings.Contains(logs.String(), "reload failed: keeping the running configuration") || !strings.Contains(logs.String(), "is out of range") {
			t.Errorf("reload with %q: log %q", bad, logs.String())
		}
		if d.x != x || d.cfg.Exporters.OTLP.QueueSize != "" || d.cfg.Exporters.Sampling.Ratio != "" {
			t.Errorf("reload with %q changed the running configuration: %+v", bad, d.cfg.Exporters)
		}
	}
}

// TestCoverage: the daemon's selection covers a snapshot's only when
// every kind it restricts is restricted to values it takes.
func TestCoverage(t *testing.T) {
	for _, tc := range []struct {
		daemon, want loader.Targets
		covered      bool
	}{
		{loader.Targets{}, loader.Targets{Ports: []uint16{80}}, true},
		{loader.Targets{Ports: []uint16{80, 443}}, loader.Targets{Ports: []uint16{80}}, true},
		{loader.Targets{Ports: []uint16{80}}, loader.Targets{Ports: []uint16{80}, Comms: []string{"nginx"}}, true},
		{loader.Targets{Ports: []uint16{80}}, loader.Targets{Ports: []uint16{8080}}, false},
		{loader.Targets{Ports: []uint16{80}}, loader.Targets{}, false},
		{loader.Targets{Ports: []uint16{80}}, loader.Targets{PIDs: []uint32{1}}, false},
		{loader.Targets{Comms: []string{"nginx"}}, loader.Targets{Comms: []string{"nginx", "caddy"}}, false},
		{loader.Targets{Comms: []string{"averyveryverylongname"}}, loader.Targets{Comms: []string{"averyveryverylo"}}, true},
		{loader.Targets{Cgroups: []string{"/sys/fs/cgroup/a"}}, loader.Targets{Cgroups: []string{"/sys/fs/cgroup/a/b/"}}, true},
		{loader.Targets{Cgroups: []string{"/sys/fs/cgroup/a"}}, loader.Targets{Cgroups: []string{"/sys/fs/cgroup/ab"}}, false},
	} {
		why := coverage(tc.daemon, tc.want)
		if (why == "") != tc.covered {
			t.Errorf("daemon %+v, snapshot %+v: %q, want covered=%v", tc.daemon, tc.want, why, tc.covered)
		}
		if why != "" && !strings.Contains(why, "does not cover") || why != "" && !strings.Contains(why, "--standalone") {
			t.Errorf("message %q does not say it does not cover and to use --standalone", why)
		}
	}
}

// TestCreateOutput: outputs are created 0600 whatever the umask, never
// through a symbolic link; an existing file of ours is truncated (or
// appended to). Never another user's file in a shared sticky directory:
// TestCreateOutputOtherUsersFile (end-to-end, it needs root).
func TestCreateOutput(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}

	p := filepath.Join(dir, "new.json")
	f, err := createOutput(p, false)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("one\n")
	f.Close()
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("new output mode %v under umask 0, want 0600", fi.Mode().Perm())
	}
	f, _ = createOutput(p, true)
	f.WriteString("two\n")
	f.Close()
	if b, _ := os.ReadFile(p); string(b) != "one\ntwo\n" {
		t.Errorf("append: %q", b)
	}
	f, _ = createOutput(p, false)
	f.Close()
	if b, _ := os.ReadFile(p); len(b) != 0 {
		t.Errorf("not truncated: %q", b)
	}

	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious"), 0o644)
	link := filepath.Join(dir, "planted")
	os.Symlink(victim, link)
	for _, app := range []bool{false, true} {
		if f, err := createOutput(link, app); err == nil {
			f.Close()
			t.Errorf("append=%v: wrote through a symbolic link", app)
		} else if !strings.Contains(err.Error(), "symbolic link") {
			t.Errorf("append=%v: %v", app, err)
		}
		if err := checkWritable(link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
			t.Errorf("checkWritable passed a symbolic link: %v", err)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("the link's target was changed: %q", b)
	}
	dangling := filepath.Join(dir, "dangling")
	os.Symlink(filepath.Join(dir, "not-yet"), dangling)
	if f, err := createOutput(dangling, false); err == nil {
		f.Close()
		t.Error("created a file through a dangling symbolic link")
	}
	if _, err := os.Lstat(filepath.Join(dir, "not-yet")); err == nil {
		t.Error("the dangling link's target was created")
	}

	fifo := filepath.Join(dir, "fifo")
	syscall.Mkfifo(fifo, 0o600)
	if f, err := createOutput(fifo, false); err == nil {
		f.Close()
		t.Error("opened a FIFO as an output")
	}
}

// TestFlagError: the flag package's messages name the flag with two dashes.
func TestFlagError(t *testing.T) {
	for in, want := range map[string]string{
		`invalid value "x" for flag -go: parse error`:                   `--go "x": parse error`,
		`invalid value "-5" for flag -go-max-calls: -5 is out of range`: `--go-max-calls: -5 is out of range`,
		`flag provided but not defined: -frobnicate`:                    `flag provided but not defined: -frobnicate`,
	} {
		if got := flagError(errors.New(in)); got != want {
			t.Errorf("%s: got %s, want %s", in, got, want)
		}
	}
}
