package goprobe

import (
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/tracerd/tracerd/internal/goinspect"
	"github.com/tracerd/tracerd/internal/loader"
)

// DefaultProbeCostNs stands in for the calibrated cost until calibration
// ends, or when it fails. A span gains less than its probes cost the
// process (≈ 0.7 µs a hit for an emulated instruction, ≈ 10 µs for a
// RET, single-stepped: BENCHMARKS.md): only what lies between the two
// clock reads, the rest of the entry's trap and the exit's trap up to
// its read (a RET's single step comes after it, so both kinds of exit add
// the same). Calibration measures that at ≈ 1.3–2 µs on our development
// VM (docs/go.md, "Probe cost"; the entry_plus_exit_ns that BENCHMARKS.md
// and tracerd's log show).
const DefaultProbeCostNs = 1_500

type calibration struct {
	want    int
	samples []int64
	links   []link.Link
}

// calibrationTarget has a frame and a stack check like real functions, so
// its entry probe lands on the same kind of instruction, and a worker
// whose return is tested, so its calls end at an emulated instruction as
// the serialization functions' do (calibrationEnds).
//
//go:noinline
func calibrationTarget(n int) int {
	var buf [64]byte
	buf[n%64] = byte(n)
	if calibrationLeaf(buf[:]) != len(buf) {
		panic("calibrationLeaf")
	}
	return n
}

var calibrationEnds = []goinspect.ExitPlan{{After: []string{"github.com/tracerd/tracerd/internal/goprobe.calibrationLeaf"}}}

//go:noinline
func calibrationLeaf(b []byte) int { return len(b) }

// StartCalibration probes tracerd's own calibrationTarget and calls it n
// times; each call's measured duration is what probes add to a span (the
// function itself takes nanoseconds). Samples arrive through
// Observe; the median becomes the cost subtracted from spans.
func (m *Manager) StartCalibration(n int) error {
	return withTightGC(func() error { return m.startCalibration(n) })
}

func (m *Manager) startCalibration(n int) error {
	self := uint32(os.Getpid())
	bin, err := goinspect.OpenPreferTable("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("inspecting tracerd itself: %w", err)
	}
	defer bin.Close()
	f, err := bin.Func("github.com/tracerd/tracerd/internal/goprobe.calibrationTarget")
	if err != nil {
		return err
	}
	tg := target{symbol: "calibrationTarget", fn: loader.TracerdGoFuncGO_CALIBRATE,
		entry: loader.TracerdProgGoEntry, returns: loader.TracerdProgGoReturn, ends: calibrationEnds}
	exits := m.endsOf(self, bin, f, tg)
	if err := m.tracer.SetGoProc(self, procOffsets(bin)); err != nil {
		return err
	}
	bin.Close()
	debug.FreeOSMemory() // tracerd's own symbol table, parsed for one function
	ex, err := link.OpenExecutable("/proc/self/exe")
	if err != nil {
		return err
	}
	ps, err := probesOf(f, tg, exits)
	ps = carryGoid(ps, bin.Offsets.GGoid)
	var ls []link.Link
	if err == nil {
		ls, err = m.attachProbes(ex, ps, self)
	}
	c := &calibration{want: n, links: ls}
	if err != nil {
		c.close(m)
		return err
	}
	m.mu.Lock()
	m.calib = c
	m.mu.Unlock()
	go func() {
		for i := 0; i < n; i++ {
			calibrationTarget(i)
			time.Sleep(100 * time.Microsecond) // let the ring buffer keep up
		}
	}()
	return nil
}

func (c *calibration) close(m *Manager) {
	for _, l := range c.links {
		_ = l.Close()
	}
	_ = m.tracer.DeleteGoProc(uint32(os.Getpid()))
}

// calibrationSample takes one calibration span (from the reading
// goroutine, through Observe).
func (m *Manager) calibrationSample(ev *loader.GoEvent) {
	m.mu.Lock()
	c := m.calib
	if c == nil {
		m.mu.Unlock()
		return
	}
	c.samples = append(c.samples, int64(ev.End-ev.Start))
	if len(c.samples) < c.want {
		m.mu.Unlock()
		return
	}
	slices.Sort(c.samples)
	m.cost = c.samples[len(c.samples)/2]
	m.calib = nil
	for pid, p := range m.procs {
		p.probes.ProbeCostNs = m.cost
		m.tell(Update{PID: pid, Probes: p.probes, OK: true})
	}
	cost := m.cost
	m.mu.Unlock()
	c.close(m)
	m.log.Info("uprobe cost calibrated: subtracted from Go spans", "entry_plus_exit_ns", cost,
		"p10_ns", c.samples[len(c.samples)/10], "p90_ns", c.samples[len(c.samples)*9/10])
}
