package flags

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/config"
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
// String method on zero *flags.replaceList" (flag.PrintDefaults calls
// String on a zero value of each flag.Value type).
func TestRunHelp(t *testing.T) {
	var err error
	out := captureStderr(t, func() { _, _, err = Run([]string{"-h"}) })
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run -h: %v", err)
	}
	if strings.Contains(out, "panic") {
		t.Errorf("run -h panics:\n%s", out)
	}
	for _, f := range []string{"-skip-hook", "-service-name", "-otlp-header", "-port", "-otlp-queue-size", "-keep-query-values", "-json"} {
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
		{[]string{"--finding-min-lost", "2m"}, "--finding-min-lost: 2m is out of range: want 0s to 1m (0: any)"},
		{[]string{"--finding-min-share", "101"}, "--finding-min-share: 101 is out of range: want 0 to 100 percent (0: any)"},
		{[]string{"--max-conns", "4294967296"}, "--max-conns: 4294967296 is out of range: want 1 to 4194304 connections"},
		{[]string{"--go-max-calls", "-5"}, "--go-max-calls: -5 is out of range: want 0 to 1000000 calls per second (0: no bound)"},
		{[]string{"--skip-hook", "nope"}, `--skip-hook: no hook named "nope": optional hooks are`},
		{[]string{"--skip-hook", "sys_exit_accept4"}, "--skip-hook: hook sys_exit_accept4 is required and cannot be skipped"},
		{[]string{"--metrics-addr", "127.0.0.1:99999"}, `--metrics-addr: "127.0.0.1:99999": port 99999 is out of range`},
		{[]string{"--log-level", "loud"}, `--log-level: slog: level string "loud": unknown name`},
		{[]string{"--log-format", "xml"}, `--log-format: "xml": want text or json`},
		{[]string{"--port", "0"}, `--port: "0" is not a valid port`},
		{[]string{"--comm", ""}, `--comm: empty value`},
		{[]string{"--keep-query-values=maybe"}, `invalid boolean value "maybe" for -keep-query-values: parse error`},
		{[]string{"extra"}, `unexpected argument "extra" (see 'tracerd run -h')`},
	} {
		_, _, err := Run(append([]string{"--port", "1"}, tc.args...))
		var ue config.UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %v: %v, want a usage error with %q", tc.args, err, tc.want)
		}
	}
}

