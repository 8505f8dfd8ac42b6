// Package correlate turns the kernel's per-request records into Request,
// the one model every exporter consumes: monotonic times become wall-clock
// times once, phases are derived from the timestamps, and HTTP facts are
// parsed from the captured heads.
package correlate
