package main

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// console is a guest's console as /init prints it, one line a second.
func console(text string) *bootResult {
	res := &bootResult{}
	for i, l := range strings.Split(strings.TrimPrefix(text, "\n"), "\n") {
		res.lines = append(res.lines, logLine{time.Duration(i) * time.Second, l})
	}
	res.wall = time.Duration(len(res.lines)) * time.Second
	return res
}

func TestParseGuest(t *testing.T) {
	res := console(`
SeaBIOS (version 1.16.2-debian-1.16.2-1)
@@tracerd-kernels@@ boot 6.1.0-57-cloud-amd64 2 cpus
@@tracerd-kernels@@ warning insmod /lib/modules/x/veth.ko failed
@@tracerd-kernels@@ begin check
kernel      6.1.0-57-cloud-amd64 x86_64

tracing cannot work here: fix what is missing above
@@tracerd-kernels@@ end check 1
@@tracerd-kernels@@ begin loaded
=== RUN   TestAcceptQueue
    harness_test.go:111: tracerd snapshot exited before tracing: exit status 1
        tracerd: loading BPF programs: load program: permission denied:
        0: R1=ctx() R10=fp0
        1: (79) r6 = *(u64 *)(r1 +0)
        2: (79) r6 = *(u64 *)(r1 +0)
        3: (79) r6 = *(u64 *)(r1 +0)
        4: (79) r6 = *(u64 *)(r1 +0)
        5: (79) r6 = *(u64 *)(r1 +0)
        6: (79) r6 = *(u64 *)(r1 +0)
        7: (79) r6 = *(u64 *)(r1 +0)
        R2 unbounded memory access
--- FAIL: TestAcceptQueue (0.70s)
FAIL
@@tracerd-kernels@@ end loaded 1
@@tracerd-kernels@@ begin cfs
=== RUN   TestCFSThrottle
=== RUN   TestCFSThrottle/cgroup-v1
    phases_test.go:160: no cgroup v1 cpu controller at /sys/fs/cgroup/cpu
=== RUN   TestCFSThrottle/cgroup-v2
    phases_test.go:230: request 0 cfs_throttle: tracerd measured 1s, truth 1s (off by 0s)
--- PASS: TestCFSThrottle (2.00s)
    --- SKIP: TestCFSThrottle/cgroup-v1 (0.00s)
    --- PASS: TestCFSThrottle/cgroup-v2 (2.00s)
PASS
@@tracerd-kernels@@ end cfs 0
@@tracerd-kernels@@ begin errors
=== RUN   TestNagle
    phases_test.go:300: set-up log of the parent
=== RUN   TestNagle/nagle=true
    phases_test.go:330: request 0 send_queue: a log
    phases_test.go:350: send_queue off the client's gap in 5 of 12 requests
=== RUN   TestNagle/nagle=false
    phases_test.go:330: request 0 send_queue: a log
--- FAIL: TestNagle (1.00s)
    --- FAIL: TestNagle/nagle=true (0.50s)
    --- PASS: TestNagle/nagle=false (0.50s)
FAIL
@@tracerd-kernels@@ end errors 1
@@tracerd-kernels@@ begin skipped
=== RUN   TestRetransmits
    phases_test.go:291: needs nft (nftables)
--- SKIP: TestRetransmits (0.00s)
PASS
@@tracerd-kernels@@ end skipped 0
@@tracerd-kernels@@ begin none
testing: warning: no tests to run
PASS
@@tracerd-kernels@@ end none 0
@@tracerd-kernels@@ begin timeout
=== RUN   TestRunqueue
panic: test timed out after 5m0s
	running tests:
		TestRunqueue (5m0s)
@@tracerd-kernels@@ end timeout 2
@@tracerd-kernels@@ begin hung
=== RUN   TestGoAwareness
[  300.1] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [tracerd:123]`)
	res.ended = `killed by the harness: no progress after "begin hung"`
	names := []string{"loaded", "cfs", "errors", "skipped", "none", "timeout", "hung", "never"}
	var sc []scenario
	for _, n := range names {
		sc = append(sc, scenario{Name: n, Run: "^" + n + "$"})
	}
	g := parseGuest(res, sc)

	if g.boot != time.Second {
		t.Errorf("boot = %s, want the time of the boot marker", g.boot)
	}
	if want := []string{"insmod /lib/modules/x/veth.ko failed"}; !reflect.DeepEqual(g.warnings, want) {
		t.Errorf("warnings = %q", g.warnings)
	}
	if g.check.status != fail || g.check.rc != 1 || len(g.check.output) != 3 ||
		g.check.why[0] != "tracing cannot work here: fix what is missing above" {
		t.Errorf("check = %+v", g.check)
	}
	want := map[string]struct {
		status string
		why    []string
		notes  []string
	}{
		"loaded": {fail, []string{
			"TestAcceptQueue: harness_test.go:111: tracerd snapshot exited before tracing: exit status 1",
			"    tracerd: loading BPF programs: load program: permission denied:",
			"    … (3 lines)",
			"    3: (79) r6 = *(u64 *)(r1 +0)", "    4: (79) r6 = *(u64 *)(r1 +0)", "    5: (79) r6 = *(u64 *)(r1 +0)",
			"    6: (79) r6 = *(u64 *)(r1 +0)", "    7: (79) r6 = *(u64 *)(r1 +0)", "    R2 unbounded memory access",
		}, nil},
		"cfs": {pass, nil, []string{"TestCFSThrottle/cgroup-v1: phases_test.go:160: no cgroup v1 cpu controller at /sys/fs/cgroup/cpu"}},
		"errors": {fail, []string{
			"TestNagle/nagle=true: phases_test.go:330: request 0 send_queue: a log",
			"TestNagle/nagle=true: phases_test.go:350: send_queue off the client's gap in 5 of 12 requests",
		}, nil},
		"skipped": {skip, []string{"TestRetransmits: phases_test.go:291: needs nft (nftables)"}, nil},
		"none":    {fail, []string{"no test matched -test.run"}, nil},
		"timeout": {fail, []string{"panic: test timed out after 5m0s", "\trunning tests:", "\t\tTestRunqueue (5m0s)"}, nil},
		"hung": {fail, []string{res.ended, "=== RUN   TestGoAwareness",
			"[  300.1] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [tracerd:123]"}, nil},
		"never": {notRun, []string{res.ended}, nil},
	}
	for i, o := range g.scenarios {
		w := want[names[i]]
		if o.name != names[i] || o.status != w.status || !reflect.DeepEqual(o.why, w.why) || !reflect.DeepEqual(o.notes, w.notes) {
			t.Errorf("%s: got %s why %q notes %q\nwant %s why %q notes %q", names[i], o.status, o.why, o.notes, w.status, w.why, w.notes)
		}
	}
	if h := g.scenarios[2].headline; h != "TestNagle/nagle=true: phases_test.go:350: send_queue off the client's gap in 5 of 12 requests" {
		t.Errorf("errors: headline %q, want the failed subtest's last message", h)
	}
	if took := g.scenarios[0].took; took != 15*time.Second { // its begin and end markers, 15 lines apart
		t.Errorf("loaded took %s, want 15s", took)
	}
	if !g.failed() {
		t.Error("failed() = false with failures")
	}
}

