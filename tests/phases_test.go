//go:build e2e

package tests

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/export"
)

// byPeer returns the records of the connection whose client end is c,
// indexed by request_index.
func byPeer(t *testing.T, recs []export.JSONRecord, c net.Conn, want int) []export.JSONRecord {
	t.Helper()
	out := make([]export.JSONRecord, want)
	seen := 0
	for _, r := range recs {
		if r.Conn.Peer != c.LocalAddr().String() {
			continue
		}
		if i := int(r.Conn.RequestIndex); i < want && out[i].SpanID == "" {
			out[i] = r
			seen++
		}
	}
	if seen != want {
		t.Fatalf("want %d records for connection %s, got %d of %d records: %+v", want, c.LocalAddr(), seen, len(recs), recs)
	}
	return out
}

func TestAcceptQueue(t *testing.T) {
	needRoot(t)
	port := freePort(t)
	tr := startTracer(t, "--port", strconv.Itoa(port))
	// The server sleeps before every accept(): connections wait in the
	// accept queue meanwhile.
	srv := startServer(t, nil, "-addr", fmt.Sprintf("127.0.0.1:%d", port), "-accept-delay", "250ms")
	var conns []net.Conn
	var dialing, connected []time.Time
	for i := 0; i < 2; i++ {
		dialing = append(dialing, time.Now())
		c := dial(t, srv.Addr)
		connected = append(connected, time.Now())
		if _, err := request(c, "/accept", 0); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	truths := srv.Truths(t, 2)
	recs := tr.Stop(t)
	for i, c := range conns {
		r := byPeer(t, recs, c, 1)[0]
		// The connection entered the accept queue during Dial: the truth
		// is an interval, as wide as this process was slow to run again
		// after connect() (tens of ms under emulation).
		shortest := truths[i].AcceptUnixNano - connected[i].UnixNano()
		longest := truths[i].AcceptUnixNano - dialing[i].UnixNano()
		if shortest < int64(100*time.Millisecond) {
			t.Fatalf("accept-queue wait not provoked: %s", time.Duration(shortest))
		}
		withinRange(t, fmt.Sprintf("conn %d accept_queue", i), phase(t, r, "accept_queue"), shortest, longest)
	}
}

// withinRange is within for a truth known to lie in [lo, hi].
func withinRange(t *testing.T, what string, measured, lo, hi int64) {
	t.Helper()
	switch {
	case measured < lo:
		within(t, what, measured, lo)
	case measured > hi:
		within(t, what, measured, hi)
	default:
		t.Logf("%s: tracerd measured %s, truth between %s and %s", what, time.Duration(measured), time.Duration(lo), time.Duration(hi))
	}
}

// lateReads has a traced server read each of n requests (PREFIX0,
// PREFIX1, …) 150 ms after it came; waits are how long each request's
// bytes waited, by the client's and the server's clocks.
func lateReads(t *testing.T, prefix string, n int) (*Tracer, net.Conn, []int64) {
	t.Helper()
	srv := startServer(t, nil, "-read-delay", "150ms")
	tr := startTracer(t, "--pid", strconv.Itoa(srv.PID))
	c := dial(t, srv.Addr)
	var sent []time.Time
	for i := 0; i < n; i++ {
		ex, err := request(c, fmt.Sprintf("%s%d", prefix, i), 0)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, ex.Sent)
	}
	truths := srv.Truths(t, n)
	var waits []int64
	for i := range n {
		from := sent[i].UnixNano()
		if i == 0 {
			from = max(from, truths[0].AcceptUnixNano) // bytes cannot be read before accept
		}
		waits = append(waits, truths[i].ReadUnixNano-from)
	}
	return tr, c, waits
}

func TestRecvQueue(t *testing.T) {
	needRoot(t)
	tr, c, waits := lateReads(t, "/recv/", 3)
	recs := byPeer(t, tr.Stop(t), c, 3)
	for i, r := range recs {
		within(t, fmt.Sprintf("request %d recv_queue", i), phase(t, r, "recv_queue"), waits[i])
		if r.HTTP == nil || r.HTTP.Target != fmt.Sprintf("/recv/%d", i) || r.HTTP.Status != 200 {
			t.Errorf("request %d: http = %+v", i, r.HTTP)
		}
		if _, ok := r.Phases["accept_queue"]; ok != (i == 0) {
			t.Errorf("request %d: accept_queue present=%v, want only on the first request", i, ok)
		}
	}
}

