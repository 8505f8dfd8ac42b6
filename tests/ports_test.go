//go:build e2e

package tests

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/control"
	"github.com/tracerd/tracerd/internal/portpressure"
)

// TestPortExhaustion: in a network namespace of its own with a local
// port range of 10 ports and TIME_WAIT reuse off, a traced server
// calls a downstream server per request and closes that connection
// first (it stays in TIME_WAIT): the 11th call fails with EADDRNOTAVAIL.
// tracerd's counts — tracerd status --json and /metrics — must match
// `ss -tan state time-wait` in the namespace and the server's own dial
// errors.
func TestPortExhaustion(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"ip", "ss"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (iproute2)", tool)
		}
	}
	ns := newNetns(t, "ports").name
	const lo, hi = 40000, 40009
	inNetns(t, ns, func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte(fmt.Sprintf("%d %d", lo, hi)), 0); err != nil {
			return err
		}
		// Else connections on loopback reuse TIME_WAIT ports (the
		// default, 2) and the range never runs out.
		return os.WriteFile("/proc/sys/net/ipv4/tcp_tw_reuse", []byte("0"), 0)
	})
	prefix := []string{"ip", "netns", "exec", ns}
	down := startServer(t, prefix, "-addr", "127.0.0.1:9090")
	srv := startServer(t, prefix, "-addr", "127.0.0.1:8080", "-dial", down.Addr)
	sock := filepath.Join(t.TempDir(), "control.sock")
	rt := startRun(t, nil, "--pid", strconv.Itoa(srv.PID), "--control-socket", sock)

	// One keep-alive connection from inside the namespace: one port of
	// the range, towards another destination than the downstream's.
	var c net.Conn
	inNetns(t, ns, func() (err error) {
		c, err = net.Dial("tcp", srv.Addr)
		return err
	})
	defer c.Close()
	const n = 16
	unavailable := 0
	for i := range n {
		ex, err := request(c, "/call/"+strconv.Itoa(i), 0)
		if err != nil {
			t.Fatal(err)
		}
		if ex.Status == 503 {
			unavailable++
		}
	}
	truths := srv.Truths(t, n)
	eaddrnotavail := 0
	for _, tr := range truths {
		if tr.EAddrNotAvail {
			eaddrnotavail++
		} else if tr.DialError != "" {
			t.Errorf("request %d: dial failed otherwise: %s", tr.Index, tr.DialError)
		}
	}
	if eaddrnotavail != n-(hi-lo+1) || unavailable != eaddrnotavail {
		t.Fatalf("server: %d EADDRNOTAVAIL dials, %d answers 503; want %d of %d (a %d-port range)", eaddrnotavail, unavailable, n-(hi-lo+1), n, hi-lo+1)
	}

	// A process tracerd does not trace fails the same way, uncounted.
	other := startServer(t, prefix, "-addr", "127.0.0.1:8081", "-dial", down.Addr)
	inNetns(t, ns, func() error {
		oc, err := net.Dial("tcp", other.Addr)
		if err != nil {
			return err
		}
		defer oc.Close()
		for i := range 3 {
			if ex, err := request(oc, "/untraced/"+strconv.Itoa(i), 0); err != nil || ex.Status != 503 {
				return fmt.Errorf("untraced server: %d, %v", ex.Status, err)
			}
		}
		return nil
	})

	// The kernel's own count, while the sockets are in TIME_WAIT (60 s).
	// The client closes first: a socket stays in FIN_WAIT2 until the
	// downstream reads the end and closes too, which it does on its own
	// time (the last one may still be on its way under load).
	var timeWait, timeWaitDown int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		timeWait = ssCount(t, ns, "state", "time-wait")
		timeWaitDown = ssCount(t, ns, "state", "time-wait", "dst", down.Addr)
		if timeWaitDown >= hi-lo+1 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("ss: %d sockets in TIME_WAIT, %d of them to %s; server: %d EADDRNOTAVAIL", timeWait, timeWaitDown, down.Addr, eaddrnotavail)
	if timeWaitDown != hi-lo+1 {
		t.Fatalf("ss: %d sockets to %s in TIME_WAIT, want %d", timeWaitDown, down.Addr, hi-lo+1)
	}

	// tracerd status --json: the namespace, its range, the destination.
	d, dn := findDestination(t, sock, down.Addr, uint64(eaddrnotavail))
	if dn.RangeSize != hi-lo+1 || dn.PortLow != lo || dn.PortHigh != hi || dn.TWReuse != 0 {
		t.Errorf("namespace: range %d-%d (%d), tcp_tw_reuse %d; want %d-%d, 0", dn.PortLow, dn.PortHigh, dn.RangeSize, dn.TWReuse, lo, hi)
	}
	if dn.TimeWait != timeWait {
		t.Errorf("namespace: %d in TIME_WAIT, ss says %d", dn.TimeWait, timeWait)
	}
	if d.TimeWait != timeWaitDown || d.InUse != timeWaitDown || d.Available != 0 {
		t.Errorf("%s: %d TIME_WAIT, %d in use, %d available; ss says %d in TIME_WAIT (none available)", down.Addr, d.TimeWait, d.InUse, d.Available, timeWaitDown)
	}
	if f := d.Finding; f == nil || f.Code != "ephemeral_port_exhaustion" || f.RecentFailures != uint64(eaddrnotavail) {
		t.Errorf("%s: finding %+v, want ephemeral_port_exhaustion with %d recent failures", down.Addr, f, eaddrnotavail)
	}
	if len(d.Failures) != 1 || d.Failures[0].PID != uint32(srv.PID) || d.Failures[0].Comm != "testserver" {
		t.Errorf("%s: failures %+v, want the traced server's alone (pid %d; pid %d is not traced)", down.Addr, d.Failures, srv.PID, other.PID)
	}

	// /metrics says the same.
	nsl := strconv.FormatUint(dn.NetNS, 10)
	m := rt.Metrics(t)
	for k, want := range map[string]float64{
		fmt.Sprintf(`tracerd_connect_eaddrnotavail_total{comm="testserver",destination=%q,netns=%q}`, down.Addr, nsl): float64(eaddrnotavail),
		fmt.Sprintf(`tracerd_time_wait_connections{destination=%q,netns=%q}`, down.Addr, nsl):                         float64(timeWaitDown),
		fmt.Sprintf(`tracerd_ephemeral_ports_in_use{destination=%q,netns=%q}`, down.Addr, nsl):                        float64(timeWaitDown),
		fmt.Sprintf(`tracerd_ephemeral_port_range_size{netns=%q}`, nsl):                                               hi - lo + 1,
		fmt.Sprintf(`tracerd_namespace_time_wait_connections{netns=%q}`, nsl):                                         float64(timeWait),
	} {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("/metrics %s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	out, err := exec.Command(bin.tracerd, "status", "--control-socket", sock).CombinedOutput()
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	t.Logf("tracerd status:\n%s", out)
	if want := fmt.Sprintf("%s: %d ports in use (%d TIME_WAIT, 0 established), 0 left; %d connect() failed with EADDRNOTAVAIL", down.Addr, timeWaitDown, timeWaitDown, eaddrnotavail); !strings.Contains(string(out), want) {
		t.Errorf("tracerd status lacks %q", want)
	}
	if want := fmt.Sprintf("finding ephemeral_port_exhaustion: %d connects failed", eaddrnotavail); !strings.Contains(string(out), want) {
		t.Errorf("tracerd status lacks %q", want)
	}
	rt.Stop(t)
}

// findDestination waits until tracerd's status shows failures EADDRNOTAVAIL
// failures towards addr, and returns the destination and its namespace.
func findDestination(t *testing.T, sock, addr string, failures uint64) (d portDest, n portNS) {
	t.Helper()
	want := netip.MustParseAddrPort(addr)
	eventually(t, 20*time.Second, func() error {
		out, err := exec.Command(bin.tracerd, "status", "--control-socket", sock, "--json").CombinedOutput()
		if err != nil {
			return fmt.Errorf("status: %v: %s", err, out)
		}
		var st control.Status
		if err := json.Unmarshal(out, &st); err != nil {
			return err
		}
		if st.Ports == nil {
			return fmt.Errorf("no port_pressure in %s", out)
		}
		for _, ns := range st.Ports.Namespaces {
			for _, x := range ns.Destinations {
				if x.Address == want && x.FailureCount() == failures {
					d, n = x, ns
					return nil
				}
			}
		}
		return fmt.Errorf("no %s with %d failures in %s", addr, failures, out)
	})
	return d, n
}

// inNetns runs fn on a thread inside the named namespace (sockets it
// makes stay there; sysctls it writes are the namespace's).
func inNetns(t *testing.T, name string, fn func() error) {
	t.Helper()
	if err := (netns{name}).do(fn); err != nil {
		t.Fatal(err)
	}
}

// ssCount counts the TCP sockets `ss -tan FILTER` lists in the namespace.
func ssCount(t *testing.T, ns string, filter ...string) int {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "ss", "-tanH"}, filter...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return n
}

type (
	portDest = portpressure.Destination
	portNS   = portpressure.Namespace
)
