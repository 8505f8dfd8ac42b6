package goprobe

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/goinspect"
)

// What the manager says about executables goinspect cannot trust, built
// from a real Go server patched through debug/elf offsets (security
// review, issue 10).

const serverSource = `package main

import (
	"encoding/json"
	"net/http"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(r.URL.Path) })
	http.ListenAndServe("127.0.0.1:0", nil)
}
`

var (
	serverOnce sync.Once
	serverPath string
	serverErr  error
)

// buildServer builds serverSource once with the installed toolchain.
func buildServer(t *testing.T) string {
	t.Helper()
	serverOnce.Do(func() {
		dir, err := os.MkdirTemp("", "goprobe-test-")
		if err != nil {
			serverErr = err
			return
		}
		for name, content := range map[string]string{"main.go": serverSource, "go.mod": "module example.com/server\n\ngo 1.22\n"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				serverErr = err
				return
			}
		}
		serverPath = filepath.Join(dir, "server")
		cmd := exec.Command("go", "build", "-o", serverPath, ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "GOWORK=off", "GOOS=linux", "GOARCH=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			serverErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if serverErr != nil {
		t.Fatal(serverErr)
	}
	return serverPath
}

// patched writes a copy of the server changed by patch.
func patched(t *testing.T, patch func(data []byte, f *elf.File) []byte) string {
	t.Helper()
	data, err := os.ReadFile(buildServer(t))
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "server")
	if err := os.WriteFile(out, patch(data, f), 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// logRecorder keeps the records logged through it.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}

// find returns the first record at level whose attributes include pid and
// one containing text.
func (l *logRecorder) find(level slog.Level, pid uint32, text string) (slog.Record, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.records {
		hasPID, hasText := false, false
		r.Attrs(func(a slog.Attr) bool {
			hasPID = hasPID || (a.Key == "pid" && a.Value.String() == fmt.Sprint(pid))
			hasText = hasText || strings.Contains(a.Value.String(), text)
			return true
		})
		if r.Level == level && hasPID && hasText {
			return r, true
		}
	}
	return slog.Record{}, false
}

func (l *logRecorder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, r := range l.records {
		fmt.Fprintf(&b, "%v %s", r.Level, r.Message)
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
		b.WriteByte('\n')
	}
	return b.String()
}

// TestCorruptBinaryWarns: a process running a truncated executable (cut
// after its last loaded byte: it runs, but its section headers, symbols
// and DWARF are gone) was "not a Go binary" at debug level. Selected, it
// must be a warning with its pid and the reason.
func TestCorruptBinaryWarns(t *testing.T) {
	path := patched(t, func(data []byte, f *elf.File) []byte {
		var loaded uint64
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD {
				loaded = max(loaded, p.Off+p.Filesz)
			}
		}
		return data[:loaded]
	})
	cmd := exec.Command(path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	pid := uint32(cmd.Process.Pid)
	time.Sleep(200 * time.Millisecond) // let it run: the truncation spares what it needs
	if state := procState(pid); state == "" || state == "Z" {
		t.Fatalf("the truncated server does not run (state %q)", state)
	}

	rec := &logRecorder{}
	m := New(nil, slog.New(rec))
	m.AttachNow(pid)
	if _, ok := rec.find(slog.LevelWarn, pid, "truncated or corrupt ELF: "); !ok {
		t.Fatalf("no warning with pid %d and \"truncated or corrupt ELF: …\"; logged:\n%s", pid, rec)
	}
	t.Logf("logged: %s", rec)
}

// procState is the state letter of /proc/pid/stat ("": no such process).
func procState(pid uint32) string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) == 0 {
		return ""
	}
	return fields[0]
}

// symtabValue returns the file offset of the st_value of name's .symtab entry.
func symtabValue(t *testing.T, data []byte, f *elf.File, name string) uint64 {
	t.Helper()
	symtab := f.Section(".symtab")
	strtab := f.Sections[symtab.Link]
	for off := symtab.Offset + 24; off+24 <= symtab.Offset+symtab.Size; off += 24 {
		n := strtab.Offset + uint64(binary.LittleEndian.Uint32(data[off:]))
		if end := bytes.IndexByte(data[n:], 0); string(data[n:n+uint64(end)]) == name {
			return off + 8
		}
	}
	t.Fatalf("%s not in .symtab", name)
	return 0
}

const serveHTTP = "net/http.serverHandler.ServeHTTP"

// TestRefusedFunctionReported: a ServeHTTP whose .symtab entry points 3
// bytes into it is refused by goinspect; the manager must not probe it,
// nor the rest of its group (its spans would be wrong), and must say why.
func TestRefusedFunctionReported(t *testing.T) {
	m := New(nil, slog.New(&logRecorder{}))
	good, err := goinspect.Open(buildServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	funcsGood, _, refused, errs := m.targetsOf(1, good)
	if len(errs) != 0 || len(refused) != 0 || funcsGood[serveHTTP].Entry == 0 {
		t.Fatalf("unpatched: errors %v, refused %v, ServeHTTP %+v", errs, refused, funcsGood[serveHTTP])
	}

	path := patched(t, func(data []byte, f *elf.File) []byte {
		v := symtabValue(t, data, f, serveHTTP)
		binary.LittleEndian.PutUint64(data[v:], binary.LittleEndian.Uint64(data[v:])+3)
		return data
	})
	bin, err := goinspect.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	funcs, groups, refused, errs := m.targetsOf(1, bin)
	if _, ok := funcs[serveHTTP]; ok || !refused["http"] || len(errs) != 1 || !errors.Is(errs[0], goinspect.ErrSymbolMismatch) {
		t.Fatalf("patched: ServeHTTP found %v, refused %v, errors %v; want it refused with ErrSymbolMismatch", ok, refused, errs)
	}
	goodEntry := fmt.Sprintf("%#x", funcsGood[serveHTTP].Entry)
	badEntry := fmt.Sprintf("%#x", funcsGood[serveHTTP].Entry+3)
	if msg := errs[0].Error(); !strings.Contains(msg, serveHTTP) || !strings.Contains(msg, goodEntry) || !strings.Contains(msg, badEntry) {
		t.Errorf("error %q does not name the function and both addresses (%s, %s)", msg, badEntry, goodEntry)
	}
	if groups["gc"] != 2 || refused["gc"] {
		t.Errorf("the GC group must still be probed: groups %v refused %v", groups, refused)
	}
	t.Log(errs[0])
}

// TestGarbageSymtabReported: a .symtab of random bytes made every target
// absent, and the manager logged "Go probes attached links=0" without a
// reason. The targets must be found from the pclntab, and the reason
// .symtab was not used logged with the pid.
func TestGarbageSymtabReported(t *testing.T) {
	path := patched(t, func(data []byte, f *elf.File) []byte {
		s := f.Section(".symtab")
		rand.New(rand.NewSource(1)).Read(data[s.Offset+24 : s.Offset+s.Size])
		return data
	})
	bin, err := goinspect.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	rec := &logRecorder{}
	m := New(nil, slog.New(rec))
	const pid = 4242
	funcs, groups, refused, errs := m.targetsOf(pid, bin)
	if len(errs) != 0 || len(refused) != 0 || groups["http"] == 0 || groups["gc"] != 2 || funcs[serveHTTP].Entry == 0 {
		t.Fatalf("errors %v refused %v groups %v", errs, refused, groups)
	}
	if _, ok := rec.find(slog.LevelWarn, pid, ".symtab"); !ok {
		t.Fatalf("no warning with pid %d saying why .symtab is unused; logged:\n%s", pid, rec)
	}
	t.Logf("logged: %s", rec)
}