// hog burns CPU on one CPU until the test ends.
func hog(t *testing.T, cpu int) {
	t.Helper()
	cmd := exec.Command("taskset", "-c", strconv.Itoa(cpu), "sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
}

// contendedServer runs a traced server that burns 120 ms of CPU per
// request on CPU 1, which a CPU hog shares: the serving thread waits its
// turn.
func contendedServer(t *testing.T) (*Server, *Tracer, net.Conn) {
	t.Helper()
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("needs taskset (util-linux)")
	}
	srv := startServer(t, []string{"taskset", "-c", "1"}, "-work", "120ms", "-lock-thread")
	tr := startTracer(t, "--pid", strconv.Itoa(srv.PID))
	hog(t, 1)
	return srv, tr, dial(t, srv.Addr)
}

func TestRunqueue(t *testing.T) {
	needRoot(t)
	srv, tr, c := contendedServer(t)
	for i := 0; i < 3; i++ {
		if _, err := request(c, "/cpu", 0); err != nil {
			t.Fatal(err)
		}
	}
	truths := srv.Truths(t, 3)
	recs := byPeer(t, tr.Stop(t), c, 3)
	for i, r := range recs {
		if truths[i].RunDelayNs < int64(30*time.Millisecond) {
			t.Fatalf("run-queue wait not provoked: %s", time.Duration(truths[i].RunDelayNs))
		}
		within(t, fmt.Sprintf("request %d runqueue", i), phase(t, r, "runqueue"), truths[i].RunDelayNs)
		// app: from the read's return to the last write's return, as the
		// server timed it.
		within(t, fmt.Sprintf("request %d app", i), phase(t, r, "app"), truths[i].WriteEndNano-truths[i].ReadUnixNano)
		if v := phase(t, r, "cfs_throttle"); v != 0 {
			t.Errorf("request %d: cfs_throttle = %s without a quota", i, time.Duration(v))
		}
	}
}

// cpuCgroup is a cgroup with a CFS quota, v1 or v2 (newCPUCgroup with
// quotaUs 0: none yet).
type cpuCgroup struct {
	dir          string
	throttledKey string // cpu.stat key of throttled time
	scale        int64  // to ns
	v2           bool
}

func newCPUCgroup(t *testing.T, v2 bool, quotaUs, periodUs int) *cpuCgroup {
	t.Helper()
	name := fmt.Sprintf("tracerd-e2e-%d", os.Getpid())
	var cg *cpuCgroup
	if v2 {
		root := "/sys/fs/cgroup"
		if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil {
			root = "/sys/fs/cgroup/unified"
		}
		ctrl, _ := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		if !strings.Contains(" "+string(ctrl)+" ", " cpu ") && !strings.Contains(string(ctrl), "cpu\n") && !strings.Contains(string(ctrl), "cpu ") {
			t.Skipf("cgroup v2 at %s has no cpu controller (controllers: %q): this machine mounts cpu on cgroup v1", root, strings.TrimSpace(string(ctrl)))
		}
		_ = os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+cpu"), 0)
		cg = &cpuCgroup{dir: filepath.Join(root, name), throttledKey: "throttled_usec", scale: 1000, v2: true}
		mkCgroup(t, cg.dir)
	} else {
		root := "/sys/fs/cgroup/cpu"
		if _, err := os.Stat(filepath.Join(root, "cpu.cfs_quota_us")); err != nil {
			t.Skipf("no cgroup v1 cpu controller at %s", root)
		}
		cg = &cpuCgroup{dir: filepath.Join(root, name), throttledKey: "throttled_time", scale: 1}
		mkCgroup(t, cg.dir)
	}
	if quotaUs > 0 {
		cg.setQuota(t, quotaUs, periodUs)
	}
	return cg
}

