// Package loader loads tracerd's CO-RE BPF programs, probes which kernel
// hooks exist, attaches what it can and reads finished-request records
// from the ring buffer. A missing optional hook disables only the phases
// that depend on it; a missing required hook is an error.
package loader
