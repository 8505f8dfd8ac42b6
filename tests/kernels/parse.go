package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// scenario is one run of the test binary in the guest.
type scenario struct {
	Name string // column of the report
	Run  string // -test.run
	// Known: why a failure here is reported but does not fail the run
	// (a truth the emulated guest cannot give as precisely as the host).
	Known string
}

// checkName is the section of `tracerd check`'s output.
const checkName = "check"

// Statuses of a scenario.
const (
	pass   = "PASS"
	fail   = "FAIL"
	skip   = "SKIP"
	notRun = "NOT RUN"
)

// mark is a marker line of /init: "begin NAME", "end NAME RC", "boot
// RELEASE …", "warning …", "done".
type mark struct {
	kind, name string
	rc         int
	rest       string
}

func parseMarker(text string) (mark, bool) {
	i := strings.Index(text, marker+" ")
	if i < 0 {
		return mark{}, false
	}
	f := strings.Fields(text[i+len(marker):])
	if len(f) == 0 {
		return mark{}, false
	}
	m := mark{kind: f[0], rest: strings.Join(f[1:], " ")}
	if (m.kind == "begin" || m.kind == "end" || m.kind == "retry") && len(f) > 1 {
		m.name = f[1]
	}
	if m.kind == "end" && len(f) > 2 {
		m.rc, _ = strconv.Atoi(f[2])
	}
	return m, true
}

// outcome is what became of one scenario (or of `tracerd check`).
type outcome struct {
	name   string
	status string
	rc     int
	took   time.Duration
	why    []string // the lines that say why it failed or skipped
	// headline is the one line of why for a summary, when not its
	// first: the first failed test's last message.
	headline string
	notes    []string // subtests skipped in a scenario that passed
	output   []string // everything it printed
	known    string   // scenario.Known: a failure reported, not failing the run
	retried  bool     // failed once and ran again (the status is the second run's)
}

// guestReport is one kernel's run, parsed.
type guestReport struct {
	k         *kernel
	boot      time.Duration // qemu start to /init's first line
	wall      time.Duration
	others    float64 // host CPUs busy with other work meanwhile
	ended     string  // why the guest did not finish, "" when it did
	warnings  []string
	check     outcome
	scenarios []outcome
}

// failed reports whether `tracerd check` or a scenario failed or did
// not run.
func (g *guestReport) failed() bool {
	for _, o := range append([]outcome{g.check}, g.scenarios...) {
		if (o.status == fail && o.known == "") || o.status == notRun {
			return true
		}
	}
	return g.ended != ""
}

// parseGuest splits a guest's console into `tracerd check` and the
// scenarios by their markers and judges each.
func parseGuest(res *bootResult, scenarios []scenario) *guestReport {
	g := &guestReport{ended: res.ended, wall: res.wall, others: res.others}
	sections := map[string]*outcome{}
	var cur *outcome
	var begun time.Duration
	for _, l := range res.lines {
		m, ok := parseMarker(l.text)
		if !ok {
			if cur != nil {
				cur.output = append(cur.output, l.text)
			}
			continue
		}
		switch m.kind {
		case "boot":
			g.boot = l.at
		case "warning":
			g.warnings = append(g.warnings, m.rest)
		case "begin":
			cur = &outcome{name: m.name}
			sections[m.name] = cur
			begun = l.at
		case "retry":
			if cur != nil && cur.name == m.name {
				cur.retried = true
			}
		case "end":
			if cur != nil && cur.name == m.name {
				cur.rc, cur.took = m.rc, l.at-begun
				judge(cur)
				if cur.retried && cur.status == pass {
					cur.notes = append(cur.notes, "failed on the first run, passed on the second: "+firstFailure(cur.output))
				}
				cur = nil
			}
		}
	}
	if cur != nil { // the guest ended inside it
		cur.status, cur.rc = fail, -1
		cur.took = res.wall - begun
		cur.why = append([]string{g.ended}, tail(cur.output, 8)...)
	}
	g.check = sectionOr(sections, checkName, g.ended)
	for _, s := range scenarios {
		o := sectionOr(sections, s.Name, g.ended)
		o.known = s.Known
		g.scenarios = append(g.scenarios, o)
	}
	return g
}

func sectionOr(sections map[string]*outcome, name, ended string) outcome {
	if o, ok := sections[name]; ok {
		return *o
	}
	why := ended
	if why == "" {
		why = "no output from the guest for it"
	}
	return outcome{name: name, status: notRun, rc: -1, why: []string{why}}
}

var (
	runLine    = regexp.MustCompile(`^=== (?:RUN|CONT|NAME) +(\S+)`)
	resultLine = regexp.MustCompile(`^ *--- (PASS|FAIL|SKIP): (\S+)`)
	msgLine    = regexp.MustCompile(`^ {4}\S+\.go:\d+: `)
)

// goTest is the -test.v output of one test binary run, by test.
type goTest struct {
	order    []string              // tests by first appearance
	status   map[string]string     // test → PASS/FAIL/SKIP
	messages map[string][][]string // test → its t.Log/Error/Skip messages (each its lines) since its last subtest started
}

