package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime/stime in /proc/PID/stat and of /proc/stat
// (USER_HZ, 100 on every Linux/x86-64 build).
const userHZ = 100

const tick = time.Second / userHZ

// procCPU is a process's CPU time as the kernel accounts it.
type procCPU struct {
	Ticks time.Duration // utime+stime from /proc/PID/stat (10 ms resolution)
	Exec  time.Duration // sum of the threads' sum_exec_runtime (ns resolution)
}

func (a procCPU) sub(b procCPU) procCPU {
	return procCPU{Ticks: a.Ticks - b.Ticks, Exec: a.Exec - b.Exec}
}

// readProcCPU reads utime+stime of pid, and the sum over its live
// threads of /proc/PID/task/TID/schedstat's first field.
func readProcCPU(pid int) (procCPU, error) {
	var c procCPU
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return c, err
	}
	// comm may hold spaces and parentheses: fields start after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return c, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return c, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return c, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	c.Ticks = time.Duration(ut+st) * tick

	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil {
		return c, err
	}
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // thread exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err == nil {
			c.Exec += time.Duration(ns)
		}
	}
	return c, nil
}

// machineCPU is /proc/stat's aggregate "cpu" line.
type machineCPU struct {
	Busy, Total time.Duration
	IRQ         time.Duration // irq + softirq, part of Busy
}

func (a machineCPU) sub(b machineCPU) machineCPU {
	return machineCPU{Busy: a.Busy - b.Busy, Total: a.Total - b.Total, IRQ: a.IRQ - b.IRQ}
}

func readMachineCPU() (machineCPU, error) {
	var m machineCPU
	f, err := os.Open("/proc/stat")
	if err != nil {
		return m, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[0] != "cpu" {
			continue
		}
		// user nice system idle iowait irq softirq steal [guest guest_nice,
		// already included in user and nice].
		var total, idle, irq int64
		for i, v := range fields[1:] {
			if i >= 8 {
				break
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return m, fmt.Errorf("/proc/stat: %v", err)
			}
			total += n
			switch i {
			case 3, 4:
				idle += n
			case 5, 6:
				irq += n
			}
		}
		m.Total = time.Duration(total) * tick
		m.Busy = time.Duration(total-idle) * tick
		m.IRQ = time.Duration(irq) * tick
		return m, nil
	}
	return m, fmt.Errorf("/proc/stat: no cpu line")
}

// memKiB reads VmRSS and VmHWM of pid, in KiB.
func memKiB(pid int) (rss, hwm int64) {
	m := statusMem(pid)
	return m.RSS, m.HWM
}

// memUsage is a process's memory, in KiB.
type memUsage struct {
	RSS, HWM   int64 // VmRSS, VmHWM
	Anon, File int64 // RssAnon, RssFile: VmRSS's parts (RssShmem aside)
	// BPFMaps is the RSS of the process's mappings of BPF maps
	// (anon_inode:bpf-map: tracerd's ring buffer), part of RssFile. The
	// pages are the kernel's, all mapped at once (tracerd maps the ring
	// buffer's data area once).
	BPFMaps int64
}

// statusMem reads pid's memory from /proc/PID/status (-1 where
// unreadable; BPFMaps stays -1).
func statusMem(pid int) memUsage {
	m := memUsage{RSS: -1, HWM: -1, Anon: -1, File: -1, BPFMaps: -1}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				continue
			}
			switch f[0] {
			case "VmRSS:":
				m.RSS = v
			case "VmHWM:":
				m.HWM = v
			case "RssAnon:":
				m.Anon = v
			case "RssFile:":
				m.File = v
			}
		}
	}
	return m
}

// readMem is statusMem plus the RSS of BPF map mappings from smaps.
func readMem(pid int) memUsage {
	m := statusMem(pid)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return m
	}
	m.BPFMaps = 0
	inBPF := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			// A mapping's header: range perms offset dev inode [path].
			inBPF = len(f) >= 6 && f[5] == "anon_inode:bpf-map"
		case inBPF && len(f) >= 2 && f[0] == "Rss:":
			v, _ := strconv.ParseInt(f[1], 10, 64)
			m.BPFMaps += v
		}
	}
	return m
}

// bpfProgIDs lists the BPF programs whose file descriptors (program or
// link) pid holds, from /proc/PID/fdinfo's prog_id lines.
func bpfProgIDs(pid int) ([]uint32, error) { return fdinfoIDs(pid, "prog_id:", false) }

// linkedProgIDs lists the BPF programs attached by a link pid holds
// (loaded but not attached ones, such as tracerd's scheduler programs
// before a CPU quota is seen, are left out).
func linkedProgIDs(pid int) ([]uint32, error) { return fdinfoIDs(pid, "prog_id:", true) }

// fdinfoIDs lists the distinct non-zero values of field ("prog_id:",
// "map_id:") over pid's /proc/PID/fdinfo files (linksOnly: of BPF link
// file descriptors only, those with a link_id).
func fdinfoIDs(pid int, field string, linksOnly bool) ([]uint32, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	seen := map[uint32]bool{}
	var ids []uint32
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || linksOnly && !strings.Contains(string(b), "\nlink_id:") {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			v, ok := strings.CutPrefix(line, field)
			if !ok {
				continue
			}
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil || id == 0 || seen[uint32(id)] {
				continue
			}
			seen[uint32(id)] = true
			ids = append(ids, uint32(id))
		}
	}
	return ids, nil
}

// mapMemlockKiB is the memlock of BPF map id as pid's fdinfo shows it:
// the kernel memory the map uses (for a map without preallocation it
// grows with its entries), -1 when not found.
func mapMemlockKiB(pid int, id uint32) int64 {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	want := strconv.FormatUint(uint64(id), 10)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var memlock int64 = -1
		match := false
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "memlock:"); ok {
				memlock, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
			if v, ok := strings.CutPrefix(line, "map_id:"); ok && strings.TrimSpace(v) == want {
				match = true
			}
		}
		if match && memlock >= 0 {
			return memlock / 1024
		}
	}
	return -1
}

// noFileLimit is the soft RLIMIT_NOFILE of pid (/proc/PID/limits), -1
// when unreadable; "unlimited" reads as the largest int64.
func noFileLimit(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "Max open files")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return -1
		}
		if f[0] == "unlimited" {
			return 1<<63 - 1
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	return -1
}

const bpfStatsSysctl = "/proc/sys/kernel/bpf_stats_enabled"

func readSysctl(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

func writeSysctl(path, v string) error {
	return os.WriteFile(path, []byte(v+"\n"), 0o644)
}

// machineInfo describes where the benchmark ran.
type machineInfo struct {
	NProc     int
	Kernel    string
	CPUModel  string
	MemTotal  string
	GoVersion string
}

func readMachineInfo() machineInfo {
	var m machineInfo
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if kb, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64); err == nil {
					m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				}
			}
		}
	}
	return m
}

// irqWork is the machine's count of IRQ work interrupts (IWI in
// /proc/interrupts, all CPUs): a BPF ring buffer wake-up raises one.
func irqWork() int64 {
	b, err := os.ReadFile("/proc/interrupts")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "IWI:" {
			continue
		}
		var n int64
		for _, v := range f[1:] {
			c, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				break // the description
			}
			n += c
		}
		return n
	}
	return 0
}

// wakeups is the sum of pid's threads' voluntary context switches:
// how often tracerd went to sleep (and was woken).
func wakeups(pid int) int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	var n int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				c, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += c
			}
		}
	}
	return n
}
