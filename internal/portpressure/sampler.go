package portpressure

import (
	"cmp"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tracerd/tracerd/internal/loader"
	"github.com/tracerd/tracerd/internal/ticker"
)

// Bounds: the report stays small whatever the host does.
const (
	maxNamespaces   = 64
	maxDestinations = 20
	maxProcesses    = 8
	// maxGrouped bounds the destinations counted in one namespace
	// during a sample (a proxy talking to many backends).
	maxGrouped = 65536
)

// sysctlsEvery is how often a namespace's port range is read again.
const sysctlsEvery = 10 * time.Second

// Sources are where a sample's inputs come from.
type Sources struct {
	// PIDs are the traced processes (the kernel's traced_tgids).
	PIDs func() ([]uint32, error)
	// Failures are the kernel's EADDRNOTAVAIL counts.
	Failures func() ([]loader.ConnectFail, uint64, error)
}

// Sampler samples port pressure once a second in the background.
type Sampler struct {
	proc string // "/proc"
	src  Sources
	// sysctls reads a namespace's sysctls through a process in it.
	sysctls func(pid uint32) (netSysctls, error)
	snap    atomic.Pointer[Report]
	clock   func() time.Time

	// The sampling goroutine's alone.
	cache map[uint64]cachedSysctls
	// seen follows each destination's failure count, for its finding.
	seen map[failSeenKey]*failSeen
}

type failSeenKey struct {
	ns   uint64
	dest netip.AddrPort
}

// failSeen is a destination's failure count over the finding window:
// the count at each sample that saw it grow (oldest first), and at the
// last sample.
type failSeen struct {
	grew    []countAt
	last    uint64
	sampled time.Time
}

type countAt struct {
	at    time.Time
	count uint64 // the count before it grew
}

type cachedSysctls struct {
	read time.Time
	s    netSysctls
	err  error
}

// New makes a sampler reading src.
func New(src Sources) *Sampler {
	s := &Sampler{proc: "/proc", src: src, cache: map[uint64]cachedSysctls{}, seen: map[failSeenKey]*failSeen{}, clock: time.Now}
	s.sysctls = func(pid uint32) (netSysctls, error) {
		return readNetSysctls(filepath.Join(s.proc, strconv.FormatUint(uint64(pid), 10), "ns", "net"))
	}
	s.snap.Store(&Report{})
	return s
}

// Load is the last sample (empty before the first).
func (s *Sampler) Load() *Report { return s.snap.Load() }

// Run samples every interval until ctx ends.
func (s *Sampler) Run(ctx context.Context, every time.Duration) {
	s.Sample()
	ticker.Run(ctx, every, s.Sample)
}

// nsGroup gathers what a sample knows of one namespace before reading it.
type nsGroup struct {
	ns    uint64
	pids  []uint32
	fails []loader.ConnectFail
}

// Sample takes one sample and publishes it. Not concurrent with itself.
func (s *Sampler) Sample() {
	now := s.clock()
	rep := &Report{At: now, Namespaces: []Namespace{}} // [] in JSON, not null
	var pids []uint32
	if s.src.PIDs != nil {
		pids, _ = s.src.PIDs()
	}
	var fails []loader.ConnectFail
	if s.src.Failures != nil {
		fails, rep.FailuresUncounted, _ = s.src.Failures()
	}
	groups := map[uint64]*nsGroup{}
	group := func(ns uint64) *nsGroup {
		g := groups[ns]
		if g == nil {
			g = &nsGroup{ns: ns}
			groups[ns] = g
		}
		return g
	}
	for _, f := range fails {
		g := group(uint64(f.NetNS))
		g.fails = append(g.fails, f)
		if !slices.Contains(g.pids, f.PID) {
			g.pids = append(g.pids, f.PID)
		}
	}
	for _, pid := range pids {
		ns := s.netns(pid)
		if ns == 0 {
			continue // gone
		}
		g := group(ns)
		if !slices.Contains(g.pids, pid) {
			g.pids = append(g.pids, pid)
		}
	}
	// Namespaces with failures first, then by inode: a stable choice
	// when there are too many.
	order := make([]*nsGroup, 0, len(groups))
	for _, g := range groups {
		order = append(order, g)
	}
	slices.SortFunc(order, func(a, b *nsGroup) int {
		if c := cmp.Compare(len(b.fails), len(a.fails)); c != 0 {
			return c
		}
		return cmp.Compare(a.ns, b.ns)
	})
	if len(order) > maxNamespaces {
		rep.NamespacesOmitted = len(order) - maxNamespaces
		order = order[:maxNamespaces]
	}
	comms := map[uint32]string{}
	for _, g := range order {
		if n, ok := s.sampleNamespace(g, now, comms); ok {
			rep.Namespaces = append(rep.Namespaces, n)
		}
	}
	for ns := range s.cache {
		if groups[ns] == nil {
			delete(s.cache, ns)
		}
	}
	for k, f := range s.seen {
		if !f.sampled.Equal(now) {
			delete(s.seen, k)
		}
	}
	s.snap.Store(rep)
}

