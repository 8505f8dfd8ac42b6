package findings

import (
	"github.com/tracerd/tracerd/internal/correlate"
)

// evidence appends a finding's evidence: the request's own numbers
// first, then what the last host sample showed (when it has the
// process; else the process is watched from the next sample on).
func evidence(ev []correlate.Evidence, cd candidate, r *correlate.Request, snap *Snapshot, s *Sampler) []correlate.Evidence {
	ps, t := r.Phases, r.TCP
	phaseEv := func(p correlate.Phase) {
		if v, ok := ps.Get(p); ok {
			ev = append(ev, correlate.IntEvidence(p.String()+"_ns", v))
		}
	}
	tcpEv := func() {
		if t.Valid {
			ev = append(ev, correlate.IntEvidence("srtt_us", int64(t.SrttUs)), correlate.IntEvidence("snd_cwnd", int64(t.SndCwnd)))
		}
	}
	var proc *Proc
	if snap != nil {
		proc = snap.Procs[r.PID]
	}
	// needProc returns the process's context, asking for it when the
	// sample does not have it yet.
	needProc := func() *Proc {
		if proc == nil && s != nil {
			s.WatchProc(r.PID)
		}
		return proc
	}
	age := func() {
		ev = append(ev, correlate.IntEvidence("context_age_ms", (r.EndUnixNano-snap.At.UnixNano())/1e6))
	}
	var net *NetRates
	if proc != nil {
		net = snap.Net[proc.NetNS]
	}

	switch cd.code {
	case correlate.AcceptBacklog:
		phaseEv(correlate.AcceptQueue)
		key := ListenerKey{r.PID, r.Conn.Local.Port()}
		li, haveL := ListenerInfo{}, false
		if snap != nil {
			li, haveL = snap.Listeners[key]
		}
		if !haveL && s != nil {
			s.WatchListener(key.PID, key.Port)
		}
		if haveL {
			ev = append(ev, correlate.IntEvidence("listener_queue", li.Queue))
			if li.Limit > 0 {
				ev = append(ev, correlate.IntEvidence("listener_backlog_limit", li.Limit))
			}
		}
		if proc != nil && proc.NetNS == snap.OwnNetNS && snap.Somaxconn > 0 {
			ev = append(ev, correlate.IntEvidence("somaxconn", snap.Somaxconn))
		}
		if net != nil {
			ev = append(ev, correlate.IntEvidence("listen_overflows_per_s", net.ListenOverflows),
				correlate.IntEvidence("listen_drops_per_s", net.ListenDrops),
				correlate.IntEvidence("syncookies_sent_per_s", net.SyncookiesSent))
		}
		if haveL || net != nil {
			age()
		}
	case correlate.LateRead:
		phaseEv(correlate.RecvQueue)
	case correlate.SoftirqDelay:
		phaseEv(correlate.Softirq)
		if snap != nil && snap.HasSoftnet {
			ev = append(ev, correlate.IntEvidence("softnet_time_squeeze_per_s", snap.SoftnetSqueez),
				correlate.IntEvidence("softnet_dropped_per_s", snap.SoftnetDrops))
			age()
		}
	case correlate.CPUContention:
		phaseEv(correlate.Runqueue)
		phaseEv(correlate.App)
		host := false
		if snap != nil && snap.HasCPU {
			ev = append(ev, correlate.FloatEvidence("host_cpu_busy_pct", round1(snap.CPUBusyPct)))
			host = true
		}
		if snap != nil && snap.HasPSI {
			ev = append(ev, correlate.FloatEvidence("cpu_pressure_some_avg10", snap.PSISomeAvg10))
			host = true
		}
		if p := needProc(); p != nil && p.CPUsAllowed > 0 {
			ev = append(ev, correlate.IntEvidence("cpus_allowed", int64(p.CPUsAllowed)))
		}
		if host {
			age()
		}
	case correlate.CFSThrottled:
		phaseEv(correlate.CFSThrottle)
		phaseEv(correlate.App)
		if p := needProc(); p != nil {
			if q := p.Quota; q != nil {
				ev = append(ev, correlate.TextEvidence("cgroup", q.Dir),
					correlate.IntEvidence("cpu_quota_us", q.QuotaUs), correlate.IntEvidence("cpu_period_us", q.PeriodUs),
					correlate.FloatEvidence("quota_cpus", round1(float64(q.QuotaUs)/float64(q.PeriodUs))))
				if q.HasRates {
					ev = append(ev, correlate.IntEvidence("cgroup_throttled_ns_per_s", q.ThrottledNsPerS),
						correlate.IntEvidence("cgroup_nr_throttled_per_s", q.NrThrottledPerS),
						correlate.IntEvidence("cgroup_nr_periods_per_s", q.NrPeriodsPerS))
				}
			}
			if p.HasEnv && p.Env.GOMAXPROCS != "" {
				ev = append(ev, correlate.TextEvidence("env_GOMAXPROCS", p.Env.GOMAXPROCS))
			}
			if p.CPUsAllowed > 0 {
				ev = append(ev, correlate.IntEvidence("cpus_allowed", int64(p.CPUsAllowed)))
			}
			age()
		}
	case correlate.GCPause:
		phaseEv(correlate.GCSTW)
		var n, longest int64
		for _, g := range r.Spans {
			if isGCSpan(g.Name) {
				n++
				longest = max(longest, g.DurationNs)
			}
		}
		ev = append(ev, correlate.IntEvidence("pauses", n), correlate.IntEvidence("longest_pause_ns", longest))
		if p := needProc(); p != nil && p.HasEnv {
			ev = append(ev, correlate.TextEvidence("env_GOGC", orUnset(p.Env.GOGC)), correlate.TextEvidence("env_GOMEMLIMIT", orUnset(p.Env.GOMEMLIMIT)))
		}
	case correlate.Serialization:
		phaseEv(correlate.Serialize)
		var n, longest int64
		name := ""
		for _, c := range r.Spans {
			if isSerializationSpan(c.Name) {
				n++
				if c.DurationNs > longest {
					longest, name = c.DurationNs, c.Name
				}
			}
		}
		ev = append(ev, correlate.IntEvidence("calls", n))
		if name != "" {
			ev = append(ev, correlate.TextEvidence("longest_call", name), correlate.IntEvidence("longest_call_ns", longest))
		}
		if ser, _ := ps.Get(correlate.Serialize); ser > cd.lost {
			ev = append(ev, correlate.IntEvidence("gc_in_calls_ns", ser-cd.lost))
		}
	case correlate.PeerZeroWindow:
		phaseEv(correlate.SendQueue)
		ev = append(ev, correlate.IntEvidence("zero_window", int64(t.ZeroWindow)))
		tcpEv()
	case correlate.Retransmits:
		ev = append(ev, correlate.IntEvidence("retransmits", int64(t.Retransmits)))
		phaseEv(correlate.SendQueue)
		phaseEv(correlate.AckWait)
		tcpEv()
		if needProc() != nil && net != nil {
			ev = append(ev, correlate.IntEvidence("netns_retrans_segs_per_s", net.RetransSegs), correlate.IntEvidence("netns_tcp_timeouts_per_s", net.Timeouts))
			age()
		}
	case correlate.NagleDelayedAck:
		phaseEv(correlate.SendQueue)
		tcpEv()
		ev = append(ev, correlate.IntEvidence("nagle", 1))
	case correlate.TLSFullHandshake:
		phaseEv(correlate.TLSHandshake)
		tcpEv()
		ev = append(ev, correlate.TextEvidence("tls_version", "1.2"), correlate.IntEvidence("previous_handshake_age_ms", cd.aux/1e6))
	case correlate.SlowHandler:
		phaseEv(correlate.App)
		ev = append(ev, correlate.IntEvidence("first_write_ns", r.FirstWriteNs))
		if p := needProc(); p != nil {
			if share, ok := p.CPUShare(); ok {
				ev = append(ev, correlate.FloatEvidence("process_cpu_pct", round1(p.CPUPct)), correlate.FloatEvidence("process_cpu_share_pct", round1(100*share)))
				age()
			}
		}
	}
	return ev
}

func orUnset(s string) string {
	if s == "" {
		return "unset"
	}
	return s
}

// round1 keeps one decimal.
func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }
