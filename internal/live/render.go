package live

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tracerd/tracerd/internal/correlate"
)

// Kind says how a screen line is drawn.
type Kind uint8

const (
	Plain   Kind = iota
	Title        // the first line
	Heading      // a section's title and column names
	Alert        // a finding
)

// Line is one line of the screen.
type Line struct {
	Kind Kind
	Text string
}

// Screen lays v out for a terminal of width × height: the routes, the
// findings, the slowest requests, each cut to what fits. source says
// where the view comes from (the daemon, or tracing here).
func Screen(v View, source string, width, height int) []Line {
	var out []Line
	add := func(k Kind, s string) { out = append(out, Line{k, cut(s, width)}) }
	at := time.Unix(0, v.UnixNano).Format("15:04:05")
	add(Title, fmt.Sprintf("tracerd top: %s   %s   last %.0f s: %d requests   (q quits)", source, at, v.Window, v.Requests))
	add(Plain, "")
	// Room: the routes get up to half the screen, the findings up to a
	// quarter, the slowest requests the rest (two lines each).
	room := max(height-len(out)-6, 6)
	nRoutes := min(len(v.Routes), max(room/2, 3))
	nFindings := min(len(v.Findings), max(room/4, 2))
	svcW, routeW := columnWidths(v)
	add(Heading, fmt.Sprintf("%-*s  %-*s  %8s  %9s  %9s  %s", svcW, "SERVICE", routeW, "ROUTE", "REQ/S", "P50", "P99", "SHARE OF TIME BY PHASE"))
	if len(v.Routes) == 0 {
		add(Plain, "no requests in the last seconds")
	}
	for _, r := range v.Routes[:nRoutes] {
		add(Plain, fmt.Sprintf("%-*s  %-*s  %8.1f  %9s  %9s  %s", svcW, cut(r.Service, svcW), routeW, cut(r.Route, routeW),
			r.PerSecond, correlate.FormatNs(r.P50Ns), correlate.FormatNs(r.P99Ns), SharesText(r.Phases)))
	}
	if n := len(v.Routes) - nRoutes; n > 0 {
		add(Plain, fmt.Sprintf("… %d more routes", n))
	}
	add(Plain, "")
	add(Heading, "FINDINGS (most time lost first)")
	if len(v.Findings) == 0 {
		add(Plain, "none")
	}
	for _, f := range v.Findings[:nFindings] {
		add(Alert, FindingText(f))
	}
	if nFindings > 0 {
		add(Plain, "  remedy: "+v.Findings[0].Remedy)
		add(Plain, "  confirm: "+v.Findings[0].Confirm)
	}
	add(Plain, "")
	add(Heading, "SLOWEST REQUESTS")
	nSlow := min(len(v.Slowest), max((height-len(out))/2, 0))
	if len(v.Slowest) == 0 {
		add(Plain, "none")
	}
	for _, s := range v.Slowest[:nSlow] {
		add(Plain, SlowHead(s))
		add(Plain, "    "+Breakdown(s))
	}
	if len(out) > height {
		out = out[:height]
	}
	return out
}

// WritePlain writes v as lines for a log or a pipe, each starting with
// the time: the routes, the findings and the three slowest requests.
func WritePlain(w io.Writer, v View) {
	at := time.Unix(0, v.UnixNano).Format("15:04:05")
	fmt.Fprintf(w, "%s last %.0f s: %d requests\n", at, v.Window, v.Requests)
	for _, r := range v.Routes {
		fmt.Fprintf(w, "%s route %s %s: %.1f req/s p50 %s p99 %s; %s\n", at, r.Service, r.Route, r.PerSecond, correlate.FormatNs(r.P50Ns), correlate.FormatNs(r.P99Ns), SharesText(r.Phases))
	}
	for _, f := range v.Findings {
		fmt.Fprintf(w, "%s finding %s\n", at, FindingText(f))
	}
	for _, s := range v.Slowest[:min(3, len(v.Slowest))] {
		fmt.Fprintf(w, "%s slow %s: %s\n", at, strings.TrimSpace(SlowHead(s)), Breakdown(s))
	}
}

// SharesText is "app 92.1% recv_queue 6.0% [runqueue 1.1%] +ack_wait
// 3.0%": phases of at least 0.1 %, nested ones in brackets, those
// outside the duration after a +.
func SharesText(ps []PhaseShare) string {
	var b strings.Builder
	for _, p := range ps {
		if p.Share < 0.001 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		switch {
		case p.Nested:
			fmt.Fprintf(&b, "[%s %.1f%%]", p.Phase, 100*p.Share)
		case p.Outside:
			fmt.Fprintf(&b, "+%s %.1f%%", p.Phase, 100*p.Share)
		default:
			fmt.Fprintf(&b, "%s %.1f%%", p.Phase, 100*p.Share)
		}
	}
	return b.String()
}

// FindingText is one finding's line.
func FindingText(f Finding) string {
	return fmt.Sprintf("%s %s: %s (%s) on %d requests, %s lost", f.Service, f.Route, f.Code, f.Phase, f.Requests, correlate.FormatNs(f.LostNs))
}

// SlowHead is a slow request's first line.
func SlowHead(s Slow) string {
	line := fmt.Sprintf("%9s  %s %s pid %d", correlate.FormatNs(s.DurationNs), s.Service, s.Route, s.PID)
	if s.Peer != "" {
		line += " from " + s.Peer
	}
	line += " at " + time.Unix(0, s.EndUnixNano).Format("15:04:05.000")
	if len(s.Findings) > 0 {
		line += "  findings: " + strings.Join(s.Findings, ", ")
	}
	return line
}

// Breakdown is a request's phases on one line, nested ones in brackets.
func Breakdown(s Slow) string {
	var b strings.Builder
	for _, p := range s.Phases {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		if p.Nested {
			fmt.Fprintf(&b, "[%s=%s]", p.Phase, correlate.FormatNs(p.Ns))
		} else {
			fmt.Fprintf(&b, "%s=%s", p.Phase, correlate.FormatNs(p.Ns))
		}
	}
	return b.String()
}

// columnWidths fit the longest service and route, within bounds.
func columnWidths(v View) (svc, route int) {
	svc, route = len("SERVICE"), len("ROUTE")
	for _, r := range v.Routes {
		svc = max(svc, utf8.RuneCountInString(r.Service))
		route = max(route, utf8.RuneCountInString(r.Route))
	}
	return min(svc, 20), min(route, 36)
}

// cut shortens s to n characters, the last one "…" when cut.
func cut(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
