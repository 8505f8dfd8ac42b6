//go:build e2e

package loader

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
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
			t.Errorf("hook %s not attached on this kernel: %s", h.Name, h.Reason)
		}
	}
}

// TestCloseLeavesNothing: after Close none of the programs, maps and
// links this tracer created exists any more (checked by id, so another
// tracerd running meanwhile does not matter).
func TestCloseLeavesNothing(t *testing.T) {
	requireRoot(t)
	tr, err := Open(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var progs []ebpf.ProgramID
	var maps []ebpf.MapID
	var links []link.ID
	for _, p := range tr.coll.Programs {
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		progs = append(progs, id)
	}
	for _, m := range tr.coll.Maps {
		info, err := m.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		maps = append(maps, id)
	}
	for _, l := range tr.links {
		info, err := l.Info()
		if err != nil {
			t.Fatal(err)
		}
		links = append(links, info.ID)
	}
	spec, _ := LoadTracerd()
	wantLinks := 0
	for _, h := range tr.Hooks {
		if h.OK && !h.Pending {
			wantLinks += len(h.Way.Progs)
		}
	}
	if len(progs) == 0 || len(links) != wantLinks || len(maps) < len(spec.Maps) {
		tr.Close()
		t.Fatalf("after Open: %d programs, %d maps, %d links; want some programs, %d maps, %d links",
			len(progs), len(maps), len(links), len(spec.Maps), wantLinks)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	// Programs release their maps after RCU grace periods (tasks-trace
	// for some), which take seconds on a loaded machine: poll.
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := 0
		for _, id := range progs {
			if p, err := ebpf.NewProgramFromID(id); err == nil {
				if info, err := p.Info(); err == nil && time.Now().After(deadline) {
					t.Logf("program %s remains", info.Name)
				}
				p.Close()
				left++
			}
		}
		for _, id := range maps {
			if m, err := ebpf.NewMapFromID(id); err == nil {
				if info, err := m.Info(); err == nil && time.Now().After(deadline) {
					t.Logf("map %s (%v) remains", info.Name, info.Type)
				}
				m.Close()
				left++
			}
		}
		for _, id := range links {
			if l, err := link.NewFromID(id); err == nil {
				l.Close()
				left++
			}
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Close: %d of this tracer's kernel objects remain", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// bpfFDs counts this process's file descriptors for BPF programs, maps
// and links: a kernel object left behind by a failed Open would be held
// by one of them (whatever other processes load meanwhile).
func bpfFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && strings.HasPrefix(target, "anon_inode:bpf") {
			n++
		}
	}
	return n
}

// TestOpenFailsCleanly: an Open that fails leaves nothing loaded.
func TestOpenFailsCleanly(t *testing.T) {
	requireRoot(t)
	before := bpfFDs(t)
	cfg := DefaultConfig()
	cfg.RingBytes = 12345 // not a power of two: fails after BTF and spec load
	if _, err := Open(cfg); err == nil {
		t.Fatal("Open accepted a bad ring buffer size")
	}
	cfg = DefaultConfig()
	cfg.Targets.Cgroups = []string{"/proc"}
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "not a cgroup directory") {
		t.Fatalf("Open with a non-cgroup: %v", err)
	}
	cfg = DefaultConfig()
	cfg.SkipHooks = []string{"sock_recv_length"} // required: fails before load
	if _, err := Open(cfg); err == nil {
		t.Fatal("Open skipped a required hook")
	}
	cfg = DefaultConfig()
	cfg.MaxConns = 1 << 31 // too big for the kernel: fails during load
	if tr, err := Open(cfg); err == nil {
		t.Log("kernel accepted a 2^31-entry map; load failure path not exercised")
		tr.Close()
	}
	if after := bpfFDs(t); after != before {
		t.Fatalf("failed Opens left %d BPF file descriptors open (had %d)", after-before, before)
	}
}

// TestSkippedHookDisablesOnlyItsPhases: a hook turned off (as if the
// kernel lacked it) is reported with its reason and the rest attach.
func TestSkippedHookDisablesOnlyItsPhases(t *testing.T) {
	requireRoot(t)
	cfg := DefaultConfig()
	cfg.SkipHooks = []string{"sched_switch", "net_dev_start_xmit"}
	tr, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	links, progs := 0, map[string]bool{}
	for _, h := range tr.Hooks {
		skipped := h.Name == "sched_switch" || h.Name == "net_dev_start_xmit"
		if h.OK == skipped {
			t.Errorf("%s: ok=%v", h.Name, h.OK)
		}
		if skipped && h.Reason != "skipped by configuration" {
			t.Errorf("%s: reason %q", h.Name, h.Reason)
		}
		if h.OK {
			if !h.Pending {
				links += len(h.Way.Progs)
			}
			for _, a := range h.Way.Progs {
				progs[a.Program] = true
			}
		}
	}
	// Loaded: the attached ways' programs and those no hook owns.
	for name := range tr.coll.Programs {
		if !progs[name] && hookProgram(name) {
			t.Errorf("program %s loaded, but no attached way uses it", name)
		}
	}
	if l := len(tr.links); l != links {
		t.Errorf("%d links; want %d", l, links)
	}

	cfg.SkipHooks = []string{"sock_recv_length"}
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "required") {
		t.Errorf("skipping a required hook: %v", err)
	}
	cfg.SkipHooks = []string{"nope"}
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), `no hook named "nope"`) {
		t.Errorf("skipping an unknown hook: %v", err)
	}
}

