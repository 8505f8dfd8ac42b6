// Package export writes correlate.Requests out: JSON lines and pprof
// profiles (OTLP and Prometheus join later). Every exporter reads the
// same Request and uses the phase names verbatim.
package export