// netns is the inode of pid's network namespace, 0 when gone.
func (s *Sampler) netns(pid uint32) uint64 {
	l, err := os.Readlink(filepath.Join(s.proc, strconv.FormatUint(uint64(pid), 10), "ns", "net"))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(l, "net:["), "]"), 10, 64)
	return n
}

func (s *Sampler) comm(pid uint32, comms map[uint32]string) string {
	if c, ok := comms[pid]; ok {
		return c
	}
	b, _ := os.ReadFile(filepath.Join(s.proc, strconv.FormatUint(uint64(pid), 10), "comm"))
	c := strings.TrimSpace(string(b))
	comms[pid] = c
	return c
}

// destCount counts one destination's sockets during a sample.
type destCount struct {
	inUse, timeWait, established int
}

// sampleNamespace reads a namespace's sockets and sysctls through one
// of its live processes; ok is false when none is left (and it had no
// failures to show).
func (s *Sampler) sampleNamespace(g *nsGroup, now time.Time, comms map[uint32]string) (Namespace, bool) {
	n := Namespace{NetNS: g.ns, TWReuse: -1, Processes: []Process{}, Destinations: []Destination{}}
	slices.Sort(g.pids)
	reader := uint32(0)
	for _, pid := range g.pids {
		if s.netns(pid) != g.ns {
			continue // gone, or moved
		}
		if reader == 0 {
			reader = pid
		}
		if len(n.Processes) < maxProcesses {
			n.Processes = append(n.Processes, Process{PID: pid, Comm: s.comm(pid, comms)})
		}
	}
	if reader == 0 && len(g.fails) == 0 {
		return n, false
	}
	dests := map[netip.AddrPort]*destCount{}
	if reader != 0 {
		c, ok := s.cache[g.ns]
		if !ok || now.Sub(c.read) >= sysctlsEvery {
			c.s, c.err = s.sysctls(reader)
			c.read = now
			s.cache[g.ns] = c
		}
		if c.err != nil {
			n.Error = "ip_local_port_range: " + c.err.Error()
		} else {
			n.PortLow, n.PortHigh, n.TWReuse = c.s.lo, c.s.hi, c.s.twReuse
			n.RangeSize = c.s.hi - c.s.lo + 1
		}
		if err := s.countSockets(reader, &n, dests); err != nil && n.Error == "" {
			n.Error = err.Error()
		}
	}
	fails := map[netip.AddrPort][]Failure{}
	for _, f := range g.fails {
		if _, ok := dests[f.Dest]; !ok && len(dests) < maxGrouped {
			dests[f.Dest] = &destCount{}
		}
		fails[f.Dest] = append(fails[f.Dest], Failure{PID: f.PID, Comm: s.comm(f.PID, comms), Count: f.Count})
	}
	for a, c := range dests {
		d := Destination{Address: a, InUse: c.inUse, TimeWait: c.timeWait, Established: c.established, Failures: fails[a]}
		if n.RangeSize > 0 {
			d.Available = max(0, n.RangeSize-c.inUse)
		}
		slices.SortFunc(d.Failures, func(x, y Failure) int { return cmp.Compare(x.PID, y.PID) })
		if len(d.Failures) > 0 {
			d.Finding = s.finding(failSeenKey{g.ns, a}, d.FailureCount(), now, &n, &d)
		}
		n.Destinations = append(n.Destinations, d)
	}
	slices.SortFunc(n.Destinations, func(x, y Destination) int {
		if c := cmp.Compare(y.InUse, x.InUse); c != 0 {
			return c
		}
		if c := cmp.Compare(y.FailureCount(), x.FailureCount()); c != 0 {
			return c
		}
		return x.Address.Compare(y.Address)
	})
	if len(n.Destinations) > maxDestinations {
		n.DestinationsOmitted = len(n.Destinations) - maxDestinations
		n.Destinations = n.Destinations[:maxDestinations]
	}
	return n, true
}

