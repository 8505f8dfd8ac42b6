//go:build e2e

package outputs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCreateOtherUsersFile: in a shared sticky directory (/tmp-like:
// 1777) another user's file is never an output (it needs root to give a
// file to another user).
func TestCreateOtherUsersFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	theirs := filepath.Join(dir, "theirs.json")
	if err := os.WriteFile(theirs, []byte("not yours"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if f, err := Create(theirs, false); err == nil {
		f.Close()
		t.Error("wrote another user's file in a sticky world-writable directory")
	} else if !strings.Contains(err.Error(), "belongs to uid 65534") {
		t.Errorf("another user's file: %v", err)
	}
	if err := CheckWritable(theirs); err == nil {
		t.Error("CheckWritable passed another user's file in a sticky directory")
	}
	if b, _ := os.ReadFile(theirs); string(b) != "not yours" {
		t.Errorf("another user's file was changed: %q", b)
	}
}
