package findings

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenFiles: a kept-open file reads as it is now (rewritten in
// place, larger than the buffer), a deleted one fails once closed, and
// a directory fails and is not kept; the same through the raw reads of
// the host's files (readHost).
func TestOpenFiles(t *testing.T) {
	for _, host := range []bool{false, true} {
		o := newOpenFiles()
		defer o.close()
		read := o.read
		if host {
			read = o.readHost
		}
		dir := t.TempDir()
		path := filepath.Join(dir, "f")
		if err := os.WriteFile(path, []byte("one\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, err := read("k", path); err != nil || string(b) != "one\n" {
			t.Fatalf("host %v: first read: %q %v", host, b, err)
		}
		big := bytes.Repeat([]byte("0123456789abcdef"), 5000) // 80,000 bytes: past the buffer
		if err := os.WriteFile(path, big, 0o644); err != nil {
			t.Fatal(err)
		}
		if b, err := read("k", path); err != nil || !bytes.Equal(b, big) {
			t.Fatalf("host %v: after growing: %d bytes, %v", host, len(b), err)
		}
		if len(o.fds) != 1 {
			t.Errorf("host %v: open: %v", host, o.fds)
		}
		o.forget("k")
		os.Remove(path)
		if _, err := read("k", path); err == nil {
			t.Errorf("host %v: read a removed file", host)
		}
		if real, err := read("stat", "/proc/stat"); err != nil || !bytes.HasPrefix(real, []byte("cpu ")) {
			t.Errorf("host %v: /proc/stat: %.40q %v", host, real, err)
		}
		if _, err := read("dir", dir); !errors.Is(err, unix.EISDIR) {
			t.Errorf("host %v: reading a directory: %v, want EISDIR", host, err)
		}
		if _, ok := o.fds["dir"]; ok {
			t.Errorf("host %v: a directory that failed to read stays open", host)
		}
	}
}
