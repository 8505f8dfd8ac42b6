// Package privileges knows which capabilities tracing needs and says
// which are missing. The set was measured on Linux 6.18 (docs/service.md,
// "Least privilege"); deploy/tracerd.service grants it.
package privileges

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Capability numbers (linux/capability.h).
const (
	capDacOverride   = 1
	capDacReadSearch = 2
	capSysPtrace     = 19
	capSysAdmin      = 21
	capPerfmon       = 38
	capBPF           = 39
)

// need is one capability tracing needs.
type need struct {
	cap  uint
	name string
	why  string
	// also are capabilities that do instead (CAP_SYS_ADMIN passes the
	// kernel's bpf_capable() and perfmon_capable()).
	also []uint
	// notRoot: uid 0 does without (it owns tracefs).
	notRoot bool
	// goOnly: Go awareness needs it, the kernel engine does not.
	goOnly bool
}

var needs = []need{
	{cap: capBPF, name: "CAP_BPF", why: "load BPF programs and maps", also: []uint{capSysAdmin}},
	{cap: capPerfmon, name: "CAP_PERFMON", why: "attach to tracepoints, read kernel memory from BPF", also: []uint{capSysAdmin}},
	{cap: capDacReadSearch, name: "CAP_DAC_READ_SEARCH", why: "read tracepoint ids in tracefs, /sys/kernel/tracing is root's, mode 0700", also: []uint{capDacOverride}, notRoot: true},
	{cap: capSysAdmin, name: "CAP_SYS_ADMIN", why: "uprobes on Go processes: the kernel refuses uprobe perf events without it; --go=false or engine.go: false does without", goOnly: true},
	{cap: capSysPtrace, name: "CAP_SYS_PTRACE", why: "open /proc/PID/exe of traced processes of other users, for Go probes; --go=false or engine.go: false does without", goOnly: true},
}

// Missing lists the capabilities tracing needs that caps lacks, each
// with what it is for.
func Missing(caps uint64, euid int, goAware bool) []string {
	has := func(c uint) bool { return caps&(1<<c) != 0 }
	var missing []string
	for _, n := range needs {
		if n.goOnly && !goAware || n.notRoot && euid == 0 || has(n.cap) {
			continue
		}
		covered := false
		for _, c := range n.also {
			covered = covered || has(c)
		}
		if !covered {
			missing = append(missing, fmt.Sprintf("%s (%s)", n.name, n.why))
		}
	}
	return missing
}

// KernelEngine names the capabilities loading the kernel engine needs
// (Go awareness needs more: Missing), for advice when the kernel refused
// to load it.
func KernelEngine() string {
	var always, notRoot []string
	for _, n := range needs {
		switch {
		case n.goOnly:
		case n.notRoot:
			notRoot = append(notRoot, n.name)
		default:
			always = append(always, n.name)
		}
	}
	return fmt.Sprintf("%s (CAP_SYS_ADMIN covers them) and, when not uid 0, %s", strings.Join(always, " and "), strings.Join(notRoot, " and "))
}

// Effective reads CapEff of this process.
func Effective() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}

// Check fails early, naming each missing capability, when tracing
// cannot work as asked.
func Check(goAware bool) error {
	caps, err := Effective()
	if err != nil {
		return nil // cannot tell: let the load say what is wrong
	}
	missing := Missing(caps, os.Geteuid(), goAware)
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("not enough privileges to load BPF programs: run as root (sudo tracerd ...), or grant the missing capabilities (deploy/tracerd.service lists the set): missing %s", strings.Join(missing, ", "))
}
