// Package export writes correlate.Requests out: JSON lines, pprof
// profiles, OTLP span trees and the human summary. Every exporter reads
// the same Request and uses the phase names verbatim.
package export
