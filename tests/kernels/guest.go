package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// logLine is one line of a guest's serial console, with when the host
// read it (since qemu started). The host clock times boot and
// scenarios: the guest's own clock is what is under test.
type logLine struct {
	at   time.Duration
	text string
}

// bootResult is what one guest run left: its console and how it ended.
type bootResult struct {
	lines []logLine
	wall  time.Duration // qemu start to exit
	ended string        // "" when the guest powered off after its last scenario, else why it did not
	// others is how many host CPUs other processes kept busy, on
	// average, while the guest ran: timing tests suffer from a busy host.
	others float64
}

// limits bound each stretch of a guest's run, so that a hung kernel or
// test costs minutes, not the CI's whole budget.
type limits struct {
	boot  time.Duration // qemu start to /init's first line
	test  time.Duration // -test.timeout of each scenario; the guest gets a minute more
	guest time.Duration // a whole guest run, so that two kernels fit CI's budget
}

// qemuArgs: TCG (no /dev/kvm) on one host thread, which avoids the soft
// lockups seen in text_poke_bp under multi-threaded TCG (KERNELS.md);
// qemu64 and the cloud kernels boot fastest; 2 CPUs for the tests that
// pin a server and a hog on CPU 1; no network card (loopback is all the
// tests use, and its boot ROM costs time). tsc=reliable: the emulated
// TSCs are one host clock, but the kernel finds them unsynchronized and
// falls back to per-CPU sched_clock filtering, whose ±1 tick between
// CPUs skews schedstat and cpu.stat, the truths of run-queue tests. A panic or soft lockup ends the
// guest at once (panic=-1 reboots, -no-reboot makes that an exit).
func qemuArgs(vmlinuz, initrd string) []string {
	return []string{
		"-accel", "tcg,thread=single", "-cpu", "qemu64", "-smp", "2", "-m", "2G",
		"-nographic", "-nic", "none", "-no-reboot",
		"-kernel", vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1 softlockup_panic=1 tsc=reliable",
	}
}

// boot runs a guest to its end and returns its console. Its log is
// also written to logPath as it comes, and to echo when not nil.
func boot(vmlinuz, initrd, logPath string, lim limits, echo io.Writer) (*bootResult, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	// At nice -10 (root's CI) the guest's vCPUs get the host CPU they
	// want when other work runs: the tests in it time real delays.
	cmd := exec.Command("nice", append([]string{"-n", "-10", "qemu-system-x86_64"}, qemuArgs(vmlinuz, initrd)...)...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	busy0 := hostBusy()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { err := cmd.Wait(); pw.Close(); exited <- err }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- strings.TrimRight(sc.Text(), "\r")
		}
		io.Copy(io.Discard, pr) // a line too long: keep qemu unblocked
		close(lines)
	}()

	res := &bootResult{}
	// The watchdog: each marker line sets how long the guest may take
	// to print the next one.
	deadline := time.NewTimer(lim.boot)
	whole := time.NewTimer(lim.guest)
	defer whole.Stop()
	stage := "boot"
	kill := func(why string) {
		if res.ended == "" {
			res.ended = why
			_ = cmd.Process.Kill() // ends the output, hence the loop
		}
	}
	for lines != nil {
		select {
		case text, ok := <-lines:
			if !ok {
				lines = nil
				break
			}
			l := logLine{time.Since(start), text}
			res.lines = append(res.lines, l)
			fmt.Fprintf(logFile, "%8.3f %s\n", l.at.Seconds(), text)
			if echo != nil {
				fmt.Fprintln(echo, text)
			}
			if m, ok := parseMarker(text); ok {
				stage = m.kind + " " + m.name
				deadline.Reset(lim.after(m))
			}
		case <-deadline.C:
			kill(fmt.Sprintf("killed by the harness: no progress after %q", stage))
		case <-whole.C:
			kill(fmt.Sprintf("killed by the harness: the guest ran out of its %s", lim.guest))
		}
	}
	err = <-exited
	res.wall = time.Since(start)
	qemu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	res.others = max(0, (hostBusy()-busy0-qemu).Seconds()/res.wall.Seconds())
	if res.ended == "" && !sawDone(res.lines) {
		res.ended = fmt.Sprintf("guest ended early (qemu: %v)", exitText(err))
	}
	return res, nil
}

// after is how long the guest may take after marker m to print the next.
func (lim limits) after(m mark) time.Duration {
	switch {
	case m.kind == "begin" && m.name != checkName:
		return lim.test + time.Minute
	default:
		return 2 * time.Minute
	}
}

func sawDone(lines []logLine) bool {
	for _, l := range lines {
		if m, ok := parseMarker(l.text); ok && m.kind == "done" {
			return true
		}
	}
	return false
}

func exitText(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// hostBusy is the CPU time the host's CPUs have spent busy since boot
// (/proc/stat: user, nice, system, irq, softirq).
func hostBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var busy int64
	for i, f := range strings.Fields(line)[1:] {
		n, _ := strconv.ParseInt(f, 10, 64)
		if i != 3 && i != 4 && i < 7 { // not idle, iowait, steal; guest time is in user already
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / 100 // USER_HZ
}
