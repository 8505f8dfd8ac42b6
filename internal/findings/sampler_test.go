package findings

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tracerd/tracerd/internal/correlate"
)

// fakeHost is a /proc and a cgroup tree in a directory.
type fakeHost struct {
	t          *testing.T
	proc, cgv1 string
}

func (h fakeHost) write(path, data string) {
	h.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h fakeHost) link(path, target string) {
	h.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		h.t.Fatal(err)
	}
	_ = os.Remove(path)
	if err := os.Symlink(target, path); err != nil {
		h.t.Fatal(err)
	}
}

func netstat(overflows, drops int) string {
	return fmt.Sprintf("TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops TCPTimeouts\nTcpExt: 1 0 %d %d 4\n"+
		"IpExt: InNoRoutes\nIpExt: 0\n", overflows, drops)
}

func snmp(retrans int) string {
	return fmt.Sprintf("Ip: Forwarding DefaultTTL\nIp: 2 64\nTcp: RtoAlgorithm RtoMin RetransSegs InErrs\nTcp: 1 200 %d 0\n", retrans)
}

// procStat is a /proc/PID/stat line with these utime and stime; the
// command holds a space and a parenthesis.
func procStat(utime, stime int) string {
	return fmt.Sprintf("42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 %d %d 0 0 20 0 3 0 100 1000 100\n", utime, stime)
}

func newFakeHost(t *testing.T) fakeHost {
	dir := t.TempDir()
	h := fakeHost{t: t, proc: filepath.Join(dir, "proc"), cgv1: filepath.Join(dir, "cgroup", "cpu")}
	h.write(filepath.Join(h.proc, "self", "mountinfo"), "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"+
		"32 31 0:29 / "+h.cgv1+" rw,relatime - cgroup cgroup rw,cpu\n"+
		"34 31 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
	h.link(filepath.Join(h.proc, "self", "ns", "net"), "net:[4026531840]")
	h.write(filepath.Join(h.proc, "sys", "net", "core", "somaxconn"), "4096\n")
	h.write(filepath.Join(h.proc, "stat"), "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3\n")
	h.write(filepath.Join(h.proc, "pressure", "cpu"), "some avg10=12.50 avg60=3.00 avg300=1.00 total=5\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
	h.write(filepath.Join(h.proc, "net", "softnet_stat"), "00000010 00000001 00000002 0\n00000010 00000000 00000003 0\n")
	// Process 42: in a cgroup below one with a quota; another namespace.
	h.write(filepath.Join(h.proc, "42", "cgroup"), "9:name=systemd:/\n1:cpu:/svc/leaf\n0::/\n")
	h.write(filepath.Join(h.proc, "42", "environ"), "PATH=/bin\x00GOGC=50\x00GOMAXPROCS=4\x00")
	h.write(filepath.Join(h.proc, "42", "status"), "Name:\tapi\nCpus_allowed_list:\t0-1,3\n")
	h.link(filepath.Join(h.proc, "42", "ns", "net"), "net:[4026532000]")
	h.write(filepath.Join(h.proc, "42", "stat"), procStat(100, 50))
	h.write(filepath.Join(h.proc, "42", "net", "netstat"), netstat(10, 12))
	h.write(filepath.Join(h.proc, "42", "net", "snmp"), snmp(100))
	h.write(filepath.Join(h.proc, "42", "net", "tcp"), "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"+
		"   0: 00000000:1F90 00000000:0000 0A 00000000:00000005 00:00000000 00000000     0        0 1082 1 0 100 0 0 10 0\n"+
		"   1: 0100007F:1F90 0100007F:46A0 01 00000000:00000009 03:000011A2 00000000     0        0 0 3 0\n")
	h.write(filepath.Join(h.cgv1, "svc", "cpu.cfs_quota_us"), "50000\n")
	h.write(filepath.Join(h.cgv1, "svc", "cpu.cfs_period_us"), "100000\n")
	h.write(filepath.Join(h.cgv1, "svc", "cpu.stat"), "nr_periods 100\nnr_throttled 10\nthrottled_time 1000000000\n")
	h.write(filepath.Join(h.cgv1, "svc", "leaf", "cpu.cfs_quota_us"), "-1\n")
	h.write(filepath.Join(h.cgv1, "svc", "leaf", "cpu.cfs_period_us"), "100000\n")
	return h
}

// TestSampler: two samples a second apart give the processes' context
// and the counters' rates.
func TestSampler(t *testing.T) {
	h := newFakeHost(t)
	s := newSampler(h.proc)
	s.WatchListener(42, 8080)
	s.WatchProc(77) // no such process: dropped
	s.Sample()
	first := s.Load()
	p := first.Procs[42]
	if p == nil || p.Quota == nil {
		t.Fatalf("first sample: %+v", first.Procs)
	}
	if q := p.Quota; q.Dir != filepath.Join(h.cgv1, "svc") || q.QuotaUs != 50000 || q.PeriodUs != 100000 || q.HasRates {
		t.Errorf("quota: %+v", q)
	}
	if p.HasCPU {
		t.Errorf("CPU use from one sample: %+v", p)
	}
	if p.NetNS != 4026532000 || p.CPUsAllowed != 3 || p.Env.GOGC != "50" || p.Env.GOMAXPROCS != "4" || p.Env.GOMEMLIMIT != "" {
		t.Errorf("process: %+v", p)
	}
	if li := first.Listeners[ListenerKey{42, 8080}]; li.Queue != 5 || li.Limit != 0 {
		t.Errorf("listener (other namespace, from /proc): %+v", first.Listeners)
	}
	if first.Somaxconn != 4096 || first.OwnNetNS != 4026531840 || !first.HasPSI || first.PSISomeAvg10 != 12.5 || first.Net[4026532000] != nil {
		t.Errorf("first sample: %+v", first)
	}
	if s.pids[77] {
		t.Error("a process that does not exist is still watched")
	}

	// A second later: counters moved.
	s.prevAt = first.At.Add(-time.Second) // as if the first was a second ago
	h.write(filepath.Join(h.proc, "stat"), "cpu  250 0 150 900 0 0 0 0 0 0\n")
	h.write(filepath.Join(h.proc, "net", "softnet_stat"), "00000010 00000003 00000007 0\n00000010 00000000 00000003 0\n")
	h.write(filepath.Join(h.proc, "42", "net", "netstat"), netstat(13, 16))
	h.write(filepath.Join(h.proc, "42", "net", "snmp"), snmp(107))
	h.write(filepath.Join(h.cgv1, "svc", "cpu.stat"), "nr_periods 110\nnr_throttled 18\nthrottled_time 1400000000\n")
	h.write(filepath.Join(h.proc, "42", "stat"), procStat(160, 70))
	s.Sample()
	snap := s.Load()
	within := func(what string, got, want int64) {
		t.Helper()
		if got < want*9/10 || got > want*11/10 {
			t.Errorf("%s: %d per second, want ≈ %d", what, got, want)
		}
	}
	q := snap.Procs[42].Quota
	if !q.HasRates {
		t.Fatalf("no rates: %+v", q)
	}
	within("throttled ns", q.ThrottledNsPerS, 400_000_000)
	within("throttled periods", q.NrThrottledPerS, 8)
	within("periods", q.NrPeriodsPerS, 10)
	n := snap.Net[4026532000]
	if n == nil {
		t.Fatal("no namespace rates")
	}
	within("listen overflows", n.ListenOverflows, 3)
	within("listen drops", n.ListenDrops, 4)
	within("retransmitted segments", n.RetransSegs, 7)
	if n.SyncookiesSent != 0 || n.Timeouts != 0 {
		t.Errorf("unchanged counters: %+v", n)
	}
	// 200 of 300 jiffies busy.
	if !snap.HasCPU || snap.CPUBusyPct < 66 || snap.CPUBusyPct > 67 {
		t.Errorf("host busy %v", snap.CPUBusyPct)
	}
	within("softnet drops", snap.SoftnetDrops, 2)
	// 80 ticks of 100 a second: 80 % of a CPU, of 3 allowed, under a
	// quota of half a CPU, GOMAXPROCS 4: 160 % of what it may use.
	if p := snap.Procs[42]; !p.HasCPU || p.CPUPct < 72 || p.CPUPct > 88 {
		t.Errorf("process CPU %+v", p)
	} else if share, _ := p.CPUShare(); share < 1.44 || share > 1.76 {
		t.Errorf("share %v", share)
	}
	within("softnet squeezes", snap.SoftnetSqueez, 5)

	// The process exits: no longer watched, its listener neither.
	if err := os.RemoveAll(filepath.Join(h.proc, "42")); err != nil {
		t.Fatal(err)
	}
	s.Sample()
	if len(s.Load().Procs) != 0 || len(s.pids) != 0 || len(s.listeners) != 0 {
		t.Errorf("after exit: %+v %v %v", s.Load().Procs, s.pids, s.listeners)
	}
	// Its files and its namespace's are closed; the host's stay open
	// for the next sample.
	for key := range s.files.fds {
		if strings.Contains(key, "/42/") || strings.Contains(key, "4026532000") {
			t.Errorf("still open after the process went: %s", key)
		}
	}
	if len(s.files.fds) != 4 {
		t.Errorf("open files: %v, want the host's 4", s.files.fds)
	}
	s.files.close()
	if len(s.files.fds) != 0 {
		t.Errorf("open after close: %v", s.files.fds)
	}
}

// TestAcceptBacklogEvidence: the listener's queue and the namespace's
// overflow counters go with an accept-queue finding.
func TestAcceptBacklogEvidence(t *testing.T) {
	s := newSampler(t.TempDir())
	a := New(DefaultConfig(), s)
	r := req(10*ms, map[correlate.Phase]int64{correlate.AcceptQueue: 8 * ms, correlate.App: ms})
	if fs := a.Analyze(r); codes(fs) != "accept_backlog" || len(fs[0].Evidence) != 1 {
		t.Fatalf("before a sample: %+v", fs)
	}
	if !s.listeners[ListenerKey{42, 8080}] {
		t.Fatal("listener not watched")
	}
	s.snap.Store(&Snapshot{At: time.Unix(0, r.EndUnixNano), OwnNetNS: 1, Somaxconn: 4096,
		Procs:     map[uint32]*Proc{42: {NetNS: 1}},
		Net:       map[uint64]*NetRates{1: {ListenOverflows: 3, ListenDrops: 3, SyncookiesSent: 0}},
		Listeners: map[ListenerKey]ListenerInfo{{42, 8080}: {Queue: 7, Limit: 8}}})
	fs := a.Analyze(r)
	var got []string
	for _, e := range fs[0].Evidence {
		got = append(got, e.Key+"="+evString(e))
	}
	want := "accept_queue_ns=8000000 listener_queue=7 listener_backlog_limit=8 somaxconn=4096 listen_overflows_per_s=3 listen_drops_per_s=3 syncookies_sent_per_s=0 context_age_ms=0"
	if strings.Join(got, " ") != want {
		t.Errorf("evidence\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if c := Confirm(r, &fs[0]); !strings.Contains(c, "ss -lnt 'sport = :8080'") || !strings.Contains(c, "TcpExtListenOverflows") {
		t.Errorf("confirm: %s", c)
	}
}

// TestTableAndRecent: rows sum per service, route and code, most time
// lost first; Recent forgets what is older than its window.
func TestTableAndRecent(t *testing.T) {
	mk := func(service, target string, code correlate.FindingCode, lost int64) *correlate.Request {
		return &correlate.Request{Service: service, HTTP: &correlate.HTTP{Method: "GET", Target: target},
			Conn:     correlate.Conn{Local: netip.MustParseAddrPort("127.0.0.1:8080")},
			Findings: []correlate.Finding{{Code: code, Phase: correlate.App, LostNs: lost}}}
	}
	var tb Table
	tb.Add(mk("a", "/x", correlate.SlowHandler, 5))
	tb.Add(mk("a", "/x", correlate.SlowHandler, 5))
	tb.Add(mk("a", "/y", correlate.SlowHandler, 20))
	tb.Add(mk("b", "/x", correlate.GCPause, 7))
	tb.Add(&correlate.Request{Service: "a"}) // no findings
	rows := tb.Rows()
	if len(rows) != 3 || rows[0].Route != "GET /y" || rows[0].LostNs != 20 || rows[1].Service != "a" || rows[1].Count != 2 || rows[1].LostNs != 10 || rows[2].Code != correlate.GCPause {
		t.Errorf("rows: %+v", rows)
	}
	if !strings.Contains(rows[0].Confirm, "perf top -p 0") {
		t.Errorf("confirm: %q", rows[0].Confirm)
	}
	// The first finding of a row may lack the host's context; the first
	// one with it gives the row its command.
	cfs := func(ev ...correlate.Evidence) *correlate.Request {
		r := mk("c", "/t", correlate.CFSThrottled, 1)
		r.Findings[0].Evidence = ev
		return r
	}
	var tc Table
	tc.Add(cfs())
	tc.Add(cfs(correlate.TextEvidence("cgroup", "/cg/a"), correlate.IntEvidence("context_age_ms", 3)))
	tc.Add(cfs(correlate.TextEvidence("cgroup", "/cg/b"), correlate.IntEvidence("context_age_ms", 3)))
	if c := tc.Rows()[0].Confirm; !strings.Contains(c, "/cg/a/cpu.stat") {
		t.Errorf("confirm %q, want the first with context", c)
	}

	var rc Recent
	now := time.Unix(1_800_000_000, 0)
	rc.addAt(mk("a", "/old", correlate.GCPause, 100), now.Add(-6*time.Minute))
	rc.addAt(mk("a", "/x", correlate.GCPause, 3), now.Add(-4*time.Minute))
	rc.addAt(mk("a", "/x", correlate.GCPause, 4), now)
	rc.addAt(mk("a", "/z", correlate.SlowHandler, 1), now)
	top := rc.topAt(1, now)
	if len(top) != 1 || top[0].Route != "GET /x" || top[0].Count != 2 || top[0].LostNs != 7 {
		t.Errorf("top: %+v", top)
	}
	if all := rc.topAt(10, now); len(all) != 2 {
		t.Errorf("window: %+v", all)
	}
}

// TestParsers: the files as real kernels write them.
func TestParsers(t *testing.T) {
	if v2, v1 := cgroupPaths([]byte("12:cpu,cpuacct:/system.slice/a.service\n0::/system.slice/a.service\n")); v2 != "/system.slice/a.service" || v1 != "/system.slice/a.service" {
		t.Errorf("cgroup paths %q %q", v2, v1)
	}
	if v2, v1 := cgroupPaths([]byte("0::/kubepods/pod1/c\n")); v2 != "/kubepods/pod1/c" || v1 != "" {
		t.Errorf("v2 only: %q %q", v2, v1)
	}
	if q, p, ok := cpuMax([]byte("max 100000\n")); ok {
		t.Errorf("no quota read as %d/%d", q, p)
	}
	if q, p, ok := cpuMax([]byte("20000 100000\n")); !ok || q != 20000 || p != 100000 {
		t.Errorf("cpu.max %d %d %v", q, p, ok)
	}
	if per, thr, ns, ok := cpuStat([]byte("usage_usec 5\nuser_usec 3\nsystem_usec 2\nnr_periods 7\nnr_throttled 3\nthrottled_usec 1500\nnr_bursts 0\n")); !ok || per != 7 || thr != 3 || ns != 1_500_000 {
		t.Errorf("v2 cpu.stat %d %d %d", per, thr, ns)
	}
	if e := readGoEnv([]byte("SECRET=x\x00GOGC=" + strings.Repeat("9", 33) + "\x00GOMEMLIMIT=1GiB\x00")); e != (goEnv{GOMEMLIMIT: "1GiB"}) {
		t.Errorf("env %+v", e)
	}
	if n := cpusAllowed([]byte("Cpus_allowed:\t3\nCpus_allowed_list:\t0-1\n")); n != 2 {
		t.Errorf("cpus %d", n)
	}
	real := "TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops\nTcpExt: 3 0 17 19\nIpExt: InNoRoutes\nIpExt: 0\n"
	m := map[string]int64{"TcpExtListenOverflows": -1, "TcpExtSyncookiesSent": -1, "TcpExtNope": -1}
	netCounters([]byte(real), m)
	if m["TcpExtListenOverflows"] != 17 || m["TcpExtSyncookiesSent"] != 3 || m["TcpExtNope"] != -1 {
		t.Errorf("netstat %v", m)
	}
	if _, ok := listenQueue([]byte("  sl  local_address\n   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000\n"), 8081); ok {
		t.Error("found a listener on another port")
	}
}

// TestListenerQueues: inet_diag reads a real listener's queue and limit,
// as ss -lnt shows them (Recv-Q, Send-Q).
func TestListenerQueues(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 7); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(sa.(*unix.SockaddrInet4).Port)
	// Two connections nobody accepts.
	for range 2 {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	st, err := listenerQueues(map[uint16]bool{port: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := st[port]; got.Queue != 2 || got.Limit != 7 || len(st) != 1 {
		t.Errorf("listener: %+v (all: %v), want queue 2, limit 7", got, st)
	}
}
