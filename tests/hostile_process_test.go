//go:build e2e

package tests

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitLinks waits up to d for the Go uprobe links to be back to want
// (or fewer: another tracer on the host may have dropped some).
func waitLinks(t *testing.T, want int, d time.Duration) {
	t.Helper()
	eventually(t, d, func() error {
		if n := uprobeLinks(t); n > want {
			return fmt.Errorf("%d Go uprobe links, want %d", n, want)
		}
		return nil
	})
}

// TestCommExitWithoutConnection: processes selected by --comm that exit
// before any traced connection lose their probes too.
func TestCommExitWithoutConnection(t *testing.T) {
	needRoot(t)
	path := buildGoServer(t, goBuilds[0])
	before := uprobeLinks(t)
	tr := startTracer(t, "--comm", "goserver-local", "--log-level", "info")
	var srvs []*GoServer
	for i := 0; i < 3; i++ {
		srv := startGoServer(t, path)
		tr.waitLog(t, fmt.Sprintf("msg=\"Go probes attached\" pid=%d", srv.PID), 1, 5*time.Second)
		srvs = append(srvs, srv)
	}
	for _, srv := range srvs {
		p, _ := os.FindProcess(srv.PID)
		_ = p.Kill()
	}
	for _, srv := range srvs {
		tr.waitLog(t, fmt.Sprintf("msg=\"Go probes detached\" pid=%d", srv.PID), 1, 10*time.Second)
	}
	waitLinks(t, before, 12*time.Second)
	tr.Stop(t)
}

// TestCommExecOutOfSelection: a process selected by --comm that execs
// into a binary of another name loses its probes.
func TestCommExecOutOfSelection(t *testing.T) {
	needRoot(t)
	path := buildGoServer(t, goBuilds[0])
	other := filepath.Join(t.TempDir(), "goserver-other")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, b, 0o755); err != nil {
		t.Fatal(err)
	}
	before := uprobeLinks(t)
	tr := startTracer(t, "--comm", "goserver-local", "--log-level", "info")
	srv := startGoServer(t, path)
	attached := fmt.Sprintf("pid=%d", srv.PID)
	tr.waitLog(t, "msg=\"Go probes attached\" "+attached, 1, 5*time.Second)
	resp, _ := get(t, http.DefaultClient, "http://"+srv.Addr+"/exec?to="+other)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	tr.waitLog(t, "msg=\"Go probes detached\" "+attached, 1, 10*time.Second)
	waitLinks(t, before, 12*time.Second)
	if strings.Count(tr.stderr.String(), "msg=\"Go probes attached\" "+attached) != 1 {
		t.Errorf("probes attached again to the process under its new name:\n%s", tr.stderr)
	}
	tr.Stop(t)
}
