package goinspect

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

//go:generate go test -run ^TestGenerateGRPCTable$ -regen-grpc -timeout 60m

var (
	regenGRPC = flag.Bool("regen-grpc", false, "TestGenerateGRPCTable: rebuild grpc_table.go from the DWARF of grpc-go builds")
	checkGRPC = flag.Bool("checktable-grpc", false, "TestGenerateGRPCTable: check grpc_table.go against the DWARF of grpc-go builds")
)

// grpcOldest is the oldest grpc-go minor version the table covers
// (mid-2023; older servers are traced without method names).
const grpcOldest = 55

// grpcVersionsToBuild lists the newest release of every minor version from
// v1.<grpcOldest> on, as the module proxy lists them.
func grpcVersionsToBuild(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command(goCmd(), "list", "-m", "-versions", GRPCModule)
	cmd.Dir = buildDir
	cmd.Env = toolchainEnv("local")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Skipf("listing grpc-go versions from the module proxy: %v: %s", err, out)
	}
	newest := map[int]string{}
	for _, v := range strings.Fields(string(out))[1:] {
		n, ok := grpcMinor(v)
		if !ok || n < grpcOldest || strings.Contains(v, "-") {
			continue
		}
		newest[n] = v // the list is sorted: the last one wins
	}
	var vs []string
	for _, v := range newest {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool {
		a, _ := grpcMinor(vs[i])
		b, _ := grpcMinor(vs[j])
		return a < b
	})
	return vs
}

// buildGRPCServer builds testdata/grpcserver against one grpc-go version
// with the installed Go and returns the executable's path.
func buildGRPCServer(t *testing.T, version string, args ...string) string {
	t.Helper()
	dir := filepath.Join(buildDir, "grpc-"+version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join("testdata", "grpcserver", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/grpcserver\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "server"+strings.NewReplacer(" ", "_", "=", "_", "/", "_").Replace(strings.Join(args, "")))
	for _, step := range [][]string{
		{"get", GRPCModule + "@" + version},
		{"mod", "tidy"},
		append(append([]string{"build", "-o", exe}, args...), "."),
	} {
		cmd := exec.Command(goCmd(), step...)
		cmd.Dir = dir
		cmd.Env = toolchainEnv("local")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("grpc-go %s: go %s: %v\n%s", version, strings.Join(step, " "), err, out)
		}
	}
	return exe
}

// grpcLayoutOf reads the layout from a build's DWARF and checks the
// argument registers the BPF programs rely on.
func grpcLayoutOf(t *testing.T, path string) GRPCLayout {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		t.Fatal(err)
	}
	l, err := grpcFromDWARF(d, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	checkGRPCParams(t, d)
	return l
}

// checkGRPCParams checks the probed functions' parameters: with one word
// for a pointer and two for an interface, handleStream's stream is the
// fourth word (RDI) and writeStatus's status the third (RCX).
func checkGRPCParams(t *testing.T, d *dwarf.Data) {
	t.Helper()
	params := dwarfParams(t, d, GRPCHandleStream, GRPCWriteStatus, GRPCWriteStatusOld)
	hs := params[GRPCHandleStream]
	if len(hs) < 3 || hs[0] != "s *google.golang.org/grpc.Server" ||
		hs[1] != "t google.golang.org/grpc/internal/transport.ServerTransport" ||
		(hs[2] != "stream *google.golang.org/grpc/internal/transport.ServerStream" && hs[2] != "stream *google.golang.org/grpc/internal/transport.Stream") {
		t.Errorf("handleStream parameters %q: stream is not in RDI", hs)
	}
	ws := params[GRPCWriteStatus]
	if ws == nil {
		ws = params[GRPCWriteStatusOld]
	}
	if len(ws) != 3 || !strings.HasPrefix(ws[0], "t *") || !strings.HasPrefix(ws[1], "s *") ||
		ws[2] != "st *google.golang.org/grpc/internal/status.Status" {
		t.Errorf("writeStatus parameters %q: status is not in RCX", ws)
	}
}

