// Package loader loads tracerd's CO-RE BPF programs, probes which kernel
// hooks exist, attaches what it can and reads finished-request records
// from the ring buffer. A missing optional hook disables only the phases
// that depend on it; a missing required hook is an error.
//
// Two kinds of programs are not hooks: the Go uprobe programs, which
// internal/goprobe attaches per process (as uprobe_multi links where the
// kernel has them, see UprobeMulti), and idle_sweep, a syscall program
// that ends quiet keep-alive requests, run when one may be due
// (SweepIdle, called every IdleSweepEvery).
package loader
