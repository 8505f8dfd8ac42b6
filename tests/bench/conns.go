package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"

	"github.com/tracerd/tracerd/internal/loader"
)

// docs/design.md's RSS budget holds with 10k open traced connections:
// tracerd keeps them in a BPF map (kernel memory, not in its RSS) and
// whatever it holds per connection in user space shows in its RSS.

// connsResult is one measurement of tracerd's memory while it traces
// many idle keep-alive connections, each of which has had one request.
type connsResult struct {
	Index  int
	Want   int           // connections asked for
	Opened int           // connections open, each with one answered request
	Open   time.Duration // time to open them
	Attach time.Duration

	StartupEnd time.Duration // "tracing" → its background start-up work ended (-1: not seen)
	Idle       memUsage      // then, no connection open yet
	Held       memHold       // with all the connections open
	Kernel     kernelSide    // tracerd's BPF maps at the end of Held
	Out        traceOutput
}

// memHold is tracerd's memory at the end of a hold, and over it.
type memHold struct {
	memUsage
	PeakRSSKiB int64         // largest VmRSS sampled during the hold
	Held       time.Duration // how long the connections were held
	Settled    bool          // VmRSS stopped moving before connsHoldMax
}

// Valid says whether tracerd traced every connection: the kernel's
// count of traced connections and its map both hold at least Want.
func (x connsResult) Valid() bool {
	return x.Opened >= x.Want && x.Out.Kernel.Conns >= int64(x.Want) && x.Kernel.Conns >= int64(x.Want) && x.Out.Kernel.ConnsUntraced == 0
}

// startupDone is what tracerd logs when the background work of its
// start (calibrating its uprobes on its own binary, which it inspects
// for that) has ended, well or not. The connections are opened after
// it, so that the start's memory is apart from theirs.
const startupDone = "uprobe cost calibrat"

// How long the connections are held before tracerd's memory is read:
// at least connsSettle, tracerd's idle timeout (500 ms by default) that
// ends each keep-alive request in the kernel, after which tracerd reads
// and writes its record; then until VmRSS has moved less than
// rssStableKiB over connsStable, for at most connsHoldMax. VmRSS is
// sampled every connsSample: the largest sample counts too, since the
// Go runtime returns memory only after a garbage collection, which
// comes whenever tracerd has allocated enough.
const (
	connsStartupMax = 10 * time.Second
	connsSettle     = 2 * time.Second
	connsStable     = 2 * time.Second
	connsHoldMax    = 10 * time.Second
	connsSample     = 100 * time.Millisecond
	rssStableKiB    = 1024
)

// connsDialers bounds the connections being opened at once, so that the
// server's accept queue (net.core.somaxconn, 4096 by default) never
// overflows: a dropped SYN costs a 1 s retransmission.
const connsDialers = 64

// noFileHeadroom is the descriptors a process needs besides the
// connections.
const noFileHeadroom = 1024

// raiseNoFile lets this process and the children it starts from now on
// (the server) hold n more descriptors than the headroom. Go raises its
// own soft limit at start but gives children the original one back
// unless the limit was set explicitly, so it is set even when it is
// already high enough.
func raiseNoFile(n int) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	need := uint64(n + noFileHeadroom)
	l.Cur = max(l.Cur, need)
	l.Max = max(l.Max, need)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("raising RLIMIT_NOFILE to %d (for %d connections): %w", need, n, err)
	}
	return nil
}

// connsRound starts tracerd as the traced rounds do, waits for the end
// of its start-up work, opens n keep-alive connections to the server
// with one request each, and reads tracerd's memory while they are all
// open and idle.
func (b *bench) connsRound(ctx context.Context, idx, n int) (r connsResult, err error) {
	r = connsResult{Index: idx, Want: n}
	jsonPath := filepath.Join(b.dir, "requests.jsonl")
	defer os.Remove(jsonPath)
	defer os.Remove(filepath.Join(b.dir, "cut.pb.gz"))
	tr, err := startTracer(b.tracerd, tracerdArgs(b.server.Port, b.dir, true), jsonPath)
	if err != nil {
		return r, err
	}
	defer tr.Kill()
	pid := tr.cmd.Process.Pid
	r.Attach = tr.Attach
	if r.StartupEnd, err = tr.waitStderr(ctx, startupDone, connsStartupMax); err != nil {
		return r, err
	}
	r.Idle = readMem(pid)

	t0 := time.Now()
	conns, err := openIdleConns(ctx, b.server.Addr, n)
	defer func() { closeAll(conns) }()
	r.Open, r.Opened = time.Since(t0), len(conns)
	if err != nil {
		return r, err
	}
	if r.Held, err = holdMem(ctx, pid); err != nil {
		return r, err
	}
	// What the kernel side holds, with every connection still open.
	if r.Kernel, err = readKernelSide(pid); err != nil {
		return r, err
	}

	closeAll(conns)
	conns = nil
	if err := sleepCtx(ctx, b.drain); err != nil {
		return r, err
	}
	if r.Out, err = tr.Stop(); err != nil {
		return r, err
	}
	logf("conns %d: %d connections open in %s; tracerd RSS %.1f MiB at the end of the hold (%s), up to %.1f MiB; %.1f MiB before connecting (start-up over after %s), peak %.1f MiB (%.1f before connecting); %d in its conns map, %d records by then; at its end %d traced, %d records",
		idx+1, r.Opened, fmtDur(r.Open), kiBToMiB(r.Held.RSS), fmtDur(r.Held.Held), kiBToMiB(r.Held.PeakRSSKiB), kiBToMiB(r.Idle.RSS), fmtDur(r.StartupEnd),
		kiBToMiB(r.Held.HWM), kiBToMiB(r.Idle.HWM), r.Kernel.Conns, r.Kernel.Records, r.Out.Kernel.Conns, r.Out.Kernel.Records)
	return r, nil
}

