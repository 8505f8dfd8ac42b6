package export

import (
	"fmt"
	"io"
	"strings"

	"github.com/tracerd/tracerd/internal/correlate"
)

// summaryFindings is how many (route, cause) rows the summary shows.
const summaryFindings = 20

// writeFindings prints the summary's findings: per route and cause, the
// requests it was found on and the time it cost them, most first, with
// the command that confirms it and the remedy.
func (s *Summary) writeFindings(w io.Writer) {
	rows := s.findings.Rows()
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\nfindings, most time lost first (docs/findings.md):\n")
	for i, r := range rows {
		if i == summaryFindings {
			fmt.Fprintf(w, "  … and %d more\n", len(rows)-i)
			break
		}
		fmt.Fprintf(w, "  %d. %s %s: %s (%s) on %d requests, %s lost, %s on average\n", i+1, r.Service, r.Route, r.Code, r.Phase,
			r.Count, correlate.FormatNs(r.LostNs), correlate.FormatNs(r.LostNs/r.Count))
		fmt.Fprintf(w, "     confirm: %s\n     remedy: %s\n", r.Confirm, r.Code.Remedy())
	}
	if s.findings.Dropped > 0 {
		fmt.Fprintf(w, "  (%d findings on further routes not counted)\n", s.findings.Dropped)
	}
}

// FindingsLine renders a request's findings on one line:
// "cfs_throttled 40.0ms (cfs_throttle), gc_pause 2.1ms (gc_stw)".
func FindingsLine(r *correlate.Request) string {
	var b strings.Builder
	for i, f := range r.Findings {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s (%s)", f.Code, correlate.FormatNs(f.LostNs), f.Phase)
	}
	return b.String()
}
