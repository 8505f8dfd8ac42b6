package findings

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestOpenFiles: a kept-open file reads as it is now (rewritten in
// place, larger than the buffer), and a deleted one fails once closed.
func TestOpenFiles(t *testing.T) {
	o := newOpenFiles()
	defer o.close()
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := o.read("k", path); err != nil || string(b) != "one\n" {
		t.Fatalf("first read: %q %v", b, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 5000) // 80,000 bytes: past the buffer
	if err := os.WriteFile(path, big, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := o.read("k", path); err != nil || !bytes.Equal(b, big) {
		t.Fatalf("after growing: %d bytes, %v", len(b), err)
	}
	if len(o.fds) != 1 {
		t.Errorf("open: %v", o.fds)
	}
	o.forget("k")
	os.Remove(path)
	if _, err := o.read("k", path); err == nil {
		t.Error("read a removed file")
	}
	if real, err := o.read("stat", "/proc/stat"); err != nil || !bytes.HasPrefix(real, []byte("cpu ")) {
		t.Errorf("/proc/stat: %.40q %v", real, err)
	}
}
