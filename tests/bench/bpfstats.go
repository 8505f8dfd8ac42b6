package main

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cilium/ebpf"

	"github.com/tracerd/tracerd/internal/loader"
)

// progStat is one BPF program's cumulative kernel statistics
// (kernel.bpf_stats_enabled must be 1 for Runtime and RunCount to move).
type progStat struct {
	ID       uint32
	Name     string // tracerd's program name (loader.TracerdProg*)
	Hook     string // where it is attached, from loader.Hooks
	Type     string // BPF program type
	Runtime  time.Duration
	RunCount uint64
	Misses   uint64 // runs skipped by the kernel (recursion)
	Uprobe   bool   // a uprobe program (kprobe type: this kernel has no kprobes)
	Linked   bool   // attached by a link when the round began (tracerd loads its scheduler programs before it needs them)
}

// progWatch holds tracerd's programs open for the length of a round so
// that their statistics can be read before and after the load.
type progWatch struct {
	progs map[uint32]*ebpf.Program
	meta  map[uint32]progStat
}

// watchPrograms finds the programs loaded by the tracerd process pid
// (the prog_id of its program and link file descriptors) and checks
// each against the names tracerd's loader declares.
func watchPrograms(pid int) (*progWatch, error) {
	ids, err := bpfProgIDs(pid)
	if err != nil {
		return nil, fmt.Errorf("listing tracerd's BPF programs: %w", err)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("tracerd (pid %d) holds no BPF program", pid)
	}
	linked, err := linkedProgIDs(pid)
	if err != nil {
		return nil, fmt.Errorf("listing tracerd's BPF links: %w", err)
	}
	w := &progWatch{progs: map[uint32]*ebpf.Program{}, meta: map[uint32]progStat{}}
	for _, id := range ids {
		p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("opening BPF program %d: %w", id, err)
		}
		info, err := p.Info()
		if err != nil {
			p.Close()
			w.Close()
			return nil, fmt.Errorf("BPF program %d info: %w", id, err)
		}
		uprobe := info.Type == ebpf.Kprobe
		name, hook := tracerdProgram(fullName(info))
		switch {
		case name != "":
		case uprobe:
			name, hook = fullName(info), "uprobe"
		case info.Type == ebpf.Tracing && censusIndex(fullName(info)) >= 0:
			// A hook this loader no longer has (another build of
			// tracerd, e.g. the one before a change): its programs are
			// named after their tracepoint.
			name, hook = fullName(info), "tp_btf/"+fullName(info)
		default:
			// Not one of the loader's hooks: keep it, it is tracerd's
			// cost all the same.
			name, hook = fullName(info), "?"
		}
		w.progs[id] = p
		w.meta[id] = progStat{ID: id, Name: name, Hook: hook, Type: info.Type.String(), Uprobe: uprobe, Linked: slices.Contains(linked, id)}
	}
	return w, nil
}

// fullName is the program's C function name from its BTF: the kernel
// keeps only 15 bytes of the name (sys_exit_accept4 and sys_exit_accept
// both read "sys_exit_accept").
func fullName(info *ebpf.ProgramInfo) string {
	fis, err := info.FuncInfos()
	if err == nil {
		for _, fi := range fis {
			if fi.Offset == 0 && fi.Func != nil && strings.HasPrefix(fi.Func.Name, info.Name) {
				return fi.Func.Name
			}
		}
	}
	return info.Name
}

// tracerdProgram maps a program name to the loader's program name and
// attach point; a name still truncated matches only when unambiguous.
func tracerdProgram(pname string) (name, hook string) {
	type prog struct{ name, hook string }
	var match []prog
	for _, h := range loader.Hooks {
		for _, w := range h.Ways {
			for _, a := range w.Progs {
				if a.Program == pname {
					return a.Program, w.Name()
				}
				if len(pname) == 15 && strings.HasPrefix(a.Program, pname) {
					match = append(match, prog{a.Program, w.Name()})
				}
			}
		}
	}
	if len(match) == 1 {
		return match[0].name, match[0].hook
	}
	return "", ""
}

// watchIDs watches the benchmark's own programs (id → attach point):
// the floor's, named "floor" at their attach point.
func watchIDs(ids map[uint32]string) (*progWatch, error) {
	w := &progWatch{progs: map[uint32]*ebpf.Program{}, meta: map[uint32]progStat{}}
	for id, point := range ids {
		p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("opening BPF program %d: %w", id, err)
		}
		w.progs[id] = p
		w.meta[id] = progStat{ID: id, Name: "empty at " + point, Hook: point, Type: p.Type().String()}
	}
	return w, nil
}

func (w *progWatch) Close() {
	for _, p := range w.progs {
		p.Close()
	}
}

// Missing lists the loader's hooks that tracerd did not load.
func (w *progWatch) Missing() []string {
	have := map[string]bool{}
	for _, m := range w.meta {
		have[m.Name] = true
	}
	var miss []string
	for _, h := range loader.Hooks {
		found := false
		for _, w := range h.Ways {
			for _, a := range w.Progs {
				found = found || have[a.Program]
			}
		}
		if !found {
			miss = append(miss, h.Name)
		}
	}
	return miss
}

// Snapshot reads every watched program's statistics.
func (w *progWatch) Snapshot() (map[uint32]progStat, error) {
	out := make(map[uint32]progStat, len(w.progs))
	for id, p := range w.progs {
		s, err := p.Stats()
		if err != nil {
			return nil, fmt.Errorf("BPF program %d stats: %w", id, err)
		}
		m := w.meta[id]
		m.Runtime, m.RunCount, m.Misses = s.Runtime, s.RunCount, s.RecursionMisses
		out[id] = m
	}
	return out, nil
}

// progDeltas is after − before, one entry per program, sorted by run time.
func progDeltas(before, after map[uint32]progStat) []progStat {
	var out []progStat
	for id, a := range after {
		b := before[id]
		a.Runtime -= b.Runtime
		a.RunCount -= b.RunCount
		a.Misses -= b.Misses
		out = append(out, a)
	}
	sortProgs(out)
	return out
}

func sortProgs(ps []progStat) {
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Runtime != ps[j].Runtime {
			return ps[i].Runtime > ps[j].Runtime
		}
		return ps[i].Name < ps[j].Name
	})
}

// sumProgs adds up programs by name over several rounds.
func sumProgs(rounds ...[]progStat) []progStat {
	by := map[string]*progStat{}
	for _, r := range rounds {
		for _, p := range r {
			s, ok := by[p.Name]
			if !ok {
				c := p
				c.Runtime, c.RunCount, c.Misses = 0, 0, 0
				s = &c
				by[p.Name] = s
			}
			s.Runtime += p.Runtime
			s.RunCount += p.RunCount
			s.Misses += p.Misses
		}
	}
	var out []progStat
	for _, s := range by {
		out = append(out, *s)
	}
	sortProgs(out)
	return out
}

// progTotals adds up the kernel engine's programs (uprobes are apart).
func progTotals(ps []progStat) (rt time.Duration, runs, misses uint64) {
	for _, p := range ps {
		if p.Uprobe {
			continue
		}
		rt += p.Runtime
		runs += p.RunCount
		misses += p.Misses
	}
	return
}

// uprobeTotals adds up the uprobe programs.
func uprobeTotals(ps []progStat) (rt time.Duration, runs uint64) {
	for _, p := range ps {
		if p.Uprobe {
			rt += p.Runtime
			runs += p.RunCount
		}
	}
	return
}
