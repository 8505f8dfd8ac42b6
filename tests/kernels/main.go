// Command kernels boots Debian 12's distribution kernels under qemu and
// runs tracerd's end-to-end tests inside each, so that a change is known
// to work on the kernels people run, not only on the development
// machine's. Run it as `make test-kernels` (root; it installs qemu,
// busybox-static and the tools the guest needs first).
//
// For each kernel line asked for (-kernels: 6.1, 6.12) it takes the
// newest linux-image-…-cloud-amd64-unsigned package apt knows, downloads
// and unpacks it into a cache outside the repository, builds tracerd,
// the test servers and the test binary statically, packs them with
// busybox, nft, tc, ip, ss, taskset and the kernel's netfilter modules into
// an initramfs, and boots it. The guest's /init (init.sh.tmpl) runs
// `tracerd check` and each scenario's tests, between marker lines the
// host reads off the serial console, and powers off. The report (-out)
// has a table scenario × kernel, why each failure or skip, and each
// kernel's `tracerd check`; every scenario's result is also printed,
// and the exit status is 1 when one failed.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// scenarios are the end-to-end tests run in every guest: a phase each,
// the HTTP fields (checked in TestRecvQueue), Go awareness on the
// goserver builds of the local toolchain, and the phase tests again
// with each fallback way of attaching forced. Load tests stay out: TCG
// is ~12× slower than the host.
var scenarios = []scenario{
	{Name: "accept_queue", Run: "^TestAcceptQueue$"},
	{Name: "recv_queue_http", Run: "^TestRecvQueue$"},
	{Name: "runqueue", Run: "^TestRunqueue$", Known: "tracerd reads the serving thread's schedstat run_delay inside " +
		"its read and its write; the truth is the same count, read by the server in user space after the read's " +
		"return (and a TCP_INFO query) and before the write: a wait behind the CPU hog in between counts on " +
		"tracerd's side only: < 1 % on a real CPU, up to ~20 ms once the emulated CPU stretches those steps ~12×"},
	{Name: "cfs_throttle", Run: "^TestCFSThrottle(QuotaSetLater)?$", Known: "the truth, cpu.stat's throttled time, is the " +
		"cgroup's run queue's; tracerd's phase is the serving thread's. Emulated, the Go runtime preempts the " +
		"handler ~12× more often per request, and while another thread of the server (throttled too) hands the " +
		"goroutine back, the serving thread sleeps instead of waiting: the request is held by the throttle, the " +
		"thread is not runnable (0–25 % short; within ±5 % on 6.18 and in most requests on 6.1)"},
	{Name: "send_queue_zero_window", Run: "^TestSendQueueZeroWindow$"},
	{Name: "retransmits", Run: "^TestRetransmits$"},
	{Name: "nagle", Run: "^TestNagle$", Known: "the truth is the client's own gap between two reads, " +
		"which the emulated CPU stretches by several ms (the 1 ms floor is the host's)"},
	{Name: "go_awareness", Run: "^TestGoAwareness$/^local"},
	{Name: "port_exhaustion", Run: "^TestPortExhaustion$"},
	// Findings that need a network path: network namespaces and veths.
	{Name: "pmtu_blackhole", Run: "^TestFindingPMTUBlackhole$"},
	{Name: "own_receive_window", Run: "^TestFindingOwnReceiveWindow$"},
	{Name: "accept_backlog_syn_burst", Run: "^TestFindingAcceptBacklogSYNBurst$"},
	{Name: "outbound_calls", Run: "^TestOutboundCalls$"},
	{Name: "outbound_tls", Run: "^TestOutboundTLS$"},
	{Name: "go_tls_server", Run: "^TestGoTLSServer$", Known: "the truth, the Go client's httptrace " +
		"TLSHandshakeStart → Done, includes building the ClientHello before the server can read it and, with a " +
		"client certificate, leaves out the server's check of the client's signature after the client is done: " +
		"0.1–0.25 ms on a real CPU, 1–17 ms once the emulated CPU stretches that work ~12×"},
	// The fallback ways, on the scenarios that gate the run above.
	{Name: "fallback_ways", Run: "^TestFallbackWays$/^(raw_tp|syscalls)$/^(AcceptQueue|RecvQueue|SendQueueZeroWindow|Retransmits|OutboundCalls)$"},
}

