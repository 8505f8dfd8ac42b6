package findings

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tracerd/tracerd/internal/cgroupfs"
	"github.com/tracerd/tracerd/internal/ticker"
)

// Snapshot is what the host showed at the last sample: the context a
// finding's evidence adds to the request's own numbers. Rates are
// differences between the last two samples, per second. Immutable once
// published.
type Snapshot struct {
	At       time.Time
	Interval time.Duration // since the sample before; 0 on the first

	// Host-wide.
	CPUBusyPct    float64 // all CPUs, busy share of the interval
	HasCPU        bool
	PSISomeAvg10  float64 // /proc/pressure/cpu "some avg10"
	HasPSI        bool
	SoftnetDrops  int64 // per second, summed over CPUs
	SoftnetSqueez int64 // per second: NET_RX ran out of budget
	HasSoftnet    bool

	Procs     map[uint32]*Proc
	Net       map[uint64]*NetRates // by network namespace (inode of /proc/PID/ns/net)
	Listeners map[ListenerKey]ListenerInfo
	Somaxconn int64  // net.core.somaxconn of tracerd's network namespace; 0 unknown
	OwnNetNS  uint64 // tracerd's network namespace
}

// Proc is what the sampler knows of a watched process.
type Proc struct {
	NetNS       uint64
	CPUsAllowed int
	Env         goEnv
	HasEnv      bool
	Quota       *CgroupQuota // the nearest cgroup with a CPU quota; nil: none found
	CPUPct      float64      // CPU the process used during the interval, % of one CPU
	HasCPU      bool
}

// CPUShare is the share of the CPUs the process may use that it used
// during the interval: the least of its allowed CPUs, its cgroup's
// quota and GOMAXPROCS when set. ok is false when unknown.
func (p *Proc) CPUShare() (share float64, ok bool) {
	if !p.HasCPU || p.CPUsAllowed <= 0 {
		return 0, false
	}
	cpus := float64(p.CPUsAllowed)
	if q := p.Quota; q != nil {
		cpus = min(cpus, float64(q.QuotaUs)/float64(q.PeriodUs))
	}
	if n, err := strconv.Atoi(p.Env.GOMAXPROCS); err == nil && n > 0 {
		cpus = min(cpus, float64(n))
	}
	return p.CPUPct / 100 / cpus, true
}

// CgroupQuota is a cgroup's CFS quota and its throttling during the
// last interval (per second).
type CgroupQuota struct {
	Dir                 string
	QuotaUs, PeriodUs   int64
	ThrottledNsPerS     int64
	NrThrottledPerS     int64
	NrPeriodsPerS       int64
	HasRates            bool
	periods, thr, thrNs int64 // the counters, for the next difference
}

// NetRates are a network namespace's TCP counters, per second.
type NetRates struct {
	ListenOverflows, ListenDrops, SyncookiesSent, RetransSegs, Timeouts int64
}

// ListenerKey is a watched listener: a process and its local port.
type ListenerKey struct {
	PID  uint32
	Port uint16
}

// ListenerInfo is the listener's accept queue at the last sample; Limit
// is 0 when unknown (another network namespace: only /proc's Recv-Q).
type ListenerInfo struct {
	Queue, Limit int64
}

// Sampler samples the host's context once a second in the background,
// for the processes and listeners findings asked about (Watch*): one
// sample costs a few small file reads, a request none.
type Sampler struct {
	proc string // "/proc"

	mu        sync.Mutex
	pids      map[uint32]bool
	listeners map[ListenerKey]bool

	snap atomic.Pointer[Snapshot]

	// Sampling state: the goroutine's alone.
	prevAt       time.Time
	prevBusy     int64
	prevTotal    int64
	prevSoftnetD int64
	prevSoftnetS int64
	prevNet      map[uint64]map[string]int64
	prevQuota    map[string]*CgroupQuota
	prevProcCPU  map[uint32]int64 // utime + stime, ticks
	static       map[uint32]staticProc
	mounts       struct{ v2, v1cpu string }
	mountsRead   bool
	ownNetNS     uint64
	tickQuota    map[string]*CgroupQuota // this sample's, by directory
	files        *openFiles              // the files read every sample, kept open
}

// staticProc is what changes only at exec: read again now and then.
type staticProc struct {
	read        time.Time
	env         goEnv
	hasEnv      bool
	cpusAllowed int
	v2, v1cpu   string
}

// maxWatched bounds the processes and listeners sampled.
const maxWatched = 256

// staticEvery is how often a process's environment and CPUs are read
// again (an exec changes them).
const staticEvery = time.Minute

