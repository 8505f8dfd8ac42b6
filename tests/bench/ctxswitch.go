package main

// The untraced context-switch arm: two processes tracerd does not select
// bounce a byte through a pair of pipes, both pinned to one CPU, so that
// nearly every step is a context switch. The scheduler's tracepoints
// fire for them all the same; this measures what tracerd's programs
// there cost the rest of the host.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// pingPongEnv makes this binary a ping-pong child: "ping" or "pong",
// then ":CPU".
const pingPongEnv = "TRACERD_BENCH_PINGPONG"

// pingPongChild runs one side: read a byte on fd 3, write it on fd 4,
// forever (ping writes first). Blocking pipes, raw syscalls on one
// locked thread: each read that finds the pipe empty sleeps in the
// kernel, and the peer's write wakes it.
func pingPongChild(spec string) {
	mode, cpuStr, _ := strings.Cut(spec, ":")
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()
	if cpu, err := strconv.Atoi(cpuStr); err == nil {
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			fmt.Fprintln(os.Stderr, "pingpong: affinity:", err)
			os.Exit(1)
		}
	}
	b := []byte{0}
	if mode == "ping" {
		if _, err := unix.Write(4, b); err != nil {
			os.Exit(1)
		}
	}
	for {
		if n, err := unix.Read(3, b); n <= 0 || err != nil {
			os.Exit(0)
		}
		if _, err := unix.Write(4, b); err != nil {
			os.Exit(0)
		}
	}
}

// ctxResult is one round of the context-switch arm.
type ctxResult struct {
	arm
	Index    int
	Switches int64 // context switches on the machine (/proc/stat ctxt)
	Wall     time.Duration
	Machine  machineCPU
	Children time.Duration // the two processes' CPU (schedstat)
	Progs    []progStat    // tracerd's or the floor's programs (traced and floor arms)
}

func (x ctxResult) perSwitch(d time.Duration) float64 {
	if x.Switches <= 0 {
		return 0
	}
	return float64(d) / float64(x.Switches)
}

// readCtxt is the machine's context switches since boot.
func readCtxt() (int64, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ctxt "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/stat: no ctxt line")
}

// startPingPong starts the two children on cpu; stop kills them.
func startPingPong(cpu int) (stop func(), pids [2]int, err error) {
	var a, b [2]int // a: ping → pong, b: pong → ping
	if err := unix.Pipe2(a[:], unix.O_CLOEXEC); err != nil {
		return nil, pids, err
	}
	if err := unix.Pipe2(b[:], unix.O_CLOEXEC); err != nil {
		unix.Close(a[0])
		unix.Close(a[1])
		return nil, pids, err
	}
	files := func(fds ...int) []*os.File {
		var out []*os.File
		for _, fd := range fds {
			out = append(out, os.NewFile(uintptr(fd), "pipe"))
		}
		return out
	}
	all := files(a[0], a[1], b[0], b[1])
	defer func() {
		for _, f := range all {
			f.Close()
		}
	}()
	self, err := os.Executable()
	if err != nil {
		return nil, pids, err
	}
	var cmds []*exec.Cmd
	kill := func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	}
	for i, side := range []struct {
		mode   string
		rd, wr *os.File
	}{{"pong", all[0], all[3]}, {"ping", all[2], all[1]}} {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d", pingPongEnv, side.mode, cpu))
		cmd.ExtraFiles = []*os.File{side.rd, side.wr}
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = childAttr()
		if err := cmd.Start(); err != nil {
			kill()
			return nil, pids, fmt.Errorf("starting the ping-pong %s: %w", side.mode, err)
		}
		cmds = append(cmds, cmd)
		pids[i] = cmd.Process.Pid
	}
	return kill, pids, nil
}

// ctxRound runs the ping-pong for d with tracerd attached (traced arm),
// the floor's empty programs (floor arm) or nothing.
func (b *bench) ctxRound(ctx context.Context, a arm, idx int, d time.Duration, floorAt []attachPoint) (r ctxResult, err error) {
	r = ctxResult{arm: a, Index: idx}
	if _, err := waitQuiet(ctx, b.roundQuietWait); err != nil {
		return r, err
	}
	var stats func() (map[uint32]progStat, error)
	if a.Traced || a.Floor {
		restore, err := enableBPFStats()
		if err != nil {
			return r, err
		}
		defer restore()
	}
	switch {
	case a.Traced:
		tr, err := startTracer(b.tracerd, tracerdArgs(b.server.Port, b.dir, a.JSON), "")
		if err != nil {
			return r, err
		}
		defer tr.Kill()
		watch, err := watchPrograms(tr.cmd.Process.Pid)
		if err != nil {
			return r, err
		}
		defer watch.Close()
		stats = watch.Snapshot
	case a.Floor:
		fl, err := attachFloor(floorAt)
		if err != nil {
			return r, err
		}
		defer fl.Close()
		watch, err := watchIDs(fl.ids)
		if err != nil {
			return r, err
		}
		defer watch.Close()
		stats = watch.Snapshot
	}
	cpu := runtime.NumCPU() - 1
	stop, pids, err := startPingPong(cpu)
	if err != nil {
		return r, err
	}
	defer stop()
	// Let both settle into the loop.
	if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
		return r, err
	}
	var progs0 map[uint32]progStat
	if stats != nil {
		if progs0, err = stats(); err != nil {
			return r, err
		}
	}
	c0, err := childrenCPU(pids)
	if err != nil {
		return r, err
	}
	s0, err := readCtxt()
	if err != nil {
		return r, err
	}
	m0, err := readMachineCPU()
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	if err := sleepCtx(ctx, d); err != nil {
		return r, err
	}
	r.Wall = time.Since(t0)
	m1, err := readMachineCPU()
	if err != nil {
		return r, err
	}
	s1, err := readCtxt()
	if err != nil {
		return r, err
	}
	c1, err := childrenCPU(pids)
	if err != nil {
		return r, err
	}
	if stats != nil {
		progs1, err := stats()
		if err != nil {
			return r, err
		}
		r.Progs = progDeltas(progs0, progs1)
	}
	r.Machine, r.Switches, r.Children = m1.sub(m0), s1-s0, c1-c0
	bpf, _, _ := progTotals(r.Progs)
	logf("ctx  %d %-5s: %9.0f switches/s, %s machine CPU per switch, %s ping-pong CPU per switch, BPF %s per switch",
		idx+1, a.Name, float64(r.Switches)/r.Wall.Seconds(), fmtNs(r.perSwitch(r.Machine.Busy)), fmtNs(r.perSwitch(r.Children)), fmtNs(r.perSwitch(bpf)))
	return r, nil
}

func childrenCPU(pids [2]int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		c, err := readProcCPU(pid)
		if err != nil {
			return 0, fmt.Errorf("ping-pong child %d: %w", pid, err)
		}
		sum += c.Exec
	}
	return sum, nil
}

// ctxRounds runs the arm: off, on, floor, interleaved.
func (b *bench) ctxRounds(ctx context.Context, floorAt []attachPoint) ([]ctxResult, error) {
	var out []ctxResult
	arms := []arm{armOff, armOn}
	if len(floorAt) > 0 {
		arms = append(arms, armFloor)
	}
	for i := 0; i < b.ctxRoundsN; i++ {
		for _, a := range arms {
			r, err := b.ctxRound(ctx, a, i, b.ctxRound1, floorAt)
			if err != nil {
				return nil, fmt.Errorf("context-switch round %d (%s): %w", i+1, a.Name, err)
			}
			out = append(out, r)
		}
	}
	return out, nil
}