type options struct {
	kernels, run, out, cache, readme string
	keep, verbose                    bool
	lim                              limits
}

func main() {
	var o options
	flag.StringVar(&o.kernels, "kernels", "6.1,6.12", "comma-separated kernel lines ("+lineNames()+") or linux-image package names")
	flag.StringVar(&o.run, "run", "", "comma-separated -test.run patterns to run instead of the default scenarios, one scenario each")
	flag.StringVar(&o.out, "out", "docs/kernels.md", "write the report here")
	flag.StringVar(&o.readme, "readme", "", "also rewrite the kernel table (kernel → ways → phases) in this README")
	flag.StringVar(&o.cache, "cache", "/var/cache/tracerd-kernels", "kernel packages, their unpacked trees and the guests' console logs (kept between runs)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (binaries, initramfs trees and archives)")
	flag.BoolVar(&o.verbose, "v", false, "echo the guests' consoles")
	flag.DurationVar(&o.lim.test, "test-timeout", 5*time.Minute, "-test.timeout of each scenario")
	flag.DurationVar(&o.lim.boot, "boot-timeout", 2*time.Minute, "time a guest may take to start /init")
	flag.DurationVar(&o.lim.guest, "guest-timeout", 20*time.Minute, "time a guest may take in all")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "kernels: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	failed, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kernels:", err)
		os.Exit(1)
	}
	if failed {
		os.Exit(1)
	}
}

// run does the whole job and reports whether a scenario failed; err is
// for the harness's own failures (no kernel, no build, no qemu).
func run(o options) (failed bool, err error) {
	repo, err := repoRoot()
	if err != nil {
		return false, err
	}
	unlock, err := lockCache(o.cache)
	if err != nil {
		return false, err
	}
	defer unlock()
	chosen := scenarios
	if o.run != "" {
		chosen = nil
		for _, re := range strings.Split(o.run, ",") {
			// The name is one word of a marker line.
			chosen = append(chosen, scenario{Name: strings.Join(strings.Fields(re), "_"), Run: re})
		}
	}
	var kernels []*kernel
	for _, want := range strings.Split(o.kernels, ",") {
		k, err := resolveKernel(o.cache, strings.TrimSpace(want))
		if err != nil {
			return false, err
		}
		if err := fetch(o.cache, k); err != nil {
			return false, err
		}
		kernels = append(kernels, k)
	}

	work, err := os.MkdirTemp("", "tracerd-kernels-")
	if err != nil {
		return false, err
	}
	if o.keep {
		logf("work directory kept: %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	started := time.Now()
	logf("building the guest binaries")
	if err := buildBinaries(repo, filepath.Join(work, "bin")); err != nil {
		return false, err
	}
	base, err := baseArchive(work, chosen, o.lim.test)
	if err != nil {
		return false, err
	}
	info := runInfo{command: command(), date: time.Now(), revision: revision(repo, o.out), build: time.Since(started)}
	logf("built in %s", seconds(info.build))

	logs := filepath.Join(o.cache, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return false, err
	}
	var guests []*guestReport
	for _, k := range kernels {
		g, err := runKernel(k, work, base, filepath.Join(logs, k.release+".log"), chosen, o)
		if err != nil {
			return false, err
		}
		for _, line := range summaryLines(g) {
			fmt.Println(line)
		}
		guests = append(guests, g)
		failed = failed || g.failed()
	}
	if err := writeReport(o.out, info, chosen, guests); err != nil {
		return false, err
	}
	logf("report: %s; console logs: %s", o.out, logs)
	if o.readme != "" {
		stamp := fmt.Sprintf("Written by `make test-kernels` (%s, %s); details in [%s](%s).",
			info.date.UTC().Format("2006-01-02"), info.revision, o.out, o.out)
		row := hostRow(filepath.Join(work, "bin", "tracerd"))
		if err := updateReadme(o.readme, row, stamp, guests); err != nil {
			return false, err
		}
		logf("kernel table updated in %s", o.readme)
	}
	return failed, nil
}

// baseArchive builds the part of the initramfs all kernels share.
func baseArchive(work string, chosen []scenario, testTimeout time.Duration) ([]byte, error) {
	dir := filepath.Join(work, "base")
	if err := stageBase(dir, filepath.Join(work, "bin"), chosen, testTimeout.String()); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	err := writeCpio(&b, dir, true)
	return b.Bytes(), err
}

// runKernel makes k's initramfs (the base and its modules), boots it
// and parses what the guest printed.
func runKernel(k *kernel, work string, base []byte, logPath string, chosen []scenario, o options) (*guestReport, error) {
	mods := filepath.Join(work, "modules-"+k.release)
	if err := stageModules(k, mods); err != nil {
		return nil, err
	}
	initrd := filepath.Join(work, "initrd-"+k.release)
	if err := writeInitrd(initrd, base, mods); err != nil {
		return nil, err
	}
	logf("booting %s (%s %s), console log %s", k.release, k.pkg, k.version, logPath)
	var echo io.Writer
	if o.verbose {
		echo = os.Stderr
	}
	res, err := boot(k.vmlinuz, initrd, logPath, o.lim, echo)
	if err != nil {
		return nil, err
	}
	g := parseGuest(res, chosen)
	g.k = k
	logf("%s: booted in %s, ran %s; other processes kept %.1f host CPUs busy", k.release, seconds(g.boot), seconds(g.wall), g.others)
	return g, nil
}

// lockCache makes runs sharing a cache take turns: they would share its
// console logs and unpacked trees, and two TCG guests at once slow each
// other's timing tests.
func lockCache(cache string) (unlock func(), err error) {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		logf("another run uses %s: waiting for it", cache)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, err
		}
	}
	return func() { f.Close() }, nil
}