// NewSampler makes a sampler of the host as tracerd sees it.
func NewSampler() *Sampler { return newSampler("/proc") }

func newSampler(proc string) *Sampler {
	s := &Sampler{proc: proc, pids: map[uint32]bool{}, listeners: map[ListenerKey]bool{},
		prevNet: map[uint64]map[string]int64{}, prevQuota: map[string]*CgroupQuota{}, static: map[uint32]staticProc{}, prevProcCPU: map[uint32]int64{}, files: newOpenFiles()}
	s.snap.Store(&Snapshot{})
	return s
}

// Load is the last sample.
func (s *Sampler) Load() *Snapshot { return s.snap.Load() }

// WatchProc asks for pid's context from the next sample on.
func (s *Sampler) WatchProc(pid uint32) {
	s.mu.Lock()
	if len(s.pids) < maxWatched {
		s.pids[pid] = true
	}
	s.mu.Unlock()
}

// WatchListener asks for the accept queue of pid's listener on port.
func (s *Sampler) WatchListener(pid uint32, port uint16) {
	s.mu.Lock()
	if len(s.listeners) < maxWatched {
		s.listeners[ListenerKey{pid, port}] = true
	}
	if len(s.pids) < maxWatched {
		s.pids[pid] = true
	}
	s.mu.Unlock()
}

// Run samples every interval until ctx ends.
func (s *Sampler) Run(ctx context.Context, every time.Duration) {
	defer s.files.close()
	s.Sample()
	ticker.Run(ctx, every, s.Sample)
}

func (s *Sampler) read(parts ...string) ([]byte, error) {
	return os.ReadFile(s.path(parts...))
}

func (s *Sampler) path(parts ...string) string {
	return filepath.Join(append([]string{s.proc}, parts...)...)
}

// readOpen reads a file that every sample reads, kept open between
// samples (openFiles): the bytes are valid until the next read.
func (s *Sampler) readOpen(parts ...string) ([]byte, error) {
	p := s.path(parts...)
	return s.files.read(p, p)
}

// readHostOpen is readOpen for the host's own files (openFiles.readHost).
func (s *Sampler) readHostOpen(parts ...string) ([]byte, error) {
	p := s.path(parts...)
	return s.files.readHost(p, p)
}

// Sample takes one sample and publishes it. Not concurrent with itself.
func (s *Sampler) Sample() {
	now := time.Now()
	snap := &Snapshot{At: now, Procs: map[uint32]*Proc{}, Net: map[uint64]*NetRates{}, Listeners: map[ListenerKey]ListenerInfo{}}
	if !s.prevAt.IsZero() {
		snap.Interval = now.Sub(s.prevAt)
	}
	perSec := func(delta int64) int64 {
		if snap.Interval <= 0 || delta < 0 {
			return 0
		}
		return int64(float64(delta) * float64(time.Second) / float64(snap.Interval))
	}
	if !s.mountsRead {
		if mi, err := s.read("self", "mountinfo"); err == nil {
			s.mounts.v2, s.mounts.v1cpu = cgroupfs.Mounts(mi)
		}
		s.ownNetNS = s.netns("self")
		s.mountsRead = true
	}
	snap.OwnNetNS = s.ownNetNS
	s.sampleHost(snap, perSec)
	if b, err := s.readHostOpen("sys", "net", "core", "somaxconn"); err == nil {
		snap.Somaxconn, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}

	s.mu.Lock()
	pids := make([]uint32, 0, len(s.pids))
	for p := range s.pids {
		pids = append(pids, p)
	}
	listeners := make([]ListenerKey, 0, len(s.listeners))
	for l := range s.listeners {
		listeners = append(listeners, l)
	}
	s.mu.Unlock()

	s.tickQuota = map[string]*CgroupQuota{}
	var gone []uint32
	netPID := map[uint64]uint32{} // a process of each namespace
	for _, pid := range pids {
		p, ok := s.sampleProc(pid, now, perSec)
		if !ok {
			gone = append(gone, pid)
			continue
		}
		snap.Procs[pid] = p
		if p.NetNS != 0 {
			netPID[p.NetNS] = pid
		}
	}
	for ns, pid := range netPID {
		snap.Net[ns] = s.sampleNet(ns, pid, perSec)
	}
	for ns := range s.prevNet {
		if _, ok := netPID[ns]; !ok {
			delete(s.prevNet, ns)
			for _, f := range netFiles {
				s.files.forget(netKey(ns, f))
			}
		}
	}
	s.sampleListeners(snap, listeners)
	for dir := range s.prevQuota {
		if s.tickQuota[dir] == nil {
			delete(s.prevQuota, dir)
		}
	}

	if len(gone) > 0 {
		s.mu.Lock()
		for _, pid := range gone {
			delete(s.pids, pid)
			delete(s.static, pid)
			delete(s.prevProcCPU, pid)
			s.files.forget(s.path(strconv.FormatUint(uint64(pid), 10), "stat"))
			for l := range s.listeners {
				if l.PID == pid {
					delete(s.listeners, l)
				}
			}
		}
		s.mu.Unlock()
	}
	s.prevAt = now
	s.snap.Store(snap)
}

