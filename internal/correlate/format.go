package correlate

import (
	"fmt"
	"time"
)

// FormatNs prints a duration in ns with three significant digits or so,
// as the summary and `tracerd top` show phases.
func FormatNs(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d >= time.Microsecond:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	}
	return fmt.Sprintf("%dns", ns)
}
