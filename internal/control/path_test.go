package control

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var discard = slog.New(slog.DiscardHandler)

// TestListenKeepsRegularFile: a control socket path naming an existing
// regular file is refused and the file is left as it was (issue 10: it
// was deleted).
func TestListenKeepsRegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "precious.txt")
	if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Listen(path, fake{}, discard)
	if err == nil {
		s.Close()
		t.Fatal("Listen took a regular file's path")
	}
	if !errors.Is(err, ErrUnsafePath) || !strings.Contains(err.Error(), "exists and is not a socket (a regular file)") {
		t.Errorf("error: %v", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "keep me" {
		t.Errorf("the file was touched: %q %v", b, err)
	}
}

// TestListenKeepsSymlink: a symbolic link at the path is neither
// followed nor removed, whatever it points at (a file, a stale socket).
func TestListenKeepsSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target.txt")
	os.WriteFile(target, []byte("keep me"), 0o644)
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	for _, to := range []string{target, stale, filepath.Join(dir, "nowhere")} {
		link := filepath.Join(dir, "link-to-"+filepath.Base(to))
		if err := os.Symlink(to, link); err != nil {
			t.Fatal(err)
		}
		s, err := Listen(link, fake{}, discard)
		if err == nil {
			s.Close()
			t.Errorf("Listen took the symbolic link %s → %s", link, to)
			continue
		}
		if !errors.Is(err, ErrUnsafePath) || !strings.Contains(err.Error(), "is a symbolic link") {
			t.Errorf("%s: %v", link, err)
		}
		if got, err := os.Readlink(link); err != nil || got != to {
			t.Errorf("the link was touched: %q %v", got, err)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "keep me" {
		t.Errorf("the link's target was touched: %q", b)
	}
	if fi, err := os.Lstat(stale); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("the stale socket behind a link was removed: %v", err)
	}
}

// TestListenKeepsLiveSocket: another daemon's live socket is not
// replaced and still answers afterwards.
func TestListenKeepsLiveSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	first, err := Listen(path, fake{}, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if s, err := Listen(path, fake{}, discard); err == nil {
		s.Close()
		t.Fatal("a second Listen took a live socket")
	} else if !strings.Contains(err.Error(), "another tracerd answers there") {
		t.Errorf("error: %v", err)
	}
	c, err := Dial(path)
	if err != nil {
		t.Fatalf("the first daemon's socket no longer answers: %v", err)
	}
	c.Close()
}

// TestCloseRemovesOnlyItsSocket: a path replaced while the daemon ran
// is not removed at Close.
func TestCloseRemovesOnlyItsSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	s, err := Listen(path, fake{}, discard)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	os.WriteFile(path, []byte("someone else's"), 0o600)
	s.Close()
	if b, err := os.ReadFile(path); err != nil || string(b) != "someone else's" {
		t.Errorf("Close removed a file it did not make: %q %v", b, err)
	}
}