// finding follows a destination's failure count and names it
// ephemeral_port_exhaustion while the count grew within FindingWindow.
func (s *Sampler) finding(k failSeenKey, count uint64, now time.Time, n *Namespace, d *Destination) *Finding {
	f := s.seen[k]
	if f == nil {
		f = &failSeen{}
		s.seen[k] = f
	}
	if count > f.last {
		f.grew = append(f.grew, countAt{now, f.last})
	}
	f.last, f.sampled = count, now
	for len(f.grew) > 0 && now.Sub(f.grew[0].at) > FindingWindow {
		f.grew = f.grew[1:]
	}
	if len(f.grew) == 0 {
		return nil
	}
	return &Finding{
		Code: FindingCode, LastFailure: f.grew[len(f.grew)-1].at, RecentFailures: count - f.grew[0].count,
		Confirm: confirm(n, d), Remedy: remedy(n, d),
	}
}

// confirm is the shell command that shows the destination's ports and
// the namespace's range, run in the namespace of one of its processes.
func confirm(n *Namespace, d *Destination) string {
	in := ""
	if len(n.Processes) > 0 {
		in = "nsenter -t " + strconv.FormatUint(uint64(n.Processes[0].PID), 10) + " -n "
	}
	return in + "ss -tan dst " + d.Address.String() + " | awk 'NR>1{print $1}' | sort | uniq -c; " +
		in + "sysctl net.ipv4.ip_local_port_range net.ipv4.tcp_tw_reuse"
}

// remedy says what frees local ports, TIME_WAIT first when it holds
// most of them.
func remedy(n *Namespace, d *Destination) string {
	r := "Reuse connections to " + d.Address.String() + " (HTTP keep-alive, a connection pool sized to the concurrency) instead of one per request"
	if d.InUse > 0 && d.TimeWait*2 >= d.InUse {
		r += "; most of its ports wait in TIME_WAIT (60 s after the client closes): net.ipv4.tcp_tw_reuse=1 lets new connections reuse them when TCP timestamps make it safe"
	}
	return r + "; widen net.ipv4.ip_local_port_range, or spread the calls over more destination addresses or ports (each address:port has the whole range)"
}

// countSockets reads the namespace's TCP sockets (/proc/PID/net/tcp and
// tcp6: the namespace's, whichever process they belong to, TIME_WAIT
// ones too) and counts, per destination, those on a local port of the
// range. Sockets whose local port is a listener's (accepted
// connections) are not outgoing: left out.
func (s *Sampler) countSockets(pid uint32, n *Namespace, dests map[netip.AddrPort]*destCount) error {
	type held struct {
		lport  uint16
		remote netip.AddrPort
		state  uint8
	}
	var inRange []held
	listening := map[uint16]bool{}
	id := strconv.FormatUint(uint64(pid), 10)
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join(s.proc, id, "net", name))
		if err != nil {
			if name == "tcp6" && os.IsNotExist(err) {
				continue // IPv6 off
			}
			return err
		}
		err = scanSockets(f, func(k socket) {
			if k.state == stateTimeWait {
				n.TimeWait++
			}
			if k.state == stateListen {
				listening[k.local.Port()] = true
				return
			}
			if p := int(k.local.Port()); n.RangeSize > 0 && p >= n.PortLow && p <= n.PortHigh {
				inRange = append(inRange, held{k.local.Port(), k.remote, k.state})
			}
		})
		f.Close()
		if err != nil {
			return err
		}
	}
	for _, h := range inRange {
		if listening[h.lport] {
			continue
		}
		n.EphemeralInUse++
		c := dests[h.remote]
		if c == nil {
			if len(dests) >= maxGrouped {
				continue
			}
			c = &destCount{}
			dests[h.remote] = c
		}
		c.inUse++
		switch h.state {
		case stateTimeWait:
			c.timeWait++
		case stateEstablished:
			c.established++
		}
	}
	return nil
}
