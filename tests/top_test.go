//go:build e2e

package tests

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// tracerd top in a real terminal (tmux) against a Go server under load:
// its screen shows the routes with their rates, latencies and phase
// shares, and a provoked finding; q leaves the terminal as it was.

// topLoad drives a Go server until ctx ends: a fast route paced at
// fastEvery, a 20,000-item json.Marshal (a serialization finding) every
// 300 ms and a 60 ms sleep (slow_handler) on connections of their own.
type topLoad struct {
	mu   sync.Mutex
	fast []time.Time // when each fast request was answered
}

const fastEvery = 20 * time.Millisecond

func startTopLoad(t *testing.T, addr string) *topLoad {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	l := &topLoad{}
	loop := func(path string, every time.Duration, answered func()) {
		defer wg.Done()
		c := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}, Timeout: 10 * time.Second}
		defer c.CloseIdleConnections()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			resp, err := c.Get("http://" + addr + strings.ReplaceAll(path, "N", strconv.Itoa(i)))
			if err == nil {
				io.Copy(io.Discard, resp.Body) // read whole: the connection is kept
				resp.Body.Close()
				if answered != nil {
					answered()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}
	wg.Add(3)
	go loop("/items/N", fastEvery, func() {
		l.mu.Lock()
		l.fast = append(l.fast, time.Now())
		l.mu.Unlock()
	})
	go loop("/json?n=20000", 300*time.Millisecond, nil)
	go loop("/sleep?n=60", 100*time.Millisecond, nil)
	t.Cleanup(func() { cancel(); wg.Wait() })
	return l
}

// fastRate is the fast route's answers a second over the last 10 s.
func (l *topLoad) fastRate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	since := time.Now().Add(-10 * time.Second)
	n := 0
	for _, at := range l.fast {
		if at.After(since) {
			n++
		}
	}
	return float64(n) / 10
}

// tmuxPane is tracerd top running in a tmux session of its own (a
// server of its own too: -L), 200 × 50.
type tmuxPane struct {
	sock, session string
	exitFile      string
}

func (p *tmuxPane) tmux(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", p.sock}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("tmux %v: %v: %s", args, err, out)
	}
	return string(out)
}

func startTopInTmux(t *testing.T, args ...string) *tmuxPane {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("needs tmux (tests/tools/install-deps.sh installs it)")
	}
	p := &tmuxPane{sock: fmt.Sprintf("tracerd-e2e-%d", os.Getpid()), session: "top", exitFile: filepath.Join(t.TempDir(), "exit")}
	// The shell says how top exited and stays, so that the pane shows
	// what top left behind.
	cmd := fmt.Sprintf("%s top %s; code=$?; echo $code > %s; echo \"top exited $code\"; sleep 600", bin.tracerd, strings.Join(args, " "), p.exitFile)
	p.tmux(t, "new-session", "-d", "-s", p.session, "-x", "200", "-y", "50", "sh", "-c", cmd)
	t.Cleanup(func() { exec.Command("tmux", "-L", p.sock, "kill-server").Run() })
	return p
}

func (p *tmuxPane) screen(t *testing.T) string {
	return p.tmux(t, "capture-pane", "-p", "-t", p.session)
}

func (p *tmuxPane) alternateOn(t *testing.T) bool {
	return strings.TrimSpace(p.tmux(t, "display-message", "-p", "-t", p.session, "#{alternate_on}")) == "1"
}

// waitScreen waits until every pattern matches the screen, and returns it.
func (p *tmuxPane) waitScreen(t *testing.T, within time.Duration, patterns ...string) string {
	t.Helper()
	var screen string
	eventually(t, within, func() error {
		screen = p.screen(t)
		for _, pat := range patterns {
			if !regexp.MustCompile(pat).MatchString(screen) {
				return fmt.Errorf("no %q on the screen:\n%s", pat, screen)
			}
		}
		return nil
	})
	return screen
}