func (s *Sampler) sampleHost(snap *Snapshot, perSec func(int64) int64) {
	if b, err := s.readHostOpen("stat"); err == nil {
		if busy, total, ok := hostCPU(b); ok {
			if d := total - s.prevTotal; s.prevTotal != 0 && d > 0 {
				snap.CPUBusyPct = 100 * float64(busy-s.prevBusy) / float64(d)
				snap.HasCPU = true
			}
			s.prevBusy, s.prevTotal = busy, total
		}
	}
	if b, err := s.readHostOpen("pressure", "cpu"); err == nil {
		snap.PSISomeAvg10, snap.HasPSI = psiSomeAvg10(b)
	}
	if b, err := s.readHostOpen("net", "softnet_stat"); err == nil {
		if d, sq, ok := softnet(b); ok {
			if snap.Interval > 0 {
				snap.SoftnetDrops, snap.SoftnetSqueez, snap.HasSoftnet = perSec(d-s.prevSoftnetD), perSec(sq-s.prevSoftnetS), true
			}
			s.prevSoftnetD, s.prevSoftnetS = d, sq
		}
	}
}

// netns is the inode of a process's network namespace, 0 when unknown.
func (s *Sampler) netns(pid string) uint64 {
	l, err := os.Readlink(filepath.Join(s.proc, pid, "ns", "net"))
	if err != nil {
		return 0
	}
	// "net:[4026531840]"
	v := strings.TrimSuffix(strings.TrimPrefix(l, "net:["), "]")
	n, _ := strconv.ParseUint(v, 10, 64)
	return n
}

// sampleProc reads a process's context; ok is false when it is gone.
func (s *Sampler) sampleProc(pid uint32, now time.Time, perSec func(int64) int64) (*Proc, bool) {
	id := strconv.FormatUint(uint64(pid), 10)
	st, have := s.static[pid]
	if !have || now.Sub(st.read) >= staticEvery {
		cg, err := s.read(id, "cgroup")
		if err != nil {
			return nil, false
		}
		st = staticProc{read: now}
		st.v2, st.v1cpu = cgroupPaths(cg)
		if env, err := s.read(id, "environ"); err == nil {
			st.env, st.hasEnv = readGoEnv(env), true
		}
		if status, err := s.read(id, "status"); err == nil {
			st.cpusAllowed = cpusAllowed(status)
		}
		s.static[pid] = st
	} else if _, err := os.Stat(filepath.Join(s.proc, id)); err != nil {
		return nil, false
	}
	p := &Proc{NetNS: s.netns(id), CPUsAllowed: st.cpusAllowed, Env: st.env, HasEnv: st.hasEnv}
	p.Quota = s.quota(st, perSec)
	if b, err := s.readOpen(id, "stat"); err == nil {
		if ticks, ok := procCPUTicks(b); ok {
			if prev, seen := s.prevProcCPU[pid]; seen && ticks >= prev {
				// Ticks per second (in thousandths), clockTicks a CPU.
				p.CPUPct, p.HasCPU = float64(perSec((ticks-prev)*1000))/1000/clockTicks*100, true
			}
			s.prevProcCPU[pid] = ticks
		}
	}
	return p, true
}