// setQuota sets the cgroup's CFS quota.
func (cg *cpuCgroup) setQuota(t *testing.T, quotaUs, periodUs int) {
	t.Helper()
	if cg.v2 {
		write(t, filepath.Join(cg.dir, "cpu.max"), fmt.Sprintf("%d %d", quotaUs, periodUs))
		return
	}
	write(t, filepath.Join(cg.dir, "cpu.cfs_period_us"), strconv.Itoa(periodUs))
	write(t, filepath.Join(cg.dir, "cpu.cfs_quota_us"), strconv.Itoa(quotaUs))
}

func mkCgroup(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	// Registered before the server's cleanup, so it runs after the
	// server is gone and the cgroup is empty.
	t.Cleanup(func() {
		err := waitFor(time.Second, func() error {
			if err := syscall.Rmdir(dir); err != nil && !os.IsNotExist(err) {
				return err
			}
			return nil
		})
		if err != nil {
			t.Logf("could not remove %s: %v", dir, err)
		}
	})
}

func write(t *testing.T, path, v string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(v), 0); err != nil {
		t.Fatalf("writing %q to %s: %v", v, path, err)
	}
}

func (cg *cpuCgroup) add(t *testing.T, pid int) {
	write(t, filepath.Join(cg.dir, "cgroup.procs"), strconv.Itoa(pid))
}

// throttled is the cgroup's total throttled time in ns.
func (cg *cpuCgroup) throttled(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cg.dir, "cpu.stat"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, cg.throttledKey+" "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n * cg.scale
		}
	}
	t.Fatalf("no %s in cpu.stat", cg.throttledKey)
	return 0
}

// throttledServer runs a traced server that burns 80 ms of CPU per
// request in a cgroup whose quota is 20 % of one CPU, on one CPU (one
// run queue throttles: cpu.stat is the serving thread's truth).
func throttledServer(t *testing.T, v2 bool) (*cpuCgroup, *Tracer, net.Conn) {
	t.Helper()
	cg := newCPUCgroup(t, v2, 20000, 100000)
	srv := startServer(t, []string{"taskset", "-c", "1"}, "-work", "80ms", "-lock-thread")
	cg.add(t, srv.PID)
	tr := startTracer(t, "--cgroup", cg.dir)
	return cg, tr, dial(t, srv.Addr)
}

// throttledRequests sends n requests on c and returns the time cpu.stat
// counted throttled during each.
func throttledRequests(t *testing.T, cg *cpuCgroup, c net.Conn, n int) []int64 {
	t.Helper()
	var truth []int64
	for i := 0; i < n; i++ {
		before := cg.throttled(t)
		if _, err := request(c, "/throttled", 0); err != nil {
			t.Fatal(err)
		}
		truth = append(truth, cg.throttled(t)-before)
	}
	return truth
}

// eachCgroupVersion runs fn as a subtest for cgroup v1 and v2.
func eachCgroupVersion(t *testing.T, fn func(t *testing.T, v2 bool)) {
	for _, v2 := range []bool{false, true} {
		name := "cgroup-v1"
		if v2 {
			name = "cgroup-v2"
		}
		t.Run(name, func(t *testing.T) { fn(t, v2) })
	}
}

func TestCFSThrottle(t *testing.T) {
	needRoot(t)
	eachCgroupVersion(t, func(t *testing.T, v2 bool) {
		cg, tr, c := throttledServer(t, v2)
		truth := throttledRequests(t, cg, c, 3)
		recs := byPeer(t, tr.Stop(t), c, 3)
		for i, r := range recs {
			if truth[i] < int64(50*time.Millisecond) {
				t.Fatalf("CFS throttling not provoked: %s", time.Duration(truth[i]))
			}
			within(t, fmt.Sprintf("request %d cfs_throttle", i), phase(t, r, "cfs_throttle"), truth[i])
		}
	})
}