// quit presses key (tmux send-keys: "q", "C-c") and checks top exited 0
// and left the alternate screen.
func (p *tmuxPane) quit(t *testing.T, key string) {
	t.Helper()
	if !p.alternateOn(t) {
		t.Errorf("top runs outside the alternate screen")
	}
	p.tmux(t, "send-keys", "-t", p.session, key)
	var code string
	eventually(t, 10*time.Second, func() error {
		b, err := os.ReadFile(p.exitFile)
		code = strings.TrimSpace(string(b))
		if err != nil || code == "" {
			return fmt.Errorf("top still runs after %s:\n%s", key, p.screen(t))
		}
		return nil
	})
	screen := p.screen(t)
	if code != "0" {
		t.Errorf("top exited %s:\n%s", code, screen)
	}
	if p.alternateOn(t) || strings.Contains(screen, "SLOWEST REQUESTS") || !strings.Contains(screen, "top exited 0") {
		t.Errorf("the terminal is not restored after %s (alternate screen %v):\n%s", key, p.alternateOn(t), screen)
	}
	// The rest of the terminal's state: the cursor shown, keypad and
	// mouse modes off, and the tty back in canonical mode with echo.
	flags := strings.Fields(p.tmux(t, "display-message", "-p", "-t", p.session, "#{cursor_flag} #{keypad_cursor_flag} #{mouse_any_flag} #{pane_tty}"))
	if len(flags) != 4 || flags[0] != "1" || flags[1] != "0" || flags[2] != "0" {
		t.Errorf("after %s: cursor shown, keypad mode, mouse mode, tty: %v (want 1 0 0)", key, flags)
	}
	if len(flags) == 4 {
		out, err := exec.Command("stty", "-F", flags[3], "-a").CombinedOutput()
		modes := " " + strings.Join(strings.Fields(string(out)), " ") + " "
		if err != nil || !strings.Contains(modes, " icanon ") || !strings.Contains(modes, " echo ") {
			t.Errorf("after %s the tty %s is left raw (%v): %s", key, flags[3], err, out)
		}
	}
}

// checkRefresh watches the title for 4.5 s: it changes (the view's
// clock, its count of requests) at each redraw, the redraws a second
// apart, the clock a second further each time. (A view made just
// before a second's end and the next just after the following one may
// step the clock by 0 or 2: the clock is checked over all the redraws.)
func checkRefresh(t *testing.T, p *tmuxPane) {
	t.Helper()
	titleRe := regexp.MustCompile(`(?m)^tracerd top: .*   (\d\d):(\d\d):(\d\d)   last \d+ s: \d+ requests`)
	var (
		title   string
		changes []time.Time
		clocks  []int
		seen    []string
	)
	for end := time.Now().Add(4500 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		m := titleRe.FindStringSubmatch(p.screen(t))
		if m == nil || m[0] == title {
			continue
		}
		title = m[0]
		h, _ := strconv.Atoi(m[1])
		mi, _ := strconv.Atoi(m[2])
		sec, _ := strconv.Atoi(m[3])
		changes = append(changes, time.Now())
		clocks = append(clocks, h*3600+mi*60+sec)
		seen = append(seen, m[1]+":"+m[2]+":"+m[3])
	}
	// The first title is the one there when watching began; each next
	// one is a redraw.
	redraws := len(changes) - 1
	if redraws < 3 {
		t.Fatalf("%d redraws in 4.5 s (clocks %v)", redraws, seen)
	}
	if d := clocks[len(clocks)-1] - clocks[0]; d < redraws-1 || d > redraws+1 {
		t.Errorf("the view's clock went %d s further over %d redraws: %v", d, redraws, seen)
	}
	// Seen by polling the pane (50 ms, and capture-pane takes its time on
	// a busy machine): one late look makes a gap longer and the next
	// shorter, so each gap is bounded loosely and their mean tightly.
	var gaps []string
	for i := 2; i < len(changes); i++ {
		gap := changes[i].Sub(changes[i-1])
		gaps = append(gaps, gap.Round(time.Millisecond).String())
		if gap < 500*time.Millisecond || gap > 1500*time.Millisecond {
			t.Errorf("redraws %s apart (clocks %v)", gap, seen)
		}
	}
	mean := changes[len(changes)-1].Sub(changes[1]) / time.Duration(len(changes)-2)
	if mean < 850*time.Millisecond || mean > 1150*time.Millisecond {
		t.Errorf("redraws %s apart on average (%v)", mean, gaps)
	}
	t.Logf("redraws: clocks %v, seen %v apart (mean %s)", seen, gaps, mean.Round(time.Millisecond))
}