// dwarfParams returns "name type" of each input parameter of the named
// functions.
func dwarfParams(t *testing.T, d *dwarf.Data, names ...string) map[string][]string {
	t.Helper()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string][]string{}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e == nil {
			return out
		}
		if e.Tag == dwarf.TagCompileUnit {
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if e.Tag != dwarf.TagSubprogram || !want[name] || !e.Children {
			if e.Children {
				r.SkipChildren()
			}
			continue
		}
		var ps []string
		for {
			c, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if c == nil || c.Tag == 0 {
				break
			}
			if out, _ := c.Val(dwarf.AttrVarParam).(bool); c.Tag == dwarf.TagFormalParameter && !out {
				pname, _ := c.Val(dwarf.AttrName).(string)
				typ := "?"
				if off, ok := c.Val(dwarf.AttrType).(dwarf.Offset); ok {
					if ty, err := d.Type(off); err == nil {
						typ = ty.String()
					}
				}
				ps = append(ps, pname+" "+typ)
			}
			if c.Children {
				r.SkipChildren()
			}
		}
		out[name] = ps
	}
}

// TestGenerateGRPCTable builds testdata/grpcserver against the newest
// release of every grpc-go minor version and reads the layout from DWARF.
// With -regen-grpc it rewrites grpc_table.go, with -checktable-grpc it
// compares; otherwise it skips (dozens of builds).
func TestGenerateGRPCTable(t *testing.T) {
	if !*regenGRPC && !*checkGRPC {
		t.Skip("run with -regen-grpc (go generate) or -checktable-grpc")
	}
	rows := map[int]*grpcTableEntry{}
	for _, v := range grpcVersionsToBuild(t) {
		n, _ := grpcMinor(v)
		l := grpcLayoutOf(t, buildGRPCServer(t, v))
		t.Logf("%s: %+v", v, l)
		rows[n] = &grpcTableEntry{GRPCLayout: l, From: []string{v}}
	}
	ns := slices.Sorted(maps.Keys(rows))
	if *checkGRPC {
		for _, n := range ns {
			if e, ok := grpcTable[n]; !ok || e.GRPCLayout != rows[n].GRPCLayout {
				t.Errorf("v1.%d: table %+v, DWARF %+v", n, e.GRPCLayout, rows[n].GRPCLayout)
			}
		}
		return
	}
	var b bytes.Buffer
	b.WriteString(`// Code generated by "go generate ./internal/goinspect" (TestGenerateGRPCTable -regen-grpc); DO NOT EDIT.

package goinspect

// grpcTable holds grpc-go layouts by minor version (v1.N -> N), for
// binaries without DWARF. Each row was read from the DWARF of
// testdata/grpcserver built against the grpc-go release in From (the
// newest of its minor version when generated); patch releases of a minor
// version are assumed to share its layout.
var grpcTable = map[int]grpcTableEntry{
`)
	for _, n := range ns {
		r := rows[n]
		fmt.Fprintf(&b, "%d: {From: []string{%s}, GRPCLayout: GRPCLayout{StreamDeref: %v, StreamEmbed: %d, StreamMethod: %d, StatusProto: %d, StatusCode: %d}},\n",
			n, quoteAll(r.From), r.StreamDeref, r.StreamEmbed, r.StreamMethod, r.StatusProto, r.StatusCode)
	}
	b.WriteString("}\n")
	writeGenerated(t, "grpc_table.go", b.Bytes())
	t.Logf("wrote grpc_table.go for v1.%d-v1.%d", ns[0], ns[len(ns)-1])
}

// TestGRPCLayout checks one grpc-go build both ways: the DWARF layout of
// the unstripped binary equals the table's row, and the stripped binary
// gets it from the table.
func TestGRPCLayout(t *testing.T) {
	version := "v1.70.0"
	needModuleProxy(t, "grpc-go "+version)
	l := grpcLayoutOf(t, buildGRPCServer(t, version))
	e, ok := grpcTable[70]
	if !ok || e.GRPCLayout != l {
		t.Fatalf("table row v1.70 %+v, DWARF %+v: run go generate ./internal/goinspect", e.GRPCLayout, l)
	}
	for _, stripped := range []bool{false, true} {
		path := buildGRPCServer(t, version)
		if stripped {
			path = buildGRPCServer(t, version, "-ldflags=-s -w")
		}
		b, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if b.GRPC == nil {
			t.Fatalf("stripped=%v: no grpc layout: %v", stripped, b.GRPCErr)
		}
		wantFrom := map[bool]string{false: "dwarf", true: "table"}[stripped]
		if b.GRPC.GRPCLayout != l || b.GRPC.Version != version || b.GRPC.From != wantFrom {
			t.Errorf("stripped=%v: %+v, want %+v from %s, version %s", stripped, b.GRPC, l, wantFrom, version)
		}
		for _, name := range []string{GRPCHandleStream, GRPCWriteStatus} {
			if _, err := b.Func(name); err != nil {
				t.Errorf("stripped=%v: %s: %v", stripped, name, err)
			}
		}
		b.Close()
	}
}