// TestCFSThrottleQuotaSetLater: on a host where no cgroup sets a CPU
// quota, tracerd starts without its scheduler hooks (they fire for every
// context switch of the host and time only throttling). A quota put on
// the traced server's cgroup afterwards is noticed by the kernel side at
// the server's next request, the hooks attach, and the requests after
// that have the cfs_throttle cpu.stat counted.
func TestCFSThrottleQuotaSetLater(t *testing.T) {
	needRoot(t)
	eachCgroupVersion(t, func(t *testing.T, v2 bool) {
		// Made first, so that it is removed after the server is gone.
		cg := newCPUCgroup(t, v2, 0, 0)
		srv := startServer(t, []string{"taskset", "-c", "1"}, "-work", "80ms", "-lock-thread")
		cg.add(t, srv.PID)
		tr := startTracer(t, "--pid", strconv.Itoa(srv.PID))
		if !strings.Contains(tr.stderr.String(), "scheduler hooks wait for a CPU quota") {
			tr.Stop(t)
			t.Skipf("tracerd attached its scheduler hooks at start (a cgroup of this host sets a CPU quota): nothing to test here")
		}
		cg.setQuota(t, 20000, 100000)
		c := dial(t, srv.Addr)
		// The first request's read lets the kernel see the quota.
		if _, err := request(c, "/throttled", 0); err != nil {
			t.Fatal(err)
		}
		if err := waitFor(3*time.Second, func() error {
			if !strings.Contains(tr.stderr.String(), "why=\"a traced thread runs under a CPU quota\"") {
				return errors.New("no scheduler hook attached")
			}
			return nil
		}); err != nil {
			tr.Stop(t)
			t.Fatalf("%v within 3s of a request under a quota", err)
		}
		truth := throttledRequests(t, cg, c, 3)
		recs := byPeer(t, tr.Stop(t), c, 4)[1:]
		for i, r := range recs {
			if truth[i] < int64(50*time.Millisecond) {
				t.Fatalf("CFS throttling not provoked: %s", time.Duration(truth[i]))
			}
			within(t, fmt.Sprintf("request %d cfs_throttle", i+1), phase(t, r, "cfs_throttle"), truth[i])
		}
	})
}

func TestSendQueueZeroWindow(t *testing.T) {
	needRoot(t)
	// A 1 MiB answer fits the server's send buffer at once; the client's
	// tiny receive buffer fills and it stops reading: zero window, and the
	// last byte waits in the send queue.
	srv, tr, c, ex := slowReader(t)
	truths := srv.Truths(t, 1)
	r := byPeer(t, tr.Stop(t), c, 1)[0]
	truth := ex.LastByte.UnixNano() - truths[0].WriteEndNano
	if truth < int64(200*time.Millisecond) {
		t.Fatalf("send-queue wait not provoked: %s (the write returned only when the answer was nearly out)", time.Duration(truth))
	}
	within(t, "send_queue", phase(t, r, "send_queue"), truth)
	if r.TCP == nil || r.TCP.ZeroWindow == 0 {
		t.Errorf("no zero-window event recorded: %+v", r.TCP)
	}
}

// slowReader has a client with a tiny receive buffer ask a traced
// server for 1 MiB and stop reading for 400 ms after the first bytes.
func slowReader(t *testing.T) (*Server, *Tracer, net.Conn, Exchange) {
	t.Helper()
	srv := startServer(t, nil, "-resp-size", strconv.Itoa(1<<20), "-sndbuf", strconv.Itoa(8<<20))
	tr := startTracer(t, "--pid", strconv.Itoa(srv.PID))
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	c, err := d.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ex, err := request(c, "/big", 400*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return srv, tr, c, ex
}

// lossyRequest has a traced server answer 1 MiB while nftables drops
// every fourth data segment it sends, then a clean request on the same
// connection (which makes the server read the first one's final count);
// truth is tcpi_total_retrans's growth over the first.
func lossyRequest(t *testing.T) (tr *Tracer, c net.Conn, truth uint32) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (nftables)")
	}
	srv := startServer(t, nil, "-resp-size", strconv.Itoa(1<<20))
	tr = startTracer(t, "--port", strconv.Itoa(srv.Port))
	c = dial(t, srv.Addr)

	table := fmt.Sprintf("tracerd_e2e_%d", os.Getpid())
	nft := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("nft", args...).CombinedOutput(); err != nil {
			t.Fatalf("nft %v: %v: %s", args, err, out)
		}
	}
	nft("add", "table", "inet", table)
	t.Cleanup(func() { _ = exec.Command("nft", "delete", "table", "inet", table).Run() })
	// Drop on input, past the sender: a drop on output is a local
	// transmit error that TCP resends without counting a retransmission.
	nft("add", "chain", "inet", table, "in", "{ type filter hook input priority 0; }")
	// Drop every fourth data segment the server sends on this port.
	nft("add", "rule", "inet", table, "in", "tcp", "sport", strconv.Itoa(srv.Port),
		"meta", "length", "gt", "1000", "numgen", "inc", "mod", "4", "==", "0", "counter", "drop")
	if _, err := request(c, "/lossy", 0); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nft", "list", "table", "inet", table).CombinedOutput(); err == nil {
		t.Logf("nft rules after the lossy request:\n%s", out)
	}
	nft("delete", "table", "inet", table)
	if _, err := request(c, "/clean", 0); err != nil {
		t.Fatal(err)
	}
	truths := srv.Truths(t, 2)
	truth = truths[1].RetransAtRead - truths[0].RetransAtRead
	if truth == 0 {
		t.Fatal("no retransmission provoked")
	}
	return tr, c, truth
}