// writeInitrd writes the shared archive followed by that of mods.
func writeInitrd(path string, base []byte, mods string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(base); err != nil {
		return err
	}
	if err := writeCpio(f, mods, false); err != nil {
		return err
	}
	return f.Close()
}

// repoRoot is the module's directory: the harness runs from anywhere
// in the repository (make runs it at the top).
func repoRoot() (string, error) {
	out, err := output("go", "env", "GOMOD")
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(out)
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the tracerd module")
	}
	return filepath.Dir(mod), nil
}

// command is how the report says it was made.
func command() string {
	args := []string{"go", "run", "./tests/kernels"}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " |*$^'\"") {
			a = shellQuote(a)
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}

// revision names the commit tested and the directories changed on top
// of it (tracerd's code is often tested before it is committed), the
// report itself left out.
func revision(repo, out string) string {
	if abs, err := filepath.Abs(out); err == nil {
		out, _ = filepath.Rel(repo, abs)
	}
	head, err := exec.Command("git", "-C", repo, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "a tree outside git"
	}
	rev := "commit " + strings.TrimSpace(string(head))
	status, _ := exec.Command("git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output()
	dirs := map[string]bool{}
	for _, line := range strings.Split(string(status), "\n") {
		if len(line) < 4 || line[3:] == out {
			continue
		}
		path := line[3:]
		if parts := strings.SplitN(path, "/", 3); len(parts) == 3 {
			path = parts[0] + "/" + parts[1] + "/"
		}
		dirs[path] = true
	}
	if len(dirs) == 0 {
		return rev
	}
	var list []string
	for d := range dirs {
		list = append(list, d)
	}
	sort.Strings(list)
	return rev + " with uncommitted changes in " + strings.Join(list, ", ")
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kernels: "+format+"\n", args...)
}
