package findings

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReadHost: the raw reads give what read gives (a file rewritten in
// place, past the buffer; /proc/stat) and its errors (a directory).
func TestReadHost(t *testing.T) {
	o := newOpenFiles()
	defer o.close()
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := o.readHost("k", path); err != nil || string(b) != "one\n" {
		t.Fatalf("first read: %q %v", b, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 5000) // past the buffer
	if err := os.WriteFile(path, big, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := o.readHost("k", path); err != nil || !bytes.Equal(b, big) {
		t.Fatalf("after growing: %d bytes, %v", len(b), err)
	}
	if b, err := o.readHost("stat", "/proc/stat"); err != nil || !bytes.HasPrefix(b, []byte("cpu ")) {
		t.Errorf("/proc/stat: %.40q %v", b, err)
	}
	_, err := o.readHost("dir", dir)
	var pe *fs.PathError
	if !errors.As(err, &pe) || !errors.Is(err, unix.EISDIR) {
		t.Errorf("reading a directory: %v, want EISDIR", err)
	}
	if _, ok := o.fds["dir"]; ok {
		t.Error("a directory that failed to read stays open")
	}
}
