package loader

import (
	"os"
	"testing"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
}

func TestOpenAttachesEveryHook(t *testing.T) {
	requireRoot(t)
	tr, err := Open(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for _, h := range tr.Hooks {
		if !h.OK {
			t.Errorf("hook %s not attached on this kernel: %s", h.Name(), h.Reason)
		}
	}
}