// routeLine finds route's line on the screen: its requests a second,
// p50 and shares.
var routeLineRe = `(?m)^\S+\s+%s\s+([0-9.]+)\s+(\S+)\s+(\S+)\s+(.*)$`

func routeLine(t *testing.T, screen, route string) (perSecond float64, p50 time.Duration, shares string) {
	t.Helper()
	m := regexp.MustCompile(fmt.Sprintf(routeLineRe, regexp.QuoteMeta(route))).FindStringSubmatch(screen)
	if m == nil {
		t.Fatalf("no line of %s on the screen:\n%s", route, screen)
	}
	perSecond, _ = strconv.ParseFloat(m[1], 64)
	p50, err := time.ParseDuration(strings.ReplaceAll(m[2], "µ", "u"))
	if err != nil {
		t.Fatalf("p50 %q: %v", m[2], err)
	}
	return perSecond, p50, m[4]
}

// checkTopScreen checks what a loaded Go server's screen must show.
func checkTopScreen(t *testing.T, p *tmuxPane, load *topLoad, source string) {
	t.Helper()
	p.waitScreen(t, 60*time.Second, regexp.QuoteMeta(source), `GET /items/\{id\}`, `GET /sleep`, `GET /json`,
		`GET /json: serialization \(serialize\) on \d+ requests`, `SLOWEST REQUESTS`)
	// Redrawn every second; then let the window fill: rates over 10 s.
	start := time.Now()
	checkRefresh(t, p)
	time.Sleep(10*time.Second - time.Since(start))
	screen := p.screen(t)
	truth := load.fastRate()
	t.Logf("screen:\n%s\nclient: %.1f fast requests/s over the last 10 s", screen, truth)
	rate, _, shares := routeLine(t, screen, "GET /items/{id}")
	if rate < truth*0.8 || rate > truth*1.2 {
		t.Errorf("GET /items/{id}: %.1f req/s on the screen, the client had %.1f answered", rate, truth)
	}
	if !regexp.MustCompile(`\bapp \d+\.\d%`).MatchString(shares) {
		t.Errorf("GET /items/{id}: shares %q", shares)
	}
	// The sleeps are most of the time: the rest is the server's one P
	// busy marshalling (recv_queue: it reads late).
	_, p50, shares := routeLine(t, screen, "GET /sleep")
	// Quantiles are bucket middles, within 3 %.
	if p50 < 58*time.Millisecond || p50 > 80*time.Millisecond {
		t.Errorf("GET /sleep: p50 %s, the handler sleeps 60 ms", p50)
	}
	if m := regexp.MustCompile(`^app (\d+\.\d)%`).FindStringSubmatch(shares); m == nil {
		t.Errorf("GET /sleep: app is not the largest share: %q", shares)
	} else if v, _ := strconv.ParseFloat(m[1], 64); v < 75 {
		t.Errorf("GET /sleep: app %.1f%% of the time, the handler sleeps 60 ms", v)
	}
	_, _, shares = routeLine(t, screen, "GET /json")
	if !strings.Contains(shares, "[serialize ") {
		t.Errorf("GET /json: no serialize share: %q", shares)
	}
	// The slowest requests are the sleeps, with their breakdowns.
	if !regexp.MustCompile(`(?m)^\s+\d+\.\d\dms  \S+ GET /sleep pid \d+`).MatchString(screen) ||
		!regexp.MustCompile(`(?m)^    .*recv_queue=\S+ .*app=[6-9]\d\.\d\dms`).MatchString(screen) {
		t.Errorf("slowest requests lack the sleeps and their breakdowns:\n%s", screen)
	}
}