// holdMem samples tracerd's VmRSS while the connections stay open (see
// connsSettle), then reads tracerd's memory.
func holdMem(ctx context.Context, pid int) (memHold, error) {
	var h memHold
	type sample struct {
		at  time.Duration
		rss int64
	}
	var samples []sample
	start := time.Now()
	for {
		if err := sleepCtx(ctx, connsSample); err != nil {
			return h, err
		}
		rss, _ := memKiB(pid)
		if rss < 0 {
			return h, fmt.Errorf("tracerd (pid %d) is gone", pid)
		}
		at := time.Since(start)
		samples = append(samples, sample{at, rss})
		h.PeakRSSKiB = max(h.PeakRSSKiB, rss)
		if at < max(connsSettle, connsStable) {
			continue
		}
		lo, hi := rss, rss
		for _, s := range samples {
			if s.at >= at-connsStable {
				lo, hi = min(lo, s.rss), max(hi, s.rss)
			}
		}
		h.Settled = hi-lo <= rssStableKiB
		if h.Settled || at >= connsHoldMax {
			h.Held = at
			h.memUsage = readMem(pid)
			h.PeakRSSKiB = max(h.PeakRSSKiB, h.RSS)
			return h, nil
		}
	}
}

// openIdleConns opens n connections to addr, each sending one HTTP/1.1
// GET and reading its answer, and leaves them open (keep-alive). On
// error it returns the connections opened so far, to be closed.
func openIdleConns(ctx context.Context, addr string, n int) ([]net.Conn, error) {
	req := []byte("GET / HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: tracerd-bench\r\n\r\n")
	conns := make([]net.Conn, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(connsDialers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				conns[i], errs[i] = oneRequest(ctx, addr, req)
			}
		}()
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	var open []net.Conn
	var failed []error
	for i, c := range conns {
		if c != nil {
			open = append(open, c)
		}
		if errs[i] != nil {
			failed = append(failed, errs[i])
		}
	}
	if err := ctx.Err(); err != nil {
		return open, err
	}
	if len(failed) > 0 {
		return open, fmt.Errorf("%d of %d connections failed, the first: %w", len(failed), n, failed[0])
	}
	return open, nil
}

// oneRequest dials addr and has one request answered on the connection.
func oneRequest(ctx context.Context, addr string, req []byte) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	// The answer has a Content-Length body and nothing follows it: the
	// reader holds nothing once it is read and can be dropped.
	status, err := readResponse(bufio.NewReaderSize(c, 512))
	if err == nil && status != 200 {
		err = fmt.Errorf("status %d", status)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// kernelSide is what tracerd's BPF maps hold at one moment.
type kernelSide struct {
	Conns    int64 // entries of the conns map: traced open connections
	Records  int64 // records written to the ring buffer so far
	ConnsKiB int64 // the conns map's kernel memory (fdinfo memlock), -1 unknown
}

// readKernelSide opens the maps of the tracerd process pid by id (from
// its /proc/PID/fdinfo, as watchPrograms does for its programs), counts
// the entries of the connection maps and reads the counters.
func readKernelSide(pid int) (kernelSide, error) {
	k := kernelSide{ConnsKiB: -1}
	ids, err := fdinfoIDs(pid, "map_id:", false)
	if err != nil {
		return k, fmt.Errorf("listing tracerd's BPF maps: %w", err)
	}
	found := 0
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			continue // freed meanwhile
		}
		info, err := m.Info()
		if err == nil {
			switch info.Name {
			case loader.TracerdMapConns:
				k.Conns, err = countKeys(m)
				k.ConnsKiB = mapMemlockKiB(pid, id)
				found++
			case loader.TracerdMapCounters:
				k.Records, err = perCPUCounter(m, loader.TracerdCounterCNT_RECORDS)
				found++
			}
		}
		m.Close()
		if err != nil {
			return k, fmt.Errorf("reading tracerd's BPF map %q: %w", info.Name, err)
		}
	}
	if found != 2 {
		return k, fmt.Errorf("tracerd (pid %d) does not hold its %s and %s maps", pid,
			loader.TracerdMapConns, loader.TracerdMapCounters)
	}
	return k, nil
}

// perCPUCounter sums one counter of the per-CPU counters map.
func perCPUCounter(m *ebpf.Map, c loader.TracerdCounter) (int64, error) {
	var perCPU []uint64
	if err := m.Lookup(uint32(c), &perCPU); err != nil {
		return 0, err
	}
	var n int64
	for _, v := range perCPU {
		n += int64(v)
	}
	return n, nil
}

// countKeys walks a hash map's keys (the values are large; only the
// keys are read).
func countKeys(m *ebpf.Map) (int64, error) {
	var key, next uint64
	var n int64
	var prev any // nil: start from the first key
	for {
		err := m.NextKey(prev, &next)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
		key = next
		prev = &key
	}
}
