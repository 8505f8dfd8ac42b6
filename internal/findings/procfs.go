package findings

import (
	"bytes"
	"strconv"
	"strings"
)

// Parsers of the /proc and cgroup files the sampler reads. Each takes
// the file's bytes and never fails: what does not parse is absent.

// netCounters reads the TcpExt and Tcp counters tracerd uses from
// /proc/PID/net/netstat or /proc/PID/net/snmp (pairs of lines: names,
// then values, with the same prefix).
func netCounters(data []byte, out map[string]int64) {
	lines := bytes.Split(data, []byte("\n"))
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := bytes.Fields(lines[i]), bytes.Fields(lines[i+1])
		if len(names) == 0 || len(names) != len(values) || !bytes.Equal(names[0], values[0]) {
			continue
		}
		prefix := strings.TrimSuffix(string(names[0]), ":")
		for j := 1; j < len(names); j++ {
			key := prefix + string(names[j])
			if _, want := out[key]; !want {
				continue
			}
			if v, err := strconv.ParseInt(string(values[j]), 10, 64); err == nil {
				out[key] = v
			}
		}
	}
}

// hostCPU reads the busy and total jiffies of /proc/stat's "cpu" line
// (busy: all but idle and iowait).
func hostCPU(data []byte) (busy, total int64, ok bool) {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return 0, 0, false
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return 0, 0, false
		}
		// user nice system idle iowait irq softirq steal guest guest_nice:
		// guest time is already in user and nice.
		if i >= 8 {
			break
		}
		total += n
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return busy, total, true
}

// psiSomeAvg10 reads "some avg10=" of /proc/pressure/cpu.
func psiSomeAvg10(data []byte) (float64, bool) {
	for line := range bytes.Lines(data) {
		f := bytes.Fields(line)
		if len(f) < 2 || string(f[0]) != "some" {
			continue
		}
		if v, ok := bytes.CutPrefix(f[1], []byte("avg10=")); ok {
			x, err := strconv.ParseFloat(string(v), 64)
			return x, err == nil
		}
	}
	return 0, false
}

// softnet sums /proc/net/softnet_stat over the CPUs: packets dropped
// (column 2) and time squeezes (column 3: NET_RX ran out of budget with
// packets left).
func softnet(data []byte) (dropped, squeezed int64, ok bool) {
	for line := range bytes.Lines(data) {
		f := bytes.Fields(line)
		if len(f) < 3 {
			continue
		}
		d, err1 := strconv.ParseUint(string(f[1]), 16, 32)
		s, err2 := strconv.ParseUint(string(f[2]), 16, 32)
		if err1 != nil || err2 != nil {
			return 0, 0, false
		}
		dropped += int64(d)
		squeezed += int64(s)
		ok = true
	}
	return dropped, squeezed, ok
}

// goEnv is what the environment says of a Go program's runtime.
type goEnv struct {
	GOGC, GOMEMLIMIT, GOMAXPROCS string // "" when not set
}

// maxEnvValue bounds a variable's value taken into evidence: the
// traced process writes its environment, and a value this long is no
// setting of the runtime.
const maxEnvValue = 32

// readGoEnv picks the Go runtime's variables out of /proc/PID/environ;
// nothing else of it is kept (it may hold secrets).
func readGoEnv(data []byte) goEnv {
	var e goEnv
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := bytes.Cut(kv, []byte("="))
		if !ok || len(v) > maxEnvValue {
			continue
		}
		switch string(k) {
		case "GOGC":
			e.GOGC = string(v)
		case "GOMEMLIMIT":
			e.GOMEMLIMIT = string(v)
		case "GOMAXPROCS":
			e.GOMAXPROCS = string(v)
		}
	}
	return e
}

// cpusAllowed counts the CPUs of /proc/PID/status's Cpus_allowed_list
// ("0-3,6"); 0 when absent.
func cpusAllowed(status []byte) int {
	for line := range bytes.Lines(status) {
		v, ok := bytes.CutPrefix(line, []byte("Cpus_allowed_list:"))
		if !ok {
			continue
		}
		n := 0
		for _, r := range strings.Split(strings.TrimSpace(string(v)), ",") {
			lo, hi, isRange := strings.Cut(r, "-")
			a, err := strconv.Atoi(lo)
			if err != nil {
				return 0
			}
			b := a
			if isRange {
				if b, err = strconv.Atoi(hi); err != nil || b < a {
					return 0
				}
			}
			n += b - a + 1
		}
		return n
	}
	return 0
}

// cgroupPaths reads /proc/PID/cgroup: the cgroup v2 path ("0::/x") and
// that of the v1 hierarchy holding the cpu controller.
func cgroupPaths(data []byte) (v2, v1cpu string) {
	for line := range bytes.Lines(data) {
		parts := strings.SplitN(strings.TrimRight(string(line), "\n"), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "cpu" {
				v1cpu = parts[2]
			}
		}
	}
	return v2, v1cpu
}

// cpuMax reads cgroup v2's cpu.max ("max 100000" or "20000 100000");
// ok is false without a quota.
func cpuMax(data []byte) (quotaUs, periodUs int64, ok bool) {
	f := bytes.Fields(data)
	if len(f) != 2 || string(f[0]) == "max" {
		return 0, 0, false
	}
	q, err1 := strconv.ParseInt(string(f[0]), 10, 64)
	p, err2 := strconv.ParseInt(string(f[1]), 10, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0, 0, false
	}
	return q, p, true
}

// cpuStat reads a cgroup's cpu.stat: periods, throttled periods and
// throttled time in ns (v2's throttled_usec, v1's throttled_time).
func cpuStat(data []byte) (periods, throttled, throttledNs int64, ok bool) {
	for line := range bytes.Lines(data) {
		f := bytes.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseInt(string(f[1]), 10, 64)
		if err != nil {
			continue
		}
		switch string(f[0]) {
		case "nr_periods":
			periods = v
		case "nr_throttled":
			throttled = v
		case "throttled_usec":
			throttledNs, ok = v*1000, true
		case "throttled_time":
			throttledNs, ok = v, true
		}
	}
	return periods, throttled, throttledNs, ok
}

// listenQueue finds, in /proc/PID/net/tcp or tcp6, the accept queue
// length of the socket listening on port (rx_queue of a LISTEN line);
// the largest when several listen on it.
func listenQueue(data []byte, port uint16) (int64, bool) {
	var best int64
	found := false
	for line := range bytes.Lines(data) {
		// sl local_address rem_address st tx_queue:rx_queue ...
		f := bytes.Fields(line)
		if len(f) < 5 || string(f[3]) != "0A" {
			continue
		}
		_, p, ok := bytes.Cut(f[1], []byte(":"))
		if !ok {
			continue
		}
		lp, err := strconv.ParseUint(string(p), 16, 16)
		if err != nil || uint16(lp) != port {
			continue
		}
		_, rx, ok := bytes.Cut(f[4], []byte(":"))
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(string(rx), 16, 64)
		if err != nil {
			continue
		}
		best, found = max(best, n), true
	}
	return best, found
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on
// every Linux architecture tracerd runs on).
const clockTicks = 100

// procCPUTicks reads utime + stime (clock ticks) from /proc/PID/stat.
func procCPUTicks(stat []byte) (int64, bool) {
	// The command may hold spaces and parentheses: fields start after
	// the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(stat[i+1:])
	// f[0] is field 3 (state): utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	s, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return u + s, true
}
