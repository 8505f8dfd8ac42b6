package findings

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/tracerd/tracerd/internal/correlate"
)

// Row is one cause on one route: how often it was found and the time it
// cost in all, with the command that confirms it (from its first
// request).
type Row struct {
	Service string
	Route   string
	Code    correlate.FindingCode
	Phase   correlate.Phase
	Count   int64
	LostNs  int64
	Confirm string
	// contextual: Confirm was made from a finding with the host's
	// context (a cgroup path…); until then a later one may improve it.
	contextual bool
}

type rowKey struct {
	service, route string
	code           correlate.FindingCode
}

// maxRows bounds a table; findings past it count in Dropped.
const maxRows = 1000

// Table sums findings per service, route and code, in bounded memory.
// Not safe for concurrent use.
type Table struct {
	rows    map[rowKey]*Row
	Dropped int64 // findings not counted: the table was full
	route   []byte
}

// Add counts r's findings.
func (t *Table) Add(r *correlate.Request) {
	if len(r.Findings) == 0 {
		return
	}
	if t.rows == nil {
		t.rows = map[rowKey]*Row{}
	}
	t.route = r.AppendRoute(t.route[:0])
	for i := range r.Findings {
		f := &r.Findings[i]
		// string(t.route) in a lookup does not allocate.
		row := t.rows[rowKey{r.Service, string(t.route), f.Code}]
		if row == nil {
			if len(t.rows) >= maxRows {
				t.Dropped++
				continue
			}
			row = &Row{Service: r.Service, Route: string(t.route), Code: f.Code, Phase: f.Phase}
			t.rows[rowKey{row.Service, row.Route, row.Code}] = row
		}
		if !row.contextual {
			_, row.contextual = f.Lookup("context_age_ms")
			if row.Confirm == "" || row.contextual {
				row.Confirm = Confirm(r, f)
			}
		}
		row.Count++
		row.LostNs += f.LostNs
	}
}

// merge adds o's rows to t.
func (t *Table) merge(o *Table) {
	if t.rows == nil {
		t.rows = map[rowKey]*Row{}
	}
	for k, r := range o.rows {
		if cur := t.rows[k]; cur != nil {
			cur.Count += r.Count
			cur.LostNs += r.LostNs
			if !cur.contextual && r.contextual {
				cur.Confirm, cur.contextual = r.Confirm, true
			}
			continue
		}
		c := *r
		t.rows[k] = &c
	}
	t.Dropped += o.Dropped
}

// Rows are the rows, most time lost first (then by service, route and
// code, for a stable order).
func (t *Table) Rows() []Row {
	out := make([]Row, 0, len(t.rows))
	for _, r := range t.rows {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Row) int {
		return cmp.Or(cmp.Compare(b.LostNs, a.LostNs), cmp.Compare(a.Service, b.Service), cmp.Compare(a.Route, b.Route), cmp.Compare(a.Code, b.Code))
	})
	return out
}

// Confirm is the shell command an operator runs to see the cause of f
// with the system's own tools.
func Confirm(r *correlate.Request, f *correlate.Finding) string {
	port := r.Conn.Local.Port()
	switch f.Code {
	case correlate.AcceptBacklog:
		return fmt.Sprintf("ss -lnt 'sport = :%d'; nstat -az TcpExtListenOverflows TcpExtListenDrops", port)
	case correlate.LateRead:
		return fmt.Sprintf("ss -tn 'sport = :%d'  # Recv-Q: bytes the app has not read yet", port)
	case correlate.SoftirqDelay:
		return "cat /proc/net/softnet_stat; grep NET_RX /proc/softirqs"
	case correlate.CPUContention:
		return fmt.Sprintf("cat /proc/pressure/cpu; ps -eLo pid,tid,psr,pcpu,comm --sort=-pcpu | head; grep Cpus_allowed_list /proc/%d/status", r.PID)
	case correlate.CFSThrottled:
		if e, ok := f.Lookup("cgroup"); ok {
			if isV2(e.Text) {
				return fmt.Sprintf("cat %s/cpu.stat %s/cpu.max", e.Text, e.Text)
			}
			return fmt.Sprintf("cat %s/cpu.stat %s/cpu.cfs_quota_us %s/cpu.cfs_period_us", e.Text, e.Text, e.Text)
		}
		return fmt.Sprintf("cat /proc/%d/cgroup  # then cpu.stat and cpu.max (v1: cpu.cfs_quota_us) of its cgroup and parents", r.PID)
	case correlate.GCPause:
		return fmt.Sprintf("tr '\\0' '\\n' < /proc/%d/environ | grep -E '^GO(GC|MEMLIMIT|DEBUG)='  # and GODEBUG=gctrace=1 logs each GC", r.PID)
	case correlate.Serialization:
		return fmt.Sprintf("perf top -p %d  # encoding/json or protobuf functions on top", r.PID)
	case correlate.PeerZeroWindow:
		return fmt.Sprintf("tcpdump -ni any 'tcp dst port %d and tcp[14:2] = 0'  # the client advertising a zero window", port)
	case correlate.Retransmits:
		return fmt.Sprintf("nstat -az TcpRetransSegs TcpExtTCPTimeouts TcpExtTCPLostRetransmit; ss -tni 'sport = :%d'", port)
	case correlate.NagleDelayedAck:
		return fmt.Sprintf("tcpdump -ni any -ttt 'tcp src port %d'  # an answer's last small segment leaves only after the client's ACK, tens of ms later", port)
	case correlate.OwnReceiveWindow:
		return fmt.Sprintf("nstat -az TcpExtTCPToZeroWindowAdv; ss -tnm 'sport = :%d'", port)
	case correlate.PMTUBlackhole:
		return fmt.Sprintf("ip route get %s; nstat -az TcpExtTCPMTUPFail", r.Conn.Peer.Addr())
	case correlate.TLSFullHandshake:
		return fmt.Sprintf("openssl s_client -connect %s -tls1_2 -reconnect </dev/null 2>/dev/null | grep -cE '^Reused'  # 0: the server resumes no session", r.Conn.Local)
	case correlate.SlowHandler:
		return fmt.Sprintf("perf top -p %d  # on-CPU; for waits, the service's own profiler or traces", r.PID)
	case correlate.NewConnectionPerRequest:
		return fmt.Sprintf("ss -tn state time-wait dst %s  # many: a connection per call", r.Conn.Peer)
	}
	return ""
}

// isV2 tells a cgroup v2 directory (it has cpu.max).
func isV2(dir string) bool {
	_, err := os.Stat(dir + "/cpu.max")
	return err == nil
}

// Recent sums the findings of the last few minutes, a table per minute.
// Add and Top may be called concurrently.
type Recent struct {
	mu      sync.Mutex
	minutes [RecentMinutes]struct {
		minute int64
		t      Table
	}
}

// RecentMinutes is how far back Recent looks.
const RecentMinutes = 5

// Add counts r's findings in the current minute.
func (rc *Recent) Add(r *correlate.Request) {
	if len(r.Findings) == 0 {
		return
	}
	rc.addAt(r, time.Now())
}

func (rc *Recent) addAt(r *correlate.Request, now time.Time) {
	m := now.Unix() / 60
	rc.mu.Lock()
	defer rc.mu.Unlock()
	b := &rc.minutes[m%RecentMinutes]
	if b.minute != m {
		b.minute, b.t = m, Table{}
	}
	b.t.Add(r)
}

// Top are the n rows that cost most over the last RecentMinutes.
func (rc *Recent) Top(n int) []Row { return rc.topAt(n, time.Now()) }

func (rc *Recent) topAt(n int, now time.Time) []Row {
	m := now.Unix() / 60
	var all Table
	rc.mu.Lock()
	for i := range rc.minutes {
		if b := &rc.minutes[i]; b.minute > m-RecentMinutes && b.minute <= m {
			all.merge(&b.t)
		}
	}
	rc.mu.Unlock()
	rows := all.Rows()
	if len(rows) > n {
		rows = rows[:n]
	}
	return rows
}