func TestRetransmits(t *testing.T) {
	needRoot(t)
	tr, c, truth := lossyRequest(t)
	recs := byPeer(t, tr.Stop(t), c, 2)
	if got := recs[0].TCP.Retransmits; got != truth {
		t.Errorf("retransmits: tracerd %d, kernel's tcpi_total_retrans %d", got, truth)
	} else {
		t.Logf("retransmits: tracerd %d, kernel %d", got, truth)
	}
	if got := recs[1].TCP.Retransmits; got != 0 {
		t.Errorf("clean request: %d retransmits", got)
	}
}

// smallAnswers has a traced server answer n requests in two small
// writes each, with Nagle on or off: with Nagle on, the second waits for
// the ACK of the first, which the client delays. gaps are the client's
// times between the first and the last byte of each answer.
func smallAnswers(t *testing.T, nagle bool, n int) (*Tracer, net.Conn, []int64) {
	t.Helper()
	srv := startServer(t, nil, "-chunks", "2", "-resp-size", "200", fmt.Sprintf("-nodelay=%v", !nagle))
	tr := startTracer(t, "--pid", strconv.Itoa(srv.PID))
	c := dial(t, srv.Addr)
	var gaps []int64
	for i := 0; i < n; i++ {
		ex, err := request(c, "/small", 0)
		if err != nil {
			t.Fatal(err)
		}
		gaps = append(gaps, ex.LastByte.Sub(ex.FirstByte).Nanoseconds())
		time.Sleep(5 * time.Millisecond)
	}
	return tr, c, gaps
}

func TestNagle(t *testing.T) {
	needRoot(t)
	for _, nagle := range []bool{true, false} {
		t.Run(fmt.Sprintf("nagle=%v", nagle), func(t *testing.T) {
			const n = 12
			tr, c, gaps := smallAnswers(t, nagle, n)
			recs := byPeer(t, tr.Stop(t), c, n)
			delayed, misses := 0, 0
			for i, r := range recs {
				if r.TCP == nil || r.TCP.Nagle != nagle {
					t.Errorf("request %d: tcp.nagle = %+v, want %v", i, r.TCP, nagle)
				}
				if gaps[i] >= int64(20*time.Millisecond) {
					delayed++
				}
				// The client's gap is a noisy truth both ways: a late
				// wake-up for the first chunk shortens it, for the last
				// lengthens it. At most 2 of the 12 may miss the tolerance.
				got := phase(t, r, "send_queue")
				tol := max(gaps[i]/20, int64(time.Millisecond))
				if d := got - gaps[i]; d > tol || d < -tol {
					misses++
					t.Logf("request %d send_queue: tracerd %s, client's gap %s (off by more than %s)", i, time.Duration(got), time.Duration(gaps[i]), time.Duration(tol))
				} else {
					t.Logf("request %d send_queue: tracerd %s, client's gap %s", i, time.Duration(got), time.Duration(gaps[i]))
				}
			}
			if misses > 2 {
				t.Errorf("send_queue off the client's gap in %d of %d requests", misses, n)
			}
			if nagle && delayed == 0 {
				t.Errorf("Nagle + delayed ACK never held an answer back: gaps %v", gaps)
			}
			if !nagle && delayed > 0 {
				t.Errorf("answers held back with TCP_NODELAY: gaps %v", gaps)
			}
		})
	}
}