func TestLoadOrder(t *testing.T) {
	deps := map[string][]string{
		"kernel/net/netfilter/nft_numgen.ko.xz": {"kernel/net/netfilter/nf_tables.ko.xz", "kernel/net/netfilter/nfnetlink.ko.xz", "kernel/lib/libcrc32c.ko.xz"},
		"kernel/net/netfilter/nf_tables.ko.xz":  {"kernel/net/netfilter/nfnetlink.ko.xz", "kernel/lib/libcrc32c.ko.xz"},
		"kernel/net/netfilter/nfnetlink.ko.xz":  nil,
		"kernel/lib/libcrc32c.ko.xz":            nil,
		"kernel/drivers/net/veth.ko.xz":         nil,
	}
	got, err := loadOrder(deps, []string{"nft_numgen", "veth", "nf_tables"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kernel/net/netfilter/nfnetlink.ko.xz", "kernel/lib/libcrc32c.ko.xz", "kernel/net/netfilter/nf_tables.ko.xz",
		"kernel/net/netfilter/nft_numgen.ko.xz", "kernel/drivers/net/veth.ko.xz",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("load order %q, want %q", got, want)
	}
	if _, err := loadOrder(deps, []string{"sch_netem"}); err == nil {
		t.Error("a module missing from modules.dep gave no error")
	}
}

// A scenario that failed, ran again and passed is a pass, noted.
func TestParseRetried(t *testing.T) {
	res := console(`
@@tracerd-kernels@@ boot 6.12 2 cpus
@@tracerd-kernels@@ begin check
tracing works here
@@tracerd-kernels@@ end check 0
@@tracerd-kernels@@ begin accept
=== RUN   TestAcceptQueue
    phases_test.go:69: conn 1 accept_queue: tracerd measured 290ms, truth 337ms (off by 47ms, allowed 16.8ms)
--- FAIL: TestAcceptQueue (3.00s)
FAIL
@@tracerd-kernels@@ retry accept
=== RUN   TestAcceptQueue
--- PASS: TestAcceptQueue (3.00s)
PASS
@@tracerd-kernels@@ end accept 0
@@tracerd-kernels@@ done
`)
	g := parseGuest(res, []scenario{{Name: "accept", Run: "^TestAcceptQueue$"}})
	o := g.scenarios[0]
	if o.status != pass || !o.retried || len(o.notes) != 1 || !strings.Contains(o.notes[0], "off by 47ms") {
		t.Errorf("outcome %+v", o)
	}
	if g.failed() {
		t.Error("a scenario passed on its second run fails the guest")
	}
}