// hookProgram says whether a program belongs to some hook's way.
func hookProgram(name string) bool {
	for _, h := range Hooks {
		for _, w := range h.Ways {
			for _, a := range w.Progs {
				if a.Program == name {
					return true
				}
			}
		}
	}
	return false
}

// TestForcedWays: with the better ways refused, each hook falls back to
// the next way this kernel offers, and says what it tried.
func TestForcedWays(t *testing.T) {
	requireRoot(t)
	cases := []struct {
		refuse  []string
		want    map[string]string // hook → kind of the way taken
		wantErr string
	}{
		{refuse: []string{"tp_btf"}, want: map[string]string{"sock_recv_length": "raw_tp", "sched_switch": "raw_tp",
			"tcp_retransmit_skb": "raw_tp", "inet_sock_set_state": "raw_tp", "tcp_probe": "raw_tp"}},
		// No tracepoint way left for a required hook: Open says which.
		{refuse: []string{"tp_btf", "raw_tp"}, wantErr: "required hook inet_sock_set_state"},
		{refuse: []string{"sock_recv_length:tp_btf", "sock_recv_length:raw_tp", "sock_send_length:tp_btf",
			"sock_send_length:raw_tp"},
			want: map[string]string{"sock_recv_length": "tracepoint", "sock_send_length": "tracepoint", "tcp_probe": "tp_btf"}},
	}
	for _, c := range cases {
		cfg := DefaultConfig()
		cfg.RefuseWays = c.refuse
		tr, err := Open(cfg)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("refusing %v: error %v, want %q", c.refuse, err, c.wantErr)
			}
			if err == nil {
				tr.Close()
			}
			continue
		}
		if err != nil {
			t.Errorf("refusing %v: %v", c.refuse, err)
			continue
		}
		for _, h := range tr.Hooks {
			want, ok := c.want[h.Name]
			if !ok {
				continue
			}
			if !h.OK || h.Way.Kind != want {
				t.Errorf("refusing %v: hook %s attached by %q, want %s; tried %v", c.refuse, h.Name, h.WayName(), want, h.Tried)
			} else if want != "tp_btf" && len(h.Tried) == 0 {
				t.Errorf("refusing %v: hook %s says nothing of the ways it did not take", c.refuse, h.Name)
			}
		}
		tr.Close()
	}
}