// quota finds the nearest cgroup (the process's own or an ancestor's)
// with a CPU quota, in the v1 cpu hierarchy when there is one (where the
// controller then lives), else in v2, and its throttling rates.
func (s *Sampler) quota(st staticProc, perSec func(int64) int64) *CgroupQuota {
	var root, rel string
	v2 := false
	switch {
	case s.mounts.v1cpu != "" && st.v1cpu != "":
		root, rel = s.mounts.v1cpu, st.v1cpu
	case s.mounts.v2 != "" && st.v2 != "":
		root, rel, v2 = s.mounts.v2, st.v2, true
	default:
		return nil
	}
	dir := filepath.Join(root, filepath.Clean("/"+rel))
	for {
		if cur := s.tickQuota[dir]; cur != nil {
			return cur // another process of the cgroup: read already
		}
		q, p, ok := readQuota(dir, v2)
		if ok {
			cur := &CgroupQuota{Dir: dir, QuotaUs: q, PeriodUs: p}
			if b, err := os.ReadFile(filepath.Join(dir, "cpu.stat")); err == nil {
				if periods, thr, thrNs, ok := cpuStat(b); ok {
					cur.periods, cur.thr, cur.thrNs = periods, thr, thrNs
					if prev := s.prevQuota[dir]; prev != nil {
						cur.ThrottledNsPerS = perSec(thrNs - prev.thrNs)
						cur.NrThrottledPerS = perSec(thr - prev.thr)
						cur.NrPeriodsPerS = perSec(periods - prev.periods)
						cur.HasRates = true
					}
					s.prevQuota[dir] = cur
				}
			}
			s.tickQuota[dir] = cur
			return cur
		}
		if dir == root || len(dir) <= len(root) {
			return nil
		}
		dir = filepath.Dir(dir)
	}
}

// readQuota reads a cgroup directory's CFS quota (v2 cpu.max, v1
// cpu.cfs_quota_us and cpu.cfs_period_us).
func readQuota(dir string, v2 bool) (quotaUs, periodUs int64, ok bool) {
	if v2 {
		b, err := os.ReadFile(filepath.Join(dir, "cpu.max"))
		if err != nil {
			return 0, 0, false
		}
		return cpuMax(b)
	}
	qb, err1 := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us"))
	pb, err2 := os.ReadFile(filepath.Join(dir, "cpu.cfs_period_us"))
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return cpuMax([]byte(strings.TrimSpace(string(qb)) + " " + strings.TrimSpace(string(pb))))
}

// netFiles are the files of a namespace's counters (/proc/PID/net/...),
// kept open by namespace (netKey): one opened through a process reads
// its namespace whichever of the namespace's processes the next sample
// picks.
var netFiles = []string{"netstat", "snmp"}

func netKey(ns uint64, file string) string {
	return "net:" + strconv.FormatUint(ns, 10) + ":" + file
}

// netKeys are the counters read per network namespace.
var netKeys = []string{"TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtSyncookiesSent", "TcpRetransSegs", "TcpExtTCPTimeouts"}

func (s *Sampler) sampleNet(ns uint64, pid uint32, perSec func(int64) int64) *NetRates {
	id := strconv.FormatUint(uint64(pid), 10)
	cur := map[string]int64{}
	for _, k := range netKeys {
		cur[k] = -1
	}
	for _, f := range netFiles {
		if b, err := s.files.read(netKey(ns, f), s.path(id, "net", f)); err == nil {
			netCounters(b, cur)
		}
	}
	prev := s.prevNet[ns]
	s.prevNet[ns] = cur
	if prev == nil {
		return nil
	}
	d := func(k string) int64 {
		if cur[k] < 0 || prev[k] < 0 {
			return 0
		}
		return perSec(cur[k] - prev[k])
	}
	return &NetRates{ListenOverflows: d("TcpExtListenOverflows"), ListenDrops: d("TcpExtListenDrops"),
		SyncookiesSent: d("TcpExtSyncookiesSent"), RetransSegs: d("TcpRetransSegs"), Timeouts: d("TcpExtTCPTimeouts")}
}

// sampleListeners reads the watched listeners' accept queues: with
// inet_diag (queue and limit) in tracerd's own network namespace, from
// /proc/PID/net/tcp{,6} (queue only) in another.
func (s *Sampler) sampleListeners(snap *Snapshot, listeners []ListenerKey) {
	own := map[uint16]bool{}
	for _, l := range listeners {
		p := snap.Procs[l.PID]
		if p == nil {
			continue
		}
		if p.NetNS != 0 && p.NetNS == s.ownNetNS {
			own[l.Port] = true
			continue
		}
		id := strconv.FormatUint(uint64(l.PID), 10)
		var q int64
		found := false
		for _, f := range []string{"tcp", "tcp6"} {
			if b, err := s.read(id, "net", f); err == nil {
				if n, ok := listenQueue(b, l.Port); ok {
					q, found = max(q, n), true
				}
			}
		}
		if found {
			snap.Listeners[l] = ListenerInfo{Queue: q}
		}
	}
	if len(own) == 0 {
		return
	}
	states, err := listenerQueues(own)
	if err != nil {
		return
	}
	for _, l := range listeners {
		if st, ok := states[l.Port]; ok && own[l.Port] {
			snap.Listeners[l] = ListenerInfo(st)
		}
	}
}
