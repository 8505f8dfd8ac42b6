//go:build e2e

package tests

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// scenarios are the provoked-truth tests that every way of attaching
// must pass.
var scenarios = []struct {
	name string
	fn   func(*testing.T)
}{
	{"AcceptQueue", TestAcceptQueue},
	{"RecvQueue", TestRecvQueue},
	{"Runqueue", TestRunqueue},
	{"CFSThrottle", TestCFSThrottle},
	{"SendQueueZeroWindow", TestSendQueueZeroWindow},
	{"Retransmits", TestRetransmits},
	{"Nagle", TestNagle},
	{"OutboundCalls", TestOutboundCalls},
}

// fallbacks force the ways other kernels take, on this one: raw
// tracepoints everywhere (kernels whose BTF lacks an event; without
// typed arguments no socket is marked, so every socket hook looks its
// socket up), and the syscall exits (kernels < 6.3 where fentry/fexit
// are refused). fentry/fexit themselves run where the
// kernel allows them: the Debian guests of make test-kernels.
var fallbacks = []struct {
	name   string
	refuse string
	want   map[string]string // hook → way
}{
	// (sock_recv_length and the like go to raw_tp here, to fexit on
	// kernels < 6.3: not checked, so that the test runs on both.)
	{"raw_tp", "tp_btf", map[string]string{"sched_switch": "raw_tp/sched_switch",
		"inet_sock_set_state": "raw_tp/inet_sock_set_state", "tcp_retransmit_skb": "raw_tp/tcp_retransmit_skb"}},
	{"syscalls", "sock_recv_length:tp_btf,sock_recv_length:raw_tp,sock_recv_length:fexit," +
		"sock_send_length:tp_btf,sock_send_length:raw_tp,sock_send_length:fexit", map[string]string{
		"sock_recv_length": "syscalls/sys_exit_{read,readv,recvfrom,recvmsg}",
		"sock_send_length": "syscalls/sys_exit_{write,writev,sendto,sendmsg,sendfile64}"}},
}

// TestFallbackWays runs the scenarios with each fallback forced
// (TRACERD_NO_WAYS), after checking tracerd takes the ways meant.
func TestFallbackWays(t *testing.T) {
	needRoot(t)
	if testing.Short() {
		t.Skip("long: the scenarios once per fallback")
	}
	for _, f := range fallbacks {
		t.Run(f.name, func(t *testing.T) {
			t.Setenv("TRACERD_NO_WAYS", f.refuse)
			ways := checkWays(t)
			for hook, want := range f.want {
				if ways[hook] != want {
					t.Fatalf("with TRACERD_NO_WAYS=%s hook %s takes %q, want %q", f.refuse, hook, ways[hook], want)
				}
			}
			for _, s := range scenarios {
				t.Run(s.name, s.fn)
			}
		})
	}
}

// checkWays runs tracerd check --json: hook → the way it took.
func checkWays(t *testing.T) map[string]string {
	t.Helper()
	out, err := exec.Command(bin.tracerd, "check", "--json").Output()
	if err != nil {
		t.Fatalf("tracerd check: %v\n%s", err, out)
	}
	var rep struct {
		Hooks []struct{ Name, Way string }
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("tracerd check --json: %v\n%s", err, out)
	}
	ways := map[string]string{}
	for _, h := range rep.Hooks {
		ways[h.Name] = h.Way
	}
	return ways
}

// TestFailedStartKeepsOutputs: a snapshot that cannot start (here: every
// way of a required hook refused) leaves existing output files as they
// were, and says which hook is missing.
func TestFailedStartKeepsOutputs(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	jsonPath, profile := filepath.Join(dir, "keep.json"), filepath.Join(dir, "keep.pb.gz")
	for _, p := range []string{jsonPath, profile} {
		if err := os.WriteFile(p, []byte("precious\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin.tracerd, "snapshot", "--standalone", "--duration", "1s", "--json", jsonPath, "-o", profile)
	cmd.Env = append(os.Environ(), "TRACERD_NO_WAYS=tp_btf,raw_tp")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("snapshot started without any way for inet_sock_set_state:\n%s", out)
	}
	if !strings.Contains(string(out), "required hook inet_sock_set_state") {
		t.Errorf("the error does not name the missing hook:\n%s", out)
	}
	for _, p := range []string{jsonPath, profile} {
		if b, err := os.ReadFile(p); err != nil || string(b) != "precious\n" {
			t.Errorf("%s changed by a snapshot that never started: %q, %v", p, b, err)
		}
	}
	// The daemon likewise creates its --json file only once tracing.
	runJSON := filepath.Join(dir, "run.jsonl")
	cmd = exec.Command(bin.tracerd, "run", "--json", runJSON, "--metrics-addr", "off", "--control-socket", "off")
	cmd.Env = append(os.Environ(), "TRACERD_NO_WAYS=tp_btf,raw_tp")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("run started without any way for inet_sock_set_state:\n%s", out)
	}
	if _, err := os.Stat(runJSON); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tracerd run that never started created its --json file (%v)", err)
	}
}