func parseGoTest(output []string) *goTest {
	gt := &goTest{status: map[string]string{}, messages: map[string][][]string{}}
	current := ""
	for _, line := range output {
		if m := runLine.FindStringSubmatch(line); m != nil {
			current = m[1]
			if _, seen := gt.messages[current]; !seen {
				gt.order = append(gt.order, current)
				gt.messages[current] = nil
			}
			// A parent's messages before a subtest are its set-up logs.
			if i := strings.LastIndex(current, "/"); i > 0 && strings.HasPrefix(line, "=== RUN") {
				gt.messages[current[:i]] = nil
			}
			continue
		}
		if m := resultLine.FindStringSubmatch(line); m != nil {
			gt.status[m[2]] = m[1]
			continue
		}
		msgs := gt.messages[current]
		switch {
		case current == "":
		case msgLine.MatchString(line):
			gt.messages[current] = append(msgs, []string{strings.TrimSpace(line)})
		case strings.HasPrefix(line, "        ") && len(msgs) > 0: // a message's next line
			msgs[len(msgs)-1] = append(msgs[len(msgs)-1], strings.TrimRight(line[8:], " "))
		}
	}
	return gt
}

// leaves are the tests with status st that have no child with it.
func (gt *goTest) leaves(st string) []string {
	var out []string
	for _, t := range gt.order {
		if gt.status[t] != st {
			continue
		}
		leaf := true
		for _, c := range gt.order {
			if strings.HasPrefix(c, t+"/") && gt.status[c] == st {
				leaf = false
			}
		}
		if leaf {
			out = append(out, t)
		}
	}
	return out
}

// lastMessages are the last n messages of test, as lines for the
// report: each message's first line after the test's name, and of the
// last one (a t.Fatal's, a t.Skip's) its other lines too, at most
// `lines` of them: the first and the last, where a verifier log says
// what it rejected. go test -v prints t.Log and t.Error alike, so a
// failed check is most often among the last few messages, not always
// the last.
func (gt *goTest) lastMessages(test string, n, lines int) []string {
	msgs := gt.messages[test]
	msgs = msgs[max(0, len(msgs)-n):]
	var out []string
	for i, m := range msgs {
		out = append(out, test+": "+m[0])
		if i < len(msgs)-1 {
			continue
		}
		rest := m[1:]
		if len(rest) > lines { // lines in all, one of them saying how many were left out
			keep := lines - 2
			rest = append([]string{rest[0], fmt.Sprintf("… (%d lines)", len(rest)-1-keep)}, rest[len(rest)-keep:]...)
		}
		for _, l := range rest {
			out = append(out, "    "+l)
		}
	}
	return out
}

// judge sets o's status from its exit code and its test output.
func judge(o *outcome) {
	if o.name == checkName { // exit 1: tracing cannot work here
		o.status = pass
		if o.rc != 0 {
			o.status, o.why = fail, tail(nonEmpty(o.output), 1)
		}
		return
	}
	gt := parseGoTest(o.output)
	switch {
	case o.rc != 0:
		o.status = fail
		failed := gt.leaves(fail)
		for i, t := range failed[:min(len(failed), 4)] {
			msgs := gt.lastMessages(t, 3, 8)
			for j := len(msgs) - 1; i == 0 && j >= 0 && o.headline == ""; j-- {
				if !strings.HasPrefix(msgs[j], " ") { // not a continuation line
					o.headline = msgs[j]
				}
			}
			o.why = append(o.why, msgs...)
		}
		if len(failed) > 4 {
			o.why = append(o.why, fmt.Sprintf("and %d more failed: %s", len(failed)-4, strings.Join(failed[4:], " ")))
		}
		if len(o.why) == 0 { // a panic, the test timeout, a crash
			o.why = panicOrTail(o.output)
		}
	case contains(o.output, "testing: warning: no tests to run"):
		o.status, o.why = fail, []string{"no test matched -test.run"}
	case allSkipped(gt):
		o.status = skip
		for _, t := range gt.leaves(skip) {
			o.why = append(o.why, gt.lastMessages(t, 1, 2)...)
		}
	default:
		o.status = pass
		for _, t := range gt.leaves(skip) {
			o.notes = append(o.notes, gt.lastMessages(t, 1, 2)...)
		}
	}
}

// allSkipped: every top-level test run was skipped.
func allSkipped(gt *goTest) bool {
	top := 0
	for _, t := range gt.order {
		if !strings.Contains(t, "/") {
			top++
			if gt.status[t] != skip {
				return false
			}
		}
	}
	return top > 0
}

func panicOrTail(output []string) []string {
	for i, l := range output {
		if strings.HasPrefix(l, "panic: ") {
			return output[i:min(i+6, len(output))]
		}
	}
	return tail(output, 6)
}

func tail(lines []string, n int) []string {
	return lines[max(0, len(lines)-n):]
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

func nonEmpty(lines []string) []string {
	var out []string
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// firstFailure is the first failed check's message in a scenario's output.
func firstFailure(out []string) string {
	for _, l := range out {
		if strings.Contains(l, "_test.go:") && (strings.Contains(l, "allowed") || strings.Contains(l, "want")) {
			return strings.TrimSpace(l)
		}
	}
	for _, l := range out {
		if strings.Contains(l, "--- FAIL") {
			return strings.TrimSpace(l)
		}
	}
	return "(no message)"
}
