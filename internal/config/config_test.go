package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The shipped file documents the defaults: it must parse to exactly them.
func TestShippedDefaultConfig(t *testing.T) {
	cfg, err := Load("../../deploy/tracerd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def := Default()
	if !reflect.DeepEqual(norm(cfg), norm(def)) {
		t.Fatalf("deploy/tracerd.yaml differs from the defaults:\n%+v\n%+v", cfg, def)
	}
	// Every key of the Go types appears (documented) in the shipped file.
	out, err := def.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	shipped, _ := os.ReadFile("../../deploy/tracerd.yaml")
	for _, line := range strings.Split(string(out), "\n") {
		key, _, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && key != "" && !strings.HasPrefix(key, "-") && !strings.Contains(string(shipped), key+":") {
			t.Errorf("key %q is not in deploy/tracerd.yaml", key)
		}
	}
}

// norm makes empty lists nil: yaml gives [] where Default has nil.
func norm(c Config) Config {
	n := func(v any) {
		rv := reflect.ValueOf(v).Elem()
		if rv.Len() == 0 {
			rv.SetZero()
		}
	}
	n(&c.Targets.PIDs)
	n(&c.Targets.Ports)
	n(&c.Targets.Comms)
	n(&c.Targets.Cgroups)
	n(&c.Engine.SkipHooks)
	n(&c.Exporters.ServiceNames)
	n(&c.Exporters.OTLP.Headers)
	return c
}

func TestParseValues(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(`
targets:
  ports: [8080, 9090]
  comms: [nginx]
engine:
  idle_timeout: 2s
  go: false
exporters:
  metrics_addr: "off"
  otlp:
    endpoint: http://collector:4318
    queue_size: 100
`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Targets.Ports, []uint16{8080, 9090}) || cfg.Targets.Comms[0] != "nginx" {
		t.Errorf("targets: %+v", cfg.Targets)
	}
	if cfg.Engine.IdleTimeout != 2*time.Second || cfg.Engine.Go || cfg.Engine.MaxConns != Default().Engine.MaxConns {
		t.Errorf("engine: %+v", cfg.Engine)
	}
	if cfg.Exporters.OTLP.QueueSize != "100" || cfg.Exporters.MetricsAddr != "off" {
		t.Errorf("exporters: %+v", cfg.Exporters)
	}
	// Round trip through --print-config's output.
	out, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("printed", out)
	if err != nil {
		t.Fatalf("printed config does not parse: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(norm(back), norm(cfg)) {
		t.Errorf("round trip changed the config:\n%s\n%+v\n%+v", out, back, cfg)
	}
}

func TestEmptyFile(t *testing.T) {
	for _, s := range []string{"", "# nothing\n", "---\n"} {
		cfg, err := Parse("e.yaml", []byte(s))
		if err != nil || !reflect.DeepEqual(norm(cfg), Default()) {
			t.Errorf("%q: %v %+v", s, err, cfg)
		}
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown key", "targets:\n  ports: [80]\n  prots: [81]\n", `e.yaml:3: unknown key "prots" in targets`},
		{"unknown section", "engine:\n  go: true\nexport:\n  json: x\n", `e.yaml:3: unknown key "export" in the top level`},
		{"wrong type list", "targets:\n  ports: 80x\n", `e.yaml:2: wrong type: str "80x" where a list is expected`},
		{"wrong type item", "targets:\n  ports: [80, http]\n", `e.yaml:2: wrong type: str "http" where a whole number (uint16) is expected`},
		{"port too big", "targets:\n  ports: [70000]\n", `e.yaml:2: wrong type: int "70000" where a whole number (uint16) is expected`},
		{"bad duration", "\nengine:\n  idle_timeout: soon\n", `e.yaml:3: wrong type: str "soon" where a duration (e.g. 500ms, 2s) is expected`},
		{"bad bool", "engine:\n  go: maybe\n", `e.yaml:2: wrong type: str "maybe" where true or false is expected`},
		{"mapping expected", "engine: 5\n", `e.yaml:1: wrong type: int "5" where a mapping (engine) is expected`},
		{"zero port", "targets:\n  ports:\n    - 0\n", `e.yaml:2: targets.ports: 0 is not a port`},
		{"bad ring", "engine:\n  ring_buffer_bytes: 1000\n", `e.yaml:2: engine.ring_buffer_bytes: 1000 must be a power of two`},
		{"bad addr", "exporters:\n  metrics_addr: localhost\n", `e.yaml:2: exporters.metrics_addr: "localhost": want host:port or off`},
		{"bad level", "log:\n  level: loud\n", `e.yaml:2: log.level:`},
		{"syntax", "targets:\n  ports: [80\n", "e.yaml:1: syntax error: did not find expected"},
	} {
		_, err := Parse("e.yaml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p+": no such file") {
		t.Fatalf("got %v", err)
	}
}
