//go:build e2e

package tests

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHostileSymtabNotCrashed (security review, issue 10): a Go server
// whose .symtab entry for net/http.serverHandler.ServeHTTP points 1 to 3
// bytes into the function was probed there, inside its first instruction
// (the stack check, CMP RSP, 16(R14)). At +2 the breakpoint byte turned
// the rest of it into an instruction writing through RSI, and the server
// died on its first request; at +1 and +3 it ran on with its stack check
// corrupted. Traced, it must serve on, and tracerd say why it left
// ServeHTTP unprobed.
func TestHostileSymtabNotCrashed(t *testing.T) {
	needRoot(t)
	for _, delta := range []uint64{1, 2, 3} {
		t.Run("+"+strconv.FormatUint(delta, 10), func(t *testing.T) { testSymtabShifted(t, delta) })
	}
}

func testSymtabShifted(t *testing.T, delta uint64) {
	const fn = "net/http.serverHandler.ServeHTTP"
	path := symtabShifted(t, buildGoServer(t, goBuilds[0]), fn, delta)
	srv := startGoServer(t, path)
	tr := startTracer(t, "--pid", strconv.Itoa(srv.PID))

	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < 20; i++ {
		resp, err := client.Get("http://" + srv.Addr + "/json?n=10")
		if err != nil {
			t.Fatalf("request %d: %v (server alive: %v)", i, err, alive(srv.PID))
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %s", i, resp.Status)
		}
	}
	if !alive(srv.PID) {
		t.Fatal("the server died")
	}
	tr.Stop(t)
	if log := tr.stderr.String(); !strings.Contains(log, fn) || !strings.Contains(log, ".symtab disagrees with .gopclntab") {
		t.Errorf("tracerd did not say why %s is not probed:\n%s", fn, log)
	}
}

// symtabShifted copies the executable with the .symtab value of fn moved
// by delta bytes.
func symtabShifted(t *testing.T, path, fn string, delta uint64) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	symtab := f.SectionByType(elf.SHT_SYMTAB)
	if symtab == nil {
		t.Fatal("no .symtab")
	}
	strtab := f.Sections[symtab.Link]
	const entSize = 24 // Elf64_Sym: name, info, other, shndx, value, size
	found := false
	for off := symtab.Offset + entSize; off+entSize <= symtab.Offset+symtab.Size; off += entSize {
		name := data[strtab.Offset+uint64(binary.LittleEndian.Uint32(data[off:])):]
		if string(name[:bytes.IndexByte(name, 0)]) == fn {
			v := binary.LittleEndian.Uint64(data[off+8:])
			binary.LittleEndian.PutUint64(data[off+8:], v+delta)
			found = true
			break
		}
	}
	if !found {
		t.Fatalf("%s not in .symtab", fn)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(path)+"-symtab-shifted")
	if err := os.WriteFile(out, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// alive reports whether pid still runs (not a zombie).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return err == nil && !strings.Contains(string(stat[bytes.LastIndexByte(stat, ')'):]), ") Z")
}