// TestTopHere: tracerd top tracing on its own (no daemon).
func TestTopHere(t *testing.T) {
	needRoot(t)
	srv := startGoServer(t, buildGoServer(t, goBuilds[0]))
	p := startTopInTmux(t, "--pid", strconv.Itoa(srv.PID), "--control-socket", filepath.Join(t.TempDir(), "none.sock"))
	// Connections accepted before tracing started are not traced: the
	// load (keep-alive connections) starts once top shows its view.
	source := fmt.Sprintf("tracerd top: pid [%d] traced here", srv.PID)
	p.waitScreen(t, 30*time.Second, regexp.QuoteMeta(source))
	load := startTopLoad(t, srv.Addr)
	checkTopScreen(t, p, load, source)
	// A resize redraws at the new size: lines cut by top itself end
	// with "…" (tmux would cut them bare).
	p.tmux(t, "resize-window", "-t", p.session, "-x", "100", "-y", "20")
	screen := p.waitScreen(t, 5*time.Second, regexp.QuoteMeta(source), `(?m)^\S+\s+GET /items/\{id\}.*…$`, `SLOWEST REQUESTS`)
	if n := strings.Count(strings.TrimRight(screen, "\n"), "\n") + 1; n > 20 {
		t.Errorf("%d lines after the resize to 20", n)
	}
	p.quit(t, "q")
}

// TestTopDaemon: tracerd top through a running daemon's control socket,
// on the screen and as plain lines (stdout not a terminal), of all it
// traces and of a selection.
func TestTopDaemon(t *testing.T) {
	needRoot(t)
	srv := startGoServer(t, buildGoServer(t, goBuilds[0]))
	sock := filepath.Join(t.TempDir(), "control.sock")
	rt := startRun(t, nil, "--pid", strconv.Itoa(srv.PID), "--control-socket", sock)
	load := startTopLoad(t, srv.Addr)
	p := startTopInTmux(t, "--control-socket", sock)
	checkTopScreen(t, p, load, "tracerd top: everything through the daemon ("+sock+")")
	p.quit(t, "C-c")

	// Not a terminal: plain lines each second, until SIGINT.
	cmd := exec.Command(bin.tracerd, "top", "--control-socket", sock, "--pid", strconv.Itoa(srv.PID))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var heads []time.Time
	lines := bufio.NewScanner(out)
	deadline := time.Now().Add(30 * time.Second)
	for lines.Scan() && time.Now().Before(deadline) {
		l := lines.Text()
		switch {
		case regexp.MustCompile(`^\d\d:\d\d:\d\d last \d+ s: \d+ requests$`).MatchString(l):
			heads = append(heads, time.Now())
		case regexp.MustCompile(`^\d\d:\d\d:\d\d route \S+ GET /sleep: [0-9.]+ req/s p50 (5[89]|[67]\d)\.\d\dms p99 \S+; app `).MatchString(l):
			seen["route"] = true
		case regexp.MustCompile(`^\d\d:\d\d:\d\d finding \S+ GET /json: serialization \(serialize\) on \d+ requests, \S+ lost$`).MatchString(l):
			seen["finding"] = true
		case regexp.MustCompile(`^\d\d:\d\d:\d\d slow .* GET /sleep pid \d+ .*: .*app=[6-9]\d\.\d\dms`).MatchString(l):
			seen["slow"] = true
		}
		if len(seen) == 3 && len(heads) >= 3 {
			break
		}
	}
	cmd.Process.Signal(os.Interrupt)
	go func() {
		for lines.Scan() {
		}
	}()
	if err := cmd.Wait(); err != nil {
		t.Errorf("tracerd top (plain) after SIGINT: %v\n%s", err, &stderr)
	}
	if len(seen) != 3 || len(heads) < 3 {
		t.Fatalf("plain lines: saw %v, %d views", seen, len(heads))
	}
	// One view a second.
	var gaps []string
	for i := 1; i < len(heads); i++ {
		gap := heads[i].Sub(heads[i-1])
		gaps = append(gaps, gap.Round(time.Millisecond).String())
		if gap < 800*time.Millisecond || gap > 1200*time.Millisecond {
			t.Errorf("views %s apart", gap)
		}
	}
	t.Logf("plain: %d views, %v apart", len(heads), gaps)
	rt.Stop(t)
}

// TestTopWithoutPrivileges: with no daemon and no privileges, top says
// that it would trace on its own and what it lacks, exit 1, and leaves
// the terminal alone (no screen was started).
func TestTopWithoutPrivileges(t *testing.T) {
	needRoot(t) // to drop them
	out, err := exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
		bin.tracerd, "top", "--control-socket", filepath.Join(t.TempDir(), "none.sock")).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit %v: %s", err, out)
	}
	if want := "so top traces on its own: not enough privileges to load BPF programs: run as root"; !strings.Contains(string(out), want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}
