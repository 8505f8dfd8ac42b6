//go:build e2e

package tests

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const unitPath = "../deploy/tracerd.service"

// unitCaps reads a capability line (CapabilityBoundingSet=...) of the unit.
func unitCaps(t *testing.T, key string) []string {
	t.Helper()
	f, err := os.Open(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var caps []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), key+"="); ok {
			caps = append(caps, strings.Fields(v)...)
		}
	}
	if len(caps) == 0 {
		t.Fatalf("%s has no %s", unitPath, key)
	}
	slices.Sort(caps)
	return caps
}

// needTool finds a command, installing its Debian package when missing
// (as root); it skips with the reason when that is impossible.
func needTool(t *testing.T, cmd, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(cmd); err == nil {
		return p
	}
	if os.Geteuid() != 0 {
		t.Skipf("%s missing and not root to install %s", cmd, pkg)
	}
	out, err := exec.Command("apt-get", "install", "-y", "-qq", "--no-install-recommends", pkg).CombinedOutput()
	if err != nil {
		t.Skipf("%s missing and apt-get install %s failed: %v\n%s", cmd, pkg, err, out)
	}
	p, err := exec.LookPath(cmd)
	if err != nil {
		t.Skipf("%s still missing after installing %s", cmd, pkg)
	}
	return p
}

// TestUnitVerify runs systemd-analyze verify on the unit, with ExecStart
// pointing at the binary under test (verify checks it is executable).
func TestUnitVerify(t *testing.T) {
	analyze := needTool(t, "systemd-analyze", "systemd")
	data, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.Replace(string(data), "ExecStart=/usr/local/bin/tracerd", "ExecStart="+bin.tracerd, 1)
	if unit == string(data) {
		t.Fatal("unit's ExecStart is not /usr/local/bin/tracerd (make install rewrites that path)")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "tracerd.service")
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", p).CombinedOutput()
	var complaints []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "tracerd") {
			complaints = append(complaints, line)
		}
	}
	if err != nil || len(complaints) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The pieces the service relies on.
	for _, want := range []string{"Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID",
		"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "RuntimeDirectory=tracerd"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %s", want)
		}
	}
	if b, a := unitCaps(t, "CapabilityBoundingSet"), unitCaps(t, "AmbientCapabilities"); !slices.Equal(b, a) {
		t.Errorf("CapabilityBoundingSet %v != AmbientCapabilities %v", b, a)
	}
}

// capsArg turns CAP_BPF CAP_PERFMON into setpriv's -all,+bpf,+perfmon.
func capsArg(caps []string) string {
	s := "-all"
	for _, c := range caps {
		s += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	return s
}

// TestUnitCapabilities proves the unit's capability set is enough and
// minimal: tracerd as an unprivileged user (nobody) holding exactly
// those capabilities (inheritable, ambient and bounding sets, as
// systemd's AmbientCapabilities and CapabilityBoundingSet give them)
// traces a real Go server owned by root, Go probes included; with any
// one of them removed it refuses to start and names the capability.
func TestUnitCapabilities(t *testing.T) {
	needRoot(t)
	setpriv := needTool(t, "setpriv", "util-linux")
	caps := unitCaps(t, "AmbientCapabilities")
	// nobody must reach the binary and the outputs.
	dir, err := os.MkdirTemp("", "tracerd-caps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	exe := filepath.Join(dir, "tracerd")
	copyFile(t, bin.tracerd, exe, 0o755)

	srv := startServer(t, nil)
	run := func(ctx context.Context, caps []string, jsonPath string, extra ...string) *exec.Cmd {
		args := []string{"--reuid", "65534", "--regid", "65534", "--clear-groups",
			"--inh-caps", capsArg(caps), "--ambient-caps", capsArg(caps), "--bounding-set", capsArg(caps),
			exe, "snapshot", "--standalone", "--port", fmt.Sprint(srv.Port), "--duration", "5m", "--json", jsonPath}
		return exec.CommandContext(ctx, setpriv, append(args, extra...)...)
	}
	// refused runs tracerd with caps, which must not be enough: it must
	// exit 1 at once naming the missing capability.
	refused := func(t *testing.T, caps []string, drop string, extra ...string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := run(ctx, caps, filepath.Join(dir, "less.json"), extra...).CombinedOutput()
		code := -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != 1 || !strings.Contains(string(out), drop+" (") {
			t.Fatalf("without %s: exit %d (want 1) and a message naming it; got:\n%s", drop, code, out)
		}
		t.Logf("without %s: %s", drop, strings.TrimSpace(string(out)))
	}

	t.Run("exactly the unit's set", func(t *testing.T) {
		jsonPath := filepath.Join(dir, "all.json")
		tr := startTracerCmd(t, run(context.Background(), caps, jsonPath), jsonPath, 15*time.Second)
		c := dial(t, srv.Addr)
		get := func(path string) {
			if _, err := request(c, path, 0); err != nil {
				t.Fatal(err)
			}
		}
		// Go probes attach when a port target's process is first seen.
		get("/first")
		tr.waitLog(t, "Go probes attached", 1, 10*time.Second)
		get("/caps")
		recs := recordsOn(tr.Stop(t), srv.Port)
		if len(recs) != 2 || recs[1].HTTP == nil || recs[1].HTTP.Target != "/caps" {
			t.Fatalf("want the two requests traced, got %+v", recs)
		}
		if _, ok := recs[0].Phases["recv_queue"]; !ok {
			t.Errorf("no recv_queue phase: %+v", recs[0].Phases)
		}
		stderr := tr.stderr.String()
		if !strings.Contains(stderr, "Go probes attached") || strings.Contains(stderr, "permission denied") {
			t.Errorf("Go probes did not attach with the unit's capabilities:\n%s", stderr)
		}
		t.Logf("as uid 65534 with %v: %d records, Go probes attached", caps, len(recs))
	})
	for _, drop := range caps {
		t.Run("without "+drop, func(t *testing.T) {
			refused(t, slices.DeleteFunc(slices.Clone(caps), func(c string) bool { return c == drop }), drop)
		})
	}
	// The documented set without Go awareness (engine.go: false).
	kernelOnly := []string{"CAP_BPF", "CAP_PERFMON", "CAP_DAC_READ_SEARCH"}
	unit, _ := os.ReadFile(unitPath)
	if !strings.Contains(string(unit), strings.Join(kernelOnly, " ")) {
		t.Errorf("the unit does not document the kernel-only set %v", kernelOnly)
	}
	t.Run("kernel engine only", func(t *testing.T) {
		jsonPath := filepath.Join(dir, "kernel.json")
		tr := startTracerCmd(t, run(context.Background(), kernelOnly, jsonPath, "--go=false"), jsonPath, 15*time.Second)
		if _, err := request(dial(t, srv.Addr), "/kernel", 0); err != nil {
			t.Fatal(err)
		}
		recs := recordsOn(tr.Stop(t), srv.Port)
		if len(recs) != 1 || recs[0].HTTP == nil || recs[0].HTTP.Target != "/kernel" {
			t.Fatalf("want the one request traced, got %+v", recs)
		}
	})
	for _, drop := range kernelOnly {
		t.Run("kernel engine only without "+drop, func(t *testing.T) {
			refused(t, slices.DeleteFunc(slices.Clone(kernelOnly), func(c string) bool { return c == drop }), drop, "--go=false")
		})
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, mode); err != nil {
		t.Fatal(err)
	}
}
