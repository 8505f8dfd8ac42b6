package portpressure

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/loader"
)

func TestParseHexAddrPort(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"0A00000A:9C40":                         "10.0.0.10:40000",
		"00000000000000000000000001000000:0050": "[::1]:80",
		"0000000000000000FFFF00000100007F:1F90": "127.0.0.1:8080", // v4-mapped: unmapped
	} {
		got, ok := parseHexAddrPort([]byte(in))
		if !ok || got.String() != want {
			t.Errorf("%s: got %v %v, want %s", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "0100007F", "0100007F:XYZW", "01007F:1F90", "0100007G:1F90"} {
		if _, ok := parseHexAddrPort([]byte(bad)); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	lo, hi, err := parsePortRange([]byte("40000\t40009\n"))
	if err != nil || lo != 40000 || hi != 40009 {
		t.Fatalf("got %d %d %v", lo, hi, err)
	}
	for _, bad := range []string{"", "1", "5 4", "0 10", "1 70000", "a b"} {
		if _, _, err := parsePortRange([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

const tcpHeader = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

// line makes a /proc/net/tcp line.
func line(local, remote, st string) string {
	return "   0: " + local + " " + remote + " " + st + " 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000\n"
}

func TestSampleCountsPerDestination(t *testing.T) {
	proc := t.TempDir()
	pid := filepath.Join(proc, "42")
	must(t, os.MkdirAll(filepath.Join(pid, "net"), 0o755))
	must(t, os.MkdirAll(filepath.Join(pid, "ns"), 0o755))
	must(t, os.Symlink("net:[4026532000]", filepath.Join(pid, "ns", "net")))
	must(t, os.WriteFile(filepath.Join(pid, "comm"), []byte("client\n"), 0o644))
	srv := "0100007F:1F90" // 127.0.0.1:8080
	tcp := tcpHeader +
		line("0100007F:1F90", "00000000:0000", "0A") + // listener on 8080
		line("0100007F:9C40", srv, "06") + // 40000 -> 8080 TIME_WAIT
		line("0100007F:9C41", srv, "06") +
		line("0100007F:9C42", srv, "01") + // ESTABLISHED
		line("0100007F:1F90", "0100007F:9C42", "01") + // accepted: local port is the listener's
		line("0100007F:1F90", "0100007F:9C30", "06") + // server-side TIME_WAIT: counted in the total only
		line("0100007F:7530", srv, "06") + // local port 30000: out of range
		line("0100007F:9C43", "0200007F:0050", "02") // 127.0.0.2:80 SYN_SENT
	must(t, os.WriteFile(filepath.Join(pid, "net", "tcp"), []byte(tcp), 0o644))
	must(t, os.WriteFile(filepath.Join(pid, "net", "tcp6"), []byte(tcpHeader), 0o644))

	dst := netip.MustParseAddrPort("127.0.0.1:8080")
	s := New(Sources{
		PIDs: func() ([]uint32, error) { return []uint32{42, 99}, nil }, // 99 is gone
		Failures: func() ([]loader.ConnectFail, uint64, error) {
			return []loader.ConnectFail{{PID: 42, NetNS: 4026532000, Dest: dst, Count: 7},
				{PID: 42, NetNS: 4026532000, Dest: netip.MustParseAddrPort("10.1.1.1:443"), Count: 2}}, 3, nil
		},
	})
	s.proc = proc
	s.sysctls = func(uint32) (netSysctls, error) { return netSysctls{lo: 40000, hi: 40009, twReuse: 0}, nil }
	s.Sample()
	r := s.Load()
	if r.FailuresUncounted != 3 || len(r.Namespaces) != 1 {
		t.Fatalf("report %+v", r)
	}
	n := r.Namespaces[0]
	if n.NetNS != 4026532000 || n.RangeSize != 10 || n.TimeWait != 4 || n.EphemeralInUse != 4 || n.TWReuse != 0 {
		t.Fatalf("namespace %+v", n)
	}
	if len(n.Processes) != 1 || n.Processes[0] != (Process{42, "client"}) {
		t.Errorf("processes %+v", n.Processes)
	}
	if len(n.Destinations) != 3 {
		t.Fatalf("destinations %+v", n.Destinations)
	}
	d := n.Destinations[0]
	if d.Address != dst || d.InUse != 3 || d.TimeWait != 2 || d.Established != 1 || d.Available != 7 || d.FailureCount() != 7 || d.Failures[0].Comm != "client" {
		t.Errorf("first destination %+v", d)
	}
	if d := n.Destinations[1]; d.Address.String() != "127.0.0.2:80" || d.InUse != 1 {
		t.Errorf("second destination %+v", d)
	}
	if d := n.Destinations[2]; d.Address.String() != "10.1.1.1:443" || d.InUse != 0 || d.FailureCount() != 2 || d.Available != 10 {
		t.Errorf("third destination %+v", d)
	}
}

func TestDestinationsBounded(t *testing.T) {
	proc := t.TempDir()
	pid := filepath.Join(proc, "7")
	must(t, os.MkdirAll(filepath.Join(pid, "net"), 0o755))
	must(t, os.MkdirAll(filepath.Join(pid, "ns"), 0o755))
	must(t, os.Symlink("net:[1]", filepath.Join(pid, "ns", "net")))
	var b strings.Builder
	b.WriteString(tcpHeader)
	for i := range 100 {
		// 100 destinations 10.0.0.i:80, from port 40000+i.
		b.WriteString(line("0100007F:"+hex4(40000+i), hex8(10, 0, 0, byte(i))+":0050", "01"))
	}
	must(t, os.WriteFile(filepath.Join(pid, "net", "tcp"), []byte(b.String()), 0o644))
	s := New(Sources{PIDs: func() ([]uint32, error) { return []uint32{7}, nil }})
	s.proc = proc
	s.sysctls = func(uint32) (netSysctls, error) { return netSysctls{lo: 32768, hi: 60999}, nil }
	s.Sample()
	n := s.Load().Namespaces[0]
	if len(n.Destinations) != maxDestinations || n.DestinationsOmitted != 100-maxDestinations || n.EphemeralInUse != 100 {
		t.Fatalf("%d destinations, %d omitted, %d in use", len(n.Destinations), n.DestinationsOmitted, n.EphemeralInUse)
	}
}

func hex4(v int) string { return fmtHex(v, 4) }

func hex8(a, b, c, d byte) string {
	return fmtHex(int(d), 2) + fmtHex(int(c), 2) + fmtHex(int(b), 2) + fmtHex(int(a), 2)
}

func fmtHex(v, width int) string {
	const digits = "0123456789ABCDEF"
	out := make([]byte, width)
	for i := width - 1; i >= 0; i-- {
		out[i] = digits[v&0xF]
		v >>= 4
	}
	return string(out)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestFindingWhileFailuresGrow(t *testing.T) {
	proc := t.TempDir()
	pid := filepath.Join(proc, "5")
	must(t, os.MkdirAll(filepath.Join(pid, "net"), 0o755))
	must(t, os.MkdirAll(filepath.Join(pid, "ns"), 0o755))
	must(t, os.Symlink("net:[9]", filepath.Join(pid, "ns", "net")))
	must(t, os.WriteFile(filepath.Join(pid, "net", "tcp"), []byte(tcpHeader+
		line("0100007F:9C40", "0100007F:1F90", "06")+line("0100007F:9C41", "0100007F:1F90", "01")), 0o644))
	dst := netip.MustParseAddrPort("127.0.0.1:8080")
	count := uint64(0)
	s := New(Sources{
		PIDs: func() ([]uint32, error) { return []uint32{5}, nil },
		Failures: func() ([]loader.ConnectFail, uint64, error) {
			if count == 0 {
				return nil, 0, nil
			}
			return []loader.ConnectFail{{PID: 5, NetNS: 9, Dest: dst, Count: count}}, 0, nil
		},
	})
	s.proc = proc
	s.sysctls = func(uint32) (netSysctls, error) { return netSysctls{lo: 40000, hi: 40001, twReuse: 1}, nil }
	t0 := time.Unix(1000, 0)
	now := t0
	s.clock = func() time.Time { return now }
	find := func() *Finding {
		t.Helper()
		ds := s.Load().Namespaces[0].Destinations
		if len(ds) != 1 || ds[0].Address != dst {
			t.Fatalf("destinations %+v", ds)
		}
		return ds[0].Finding
	}
	s.Sample()
	if f := find(); f != nil {
		t.Fatalf("no failure yet, finding %+v", f)
	}
	for i, c := range []uint64{3, 3, 5} { // grows at t0+1s and t0+3s
		now, count = t0.Add(time.Duration(i+1)*time.Second), c
		s.Sample()
	}
	f := find()
	if f == nil || f.Code != FindingCode || f.RecentFailures != 5 || !f.LastFailure.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("finding %+v", f)
	}
	if !strings.Contains(f.Confirm, "nsenter -t 5 -n ss -tan dst 127.0.0.1:8080") || !strings.Contains(f.Remedy, "TIME_WAIT") {
		t.Errorf("confirm %q, remedy %q", f.Confirm, f.Remedy)
	}
	// The first growth leaves the window: only the second's 2 remain.
	now = t0.Add(FindingWindow + 2*time.Second)
	s.Sample()
	if f := find(); f == nil || f.RecentFailures != 2 {
		t.Fatalf("finding %+v, want 2 recent failures", f)
	}
	now = t0.Add(FindingWindow + 4*time.Second)
	s.Sample()
	if f := find(); f != nil {
		t.Fatalf("no failure for the window, finding %+v", f)
	}
}

// BenchmarkScanSockets: the cost of reading a namespace's sockets, per
// 10,000 sockets.
func BenchmarkScanSockets(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(tcpHeader)
	for i := range 10000 {
		sb.WriteString(line("0100007F:"+fmtHex(40000+i%20000, 4), hex8(10, 0, byte(i>>8), byte(i))+":0050", "06"))
	}
	text := sb.String()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		n := 0
		if err := scanSockets(strings.NewReader(text), func(socket) { n++ }); err != nil || n != 10000 {
			b.Fatal(n, err)
		}
	}
}
