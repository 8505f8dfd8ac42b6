// Package targets is tracerd's selection of what to trace: processes,
// local ports, process names and cgroups. The BPF filter applies it in
// the kernel at accept() (internal/loader fills the filter's maps from a
// Targets); everything user space does with a selection is here:
// validating and describing it, matching requests, telling whether one
// selection covers another, and finding the running processes it takes.
package targets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Targets selects what is traced. Kinds combine with AND, values of one
// kind with OR; empty means every accepted TCP connection on the host.
type Targets struct {
	PIDs    []uint32 `yaml:"pids" json:"pids,omitempty"`
	Ports   []uint16 `yaml:"ports" json:"ports,omitempty"`     // local port of the listening socket
	Comms   []string `yaml:"comms" json:"comms,omitempty"`     // process names (the kernel keeps CommLen bytes)
	Cgroups []string `yaml:"cgroups" json:"cgroups,omitempty"` // cgroup v1 or v2 directories; descendants are included
}

// CommLen is how much of a process name the kernel keeps (TASK_COMM_LEN
// less its terminating NUL): names are compared on that much.
const CommLen = 15

// Comm is name as the kernel keeps it.
func Comm(name string) string { return name[:min(len(name), CommLen)] }

// Empty reports whether no selection was made.
func (t Targets) Empty() bool {
	return len(t.PIDs) == 0 && len(t.Ports) == 0 && len(t.Comms) == 0 && len(t.Cgroups) == 0
}

// Validate checks targets before anything is loaded, so that a typo is a
// clear error rather than a tracer that sees nothing.
func (t Targets) Validate() error {
	for _, pid := range t.PIDs {
		if pid == 0 {
			return errors.New("--pid 0 is not a process")
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return fmt.Errorf("--pid %d: no such process (check `ps -p %d`)", pid, pid)
		}
	}
	for _, p := range t.Ports {
		if p == 0 {
			return errors.New("--port 0 is not a port")
		}
	}
	for _, c := range t.Comms {
		if c == "" {
			return errors.New("--comm needs a process name")
		}
	}
	_, err := ResolveCgroups(t.Cgroups)
	return err
}

// kind is one kind of selection, its values as text.
type kind struct {
	name   string
	values []string
	// covers says whether a connection selected by want is selected
	// by have too.
	covers func(have, want string) bool
}

func (t Targets) kinds() [4]kind {
	equal := func(have, want string) bool { return have == want }
	sameComm := func(have, want string) bool { return Comm(have) == Comm(want) }
	below := func(have, want string) bool {
		have, want = filepath.Clean(have), filepath.Clean(want)
		return have == want || strings.HasPrefix(want, strings.TrimSuffix(have, "/")+"/")
	}
	return [4]kind{
		{"pid", texts(t.PIDs), equal},
		{"port", texts(t.Ports), equal},
		{"comm", t.Comms, sameComm},
		{"cgroup", t.Cgroups, below},
	}
}

func texts[T uint16 | uint32](v []T) []string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i] = strconv.FormatUint(uint64(x), 10)
	}
	return out
}

// String describes the selection for people: "port [80 443] and comm [nginx]".
func (t Targets) String() string {
	if t.Empty() {
		return "every accepted TCP connection on this host"
	}
	var parts []string
	for _, k := range t.kinds() {
		if len(k.values) > 0 {
			parts = append(parts, fmt.Sprintf("%s %v", k.name, k.values))
		}
	}
	return strings.Join(parts, " and ")
}

// Covers says whether every connection want selects is selected by t
// too. It looks at the selections alone, so it is conservative: each
// kind t restricts must be restricted by want to values t takes (a
// cgroup below one of t's is taken too).
func (t Targets) Covers(want Targets) bool {
	have, asked := t.kinds(), want.kinds()
	for i, k := range have {
		if len(k.values) == 0 {
			continue
		}
		if len(asked[i].values) == 0 {
			return false
		}
		for _, w := range asked[i].values {
			if !slices.ContainsFunc(k.values, func(h string) bool { return k.covers(h, w) }) {
				return false
			}
		}
	}
	return true
}

// Change is one value added to or removed from a selection.
type Change struct {
	Kind, Value string
	Added       bool
}

// Diff lists what changes from old to cur, kind by kind: the values
// added, then the values removed.
func Diff(old, cur Targets) []Change {
	var out []Change
	was, is := old.kinds(), cur.kinds()
	for i := range is {
		for _, v := range is[i].values {
			if !slices.Contains(was[i].values, v) {
				out = append(out, Change{Kind: is[i].name, Value: v, Added: true})
			}
		}
		for _, v := range was[i].values {
			if !slices.Contains(is[i].values, v) {
				out = append(out, Change{Kind: is[i].name, Value: v})
			}
		}
	}
	return out
}