// TestSnapshotFlags: snapshot's flags, and its mistakes (with the usage
// line on stderr).
func TestSnapshotFlags(t *testing.T) {
	c, o, err := Snapshot([]string{"--port", "80", "--duration", "2s", "--top", "3", "-o", "p.pb.gz", "--json", "-", "--go=false", "--standalone", "--idle-timeout", "1s"})
	want := config.Default()
	want.Targets.Ports = []uint16{80}
	want.Engine.Go = false
	want.Engine.IdleTimeout = time.Second
	if err != nil || !reflect.DeepEqual(c, want) || o != (SnapshotOptions{Duration: 2 * time.Second, Out: "p.pb.gz", JSON: "-", Top: 3, Standalone: true, Socket: config.DefaultSocket}) {
		t.Errorf("%v %+v %+v", err, c, o)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--duration", "-1s"}, "--duration: -1s is out of range: want 1ms to 24h"},
		{[]string{"--top", "99999999999"}, "--top: 99999999999 is out of range: want 0 to 1000 requests"},
		{[]string{"--idle-timeout", "-1s"}, "--idle-timeout: -1s is out of range"},
		{[]string{"--skip-hook", "nope"}, `--skip-hook: no hook named "nope"`},
		{[]string{"--pid", "0"}, `--pid: "0" is not a valid pid`},
		{[]string{"--frob"}, "flag provided but not defined: -frob (see 'tracerd snapshot -h')"},
	} {
		var err error
		out := captureStderr(t, func() { _, _, err = Snapshot(append([]string{"--port", "1"}, tc.args...)) })
		var ue config.UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(out, "usage: tracerd snapshot ") {
			t.Errorf("snapshot %v: %v, stderr %q, want a usage error with %q", tc.args, err, out, tc.want)
		}
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

func writeFile(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tracerd.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const fileDoc = `targets:
  ports: [8080, 9090]
  comms: [nginx]
engine:
  idle_timeout: 2s
  skip_hooks: [sched_switch]
exporters:
  json: /var/log/tracerd/requests.jsonl
  metrics_addr: "off"
  service_names: ["port:8080=web"]
  keep_query_values: true
  otlp:
    endpoint: http://collector:4318
    headers: ["a=1", "b=2"]
    queue_size: "100"
  sampling:
    ratio: "0.5"
log:
  level: WARN
control:
  socket: /run/tracerd/other.sock
`

// TestRunMerge: the file's values hold unless a flag gives another; a
// list flag replaces the file's list (each kind on its own), and the
// rest of the file is kept.
func TestRunMerge(t *testing.T) {
	path := writeFile(t, fileDoc)
	c, opts, err := Run([]string{"--config", path, "--print-config"})
	if err != nil {
		t.Fatal(err)
	}
	if opts.ConfigPath != path || !opts.PrintConfig {
		t.Errorf("options %+v", opts)
	}
	want, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want.Log.Level = "warn" // as slog names it
	if !reflect.DeepEqual(c, want) {
		t.Errorf("no flags: %+v\nwant the file's %+v", c, want)
	}

	c, _, err = Run([]string{"--config=" + path, "--port", "1", "--port", "2", "--otlp-header", "c=3", "--otlp-queue-size", "200",
		"--idle-timeout", "3s", "--go=false", "--log-level", "debug", "--control-socket", "off", "--json", ""})
	if err != nil {
		t.Fatal(err)
	}
	want.Targets.Ports = []uint16{1, 2}
	want.Exporters.OTLP.Headers = []string{"c=3"}
	want.Exporters.OTLP.QueueSize = "200"
	want.Exporters.JSON = ""
	want.Engine.IdleTimeout = 3 * time.Second
	want.Engine.Go = false
	want.Log.Level = "debug"
	want.Control.Socket = "off"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("flags over the file: %+v\nwant %+v", c, want)
	}
}

// TestRunWithoutFile: the defaults, with no control socket unless asked.
func TestRunWithoutFile(t *testing.T) {
	c, opts, err := Run([]string{"--port", "80", "--keep-query-values", "--otlp-insecure"})
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.Control.Socket = "off"
	want.Targets.Ports = []uint16{80}
	want.Exporters.KeepQueryValues = true
	want.Exporters.OTLP.Insecure = "true"
	if opts.ConfigPath != "" || !reflect.DeepEqual(c, want) {
		t.Errorf("%+v %+v\nwant %+v", opts, c, want)
	}
	c, _, err = Run([]string{"--control-socket", "/tmp/x.sock"})
	if err != nil || c.Control.Socket != "/tmp/x.sock" {
		t.Errorf("--control-socket: %v %q", err, c.Control.Socket)
	}
}

// TestRunErrors: a bad file or a selection that names nothing is a usage
// error; --print-config prints a selection without checking it.
func TestRunErrors(t *testing.T) {
	bad := writeFile(t, "targets:\n  ports: [0]\nfoo: 1\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", bad}, `:3: unknown key "foo" in the top level`},
		{[]string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, "missing.yaml: no such file"},
		{[]string{"--pid", "4294967295"}, "--pid 4294967295: no such process"},
		{[]string{"--cgroup", "/proc"}, "--cgroup /proc: not a cgroup directory"},
	} {
		_, _, err := Run(tc.args)
		var ue config.UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %v: %v, want a usage error with %q", tc.args, err, tc.want)
		}
	}
	if c, _, err := Run([]string{"--pid", "4294967295", "--print-config"}); err != nil || c.Targets.PIDs[0] != 4294967295 {
		t.Errorf("--print-config checks the selection: %v", err)
	}
}
