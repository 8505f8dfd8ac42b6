//go:build e2e

package goinspect

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

const caddyPath = "/usr/bin/caddy"

// TestCaddy inspects Debian's caddy: a stripped Go binary built by someone
// else (Debian bookworm: go1.19.8, external linking, no DWARF, no .symtab).
// The package is installed when missing if the test runs as root.
func TestCaddy(t *testing.T) {
	if _, err := os.Stat(caddyPath); err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("%s missing and not root, cannot apt-get install caddy", caddyPath)
		}
		if _, err := exec.LookPath("apt-get"); err != nil {
			t.Skip("caddy missing and no apt-get:", err)
		}
		cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", "caddy")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get install caddy: %v\n%s", err, out)
		}
	}
	out, err := exec.Command(goCmd(), "version", caddyPath).Output()
	if err != nil {
		t.Fatalf("go version %s: %v", caddyPath, err)
	}
	// "/usr/bin/caddy: go1.19.8"
	want := strings.TrimSpace(string(out[strings.LastIndex(string(out), ":")+1:]))

	b, err := Open(caddyPath)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	t.Logf("caddy: %s stripped=%v dwarf=%v symbols=%s text=%#x (%s) offsets=%s %+v",
		b.GoVersion, b.Stripped, b.HasDWARF, b.SymbolsFrom, b.TextStart, b.TextStartFrom, b.OffsetsFrom, b.Offsets)
	if b.GoVersion != want || want == "" {
		t.Errorf("GoVersion %q, go version says %q", b.GoVersion, want)
	}
	if b.HasDWARF {
		t.Skip("this caddy has DWARF; the test expects Debian's stripped build")
	}
	if !b.Stripped || b.SymbolsFrom != "pclntab" || b.OffsetsFrom != "table" {
		t.Errorf("Stripped %v SymbolsFrom %q OffsetsFrom %q; want true, pclntab, table", b.Stripped, b.SymbolsFrom, b.OffsetsFrom)
	}
	if tab, _ := tableOffsets(b.GoVersion); b.Offsets != tab || !b.Offsets.HTTP {
		t.Errorf("Offsets %+v, table %+v", b.Offsets, tab)
	}
	file, err := os.ReadFile(caddyPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range append(probedFuncs, "net/http.(*conn).serve", "github.com/caddyserver/caddy/v2/modules/caddyhttp.(*Server).ServeHTTP") {
		fn, err := b.Func(name)
		if err != nil {
			t.Errorf("Func(%s): %v", name, err)
			continue
		}
		checkFunc(t, file, fn)
		t.Logf("%s entry %#x size %d probe %#x (%s) rets %d tailjumps %d", name, fn.Entry, fn.Size, fn.EntryProbe, fn.EntryProbeInsn, len(fn.Returns), len(fn.TailJumps))
	}
	checkServeHTTPABI(t, b)
}
