//go:build e2e

package control

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestListenKeepsOtherUsersSocket: a stale socket of another user is not
// tracerd's to remove.
func TestListenKeepsOtherUsersSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a socket to another user")
	}
	path := filepath.Join(t.TempDir(), "control.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if err := os.Lchown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if s, err := Listen(path, fake{}, discard); err == nil {
		s.Close()
		t.Fatal("Listen replaced another user's socket")
	} else if !errors.Is(err, ErrUnsafePath) || !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("error: %v", err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 65534 {
		t.Errorf("the socket was removed: %v", err)
	}
}