// TestWakeupEvery: with every CPU one short of waking the reader, the
// ring holds at most 1/8 of its size in entries of ≤ 1 KiB; the count
// stays within [1, 1024].
func TestWakeupEvery(t *testing.T) {
	for _, c := range []struct {
		ring uint32
		cpus int
		want uint32
	}{
		{16 << 20, 2, 1024},
		{16 << 20, 4, 512},
		{16 << 20, 1, 1024},
		{64 << 20, 1, 1024},
		{16 << 20, 64, 32},
		{16 << 20, 4096, 1},
		{4096, 2, 1},
		{16 << 20, 0, 1024},
	} {
		got := wakeupEvery(c.ring, c.cpus)
		if got != c.want {
			t.Errorf("wakeupEvery(%d, %d) = %d, want %d", c.ring, c.cpus, got, c.want)
		}
		if c.cpus > 0 && got > 1 && uint64(got)*uint64(c.cpus)*1024 > uint64(c.ring)/8 {
			t.Errorf("wakeupEvery(%d, %d) = %d lets %d bytes wait, over 1/8 of the ring", c.ring, c.cpus, got, uint64(got)*uint64(c.cpus)*1024)
		}
	}
}

// TestSchedHooksWaitForQuota: on a host where no cgroup sets a CPU
// quota the scheduler hooks are loaded (their way tried) but not
// attached; attachPending attaches them, once, and never after Detach.
func TestSchedHooksWaitForQuota(t *testing.T) {
	requireRoot(t)
	if found, _ := hostHasCPUQuota(); found {
		t.Skip("a cgroup of this host sets a CPU quota: the scheduler hooks attach at start")
	}
	tr, err := Open(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	pending, attached := 0, 0
	for _, h := range tr.HookStatuses() {
		if h.OnQuota != h.Pending {
			t.Errorf("%s: OnQuota %v, Pending %v", h.Name, h.OnQuota, h.Pending)
		}
		if h.Pending {
			pending += len(h.Way.Progs)
		} else if h.OK {
			attached += len(h.Way.Progs)
		}
	}
	if pending != 3 || len(tr.links) != attached {
		t.Fatalf("%d programs pending (want 3: sched_switch, sched_wakeup, sched_wakeup_new), %d links for %d attached", pending, len(tr.links), attached)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	for name, perCPU := range goCallsPerCPU {
		if n := tr.coll.Maps[name].MaxEntries(); uint64(n) < uint64(cpus)*uint64(perCPU) {
			t.Errorf("%s holds %d entries: fewer than %d for each of %d CPUs", name, n, perCPU, cpus)
		}
	}
	var on uint32
	if err := tr.coll.Maps[TracerdMapSchedHooks].Lookup(uint32(0), &on); err != nil || on != 0 {
		t.Fatalf("sched_hooks %d (%v) while they wait, want 0", on, err)
	}
	// Nothing seen yet: the periodic look leaves them.
	tr.attachOnQuota()
	if len(tr.links) != attached || !tr.pending.Load() {
		t.Fatalf("attached without a quota seen: %d links", len(tr.links))
	}
	tr.attachPending("test")
	if len(tr.links) != attached+pending || tr.pending.Load() {
		t.Fatalf("after attachPending: %d links, want %d", len(tr.links), attached+pending)
	}
	for _, h := range tr.HookStatuses() {
		if h.Pending {
			t.Errorf("%s still pending", h.Name)
		}
	}
	if err := tr.coll.Maps[TracerdMapSchedHooks].Lookup(uint32(0), &on); err != nil || on != 1 {
		t.Errorf("sched_hooks %d (%v) once attached, want 1", on, err)
	}
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	tr.pending.Store(true)
	tr.attachPending("after detach")
	if len(tr.links) != 0 {
		t.Errorf("attached after Detach: %d links", len(tr.links))
	}
}
