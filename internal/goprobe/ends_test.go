package goprobe

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracerd/tracerd/internal/goinspect"
	"github.com/tracerd/tracerd/internal/loader"
)

// buildSource builds a main package with the installed toolchain.
func buildSource(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{"main.go": src, "go.mod": "module example.com/ends\n\ngo 1.22\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "bin")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "GOWORK=off", "GOOS=linux", "GOARCH=amd64")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, msg)
	}
	return out
}

const marshalSource = `package main

import (
	"encoding/json"
	"net/http"
)

type name string
%s
func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b, err := json.Marshal(map[string]name{"path": name(r.URL.Path)})
		if err != nil {
			return
		}
		w.Write(b)
	})
	http.ListenAndServe("127.0.0.1:0", nil)
}
`

// json.Marshal's calls end after its callers' calls when that leaves no
// RET probe (its result's copy counts); a caller that returns Marshal's
// result (a MarshalJSON method) would keep one, single-stepped at each
// call: then they end after its worker's call.
func TestEndsLeaveFewestRETs(t *testing.T) {
	for _, c := range []struct {
		name, methods, wantIn string
	}{
		{"callers", "", "main.main.func1"},
		{"worker", "func (n name) MarshalJSON() ([]byte, error) { return json.Marshal(string(n)) }\n", "encoding/json.Marshal"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bin, err := goinspect.Open(buildSource(t, strings.Replace(marshalSource, "%s", c.methods, 1)))
			if err != nil {
				t.Fatal(err)
			}
			defer bin.Close()
			f, err := bin.Func("encoding/json.Marshal")
			if err != nil {
				t.Fatal(err)
			}
			m, _, _ := newTestManager(t)
			exits := m.endsOf(1, bin, f, *targetOf(loader.TracerdGoFuncGO_JSON_MARSHAL))
			if len(exits) == 0 {
				t.Fatal("no exits: RET probes")
			}
			for _, e := range exits {
				if !e.Emulated || e.Func != c.wantIn {
					t.Errorf("exit %s %#x %s (emulated %v), want emulated ones in %s", e.Func, e.Addr, e.Insn, e.Emulated, c.wantIn)
				}
			}
		})
	}
}

// In a real build, stripped or not, ServeHTTP's exits lie where they
// say which ResponseWriter the call has, for HTTP/1 and HTTP/2 alike, and
// the offsets to read its status there are known: no WriteHeader probe
// is needed.
func TestServeHTTPExitReadsStatus(t *testing.T) {
	built := buildSource(t, strings.Replace(marshalSource, "%s", "", 1))
	for _, name := range []string{"dwarf", "stripped"} {
		t.Run(name, func(t *testing.T) {
			path := built
			if name == "stripped" {
				stripped := path + ".stripped"
				if out, err := exec.Command("strip", "-o", stripped, path).CombinedOutput(); err != nil {
					t.Skipf("strip: %v %s", err, out)
				}
				path = stripped
			}
			bin, err := goinspect.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer bin.Close()
			if want := map[string]string{"dwarf": "dwarf", "stripped": "table"}[name]; bin.OffsetsFrom != want {
				t.Fatalf("offsets from %s, want %s", bin.OffsetsFrom, want)
			}
			f, err := bin.Func("net/http.serverHandler.ServeHTTP")
			if err != nil {
				t.Fatal(err)
			}
			m, _, _ := newTestManager(t)
			tg := *targetOf(loader.TracerdGoFuncGO_SERVE_HTTP)
			if err := bin.ScanCallers(f.Name); err != nil {
				t.Fatal(err)
			}
			ps, err := probesOf(f, tg, m.endsOf(1, bin, f, tg))
			if err != nil {
				t.Fatal(err)
			}
			got := statusAtExit(bin, ps)
			if !got[loader.TracerdGoRwKindGO_RW_RESPONSE] || !got[loader.TracerdGoRwKindGO_RW_HTTP2] {
				t.Errorf("status read at the exit for %v, want HTTP/1 and HTTP/2; probes %+v", got, ps)
			}
			if (bin.Hijack != nil) != (name == "dwarf") {
				t.Errorf("hijack layout %+v", bin.Hijack)
			}
		})
	}
}
