package goinspect

import (
	"errors"
	"fmt"
	"time"
)

// A binary is input from whoever can start a process on the host: every
// size and count read from it is checked against the file's real size (and
// the enclosing section's) before anything is allocated for it, and the
// inspection of one binary has a memory and a time budget, so that no file
// can make tracerd run out of memory or stall its Go probe worker.

var (
	// ErrCorrupt is returned by Open for an ELF file or a Go table whose
	// headers claim more than the file holds (truncated, or crafted).
	ErrCorrupt = errors.New("corrupt executable")
	// ErrBudget is returned by Open when inspecting the binary would cost
	// more memory or time than its size justifies.
	ErrBudget = errors.New("inspection budget exceeded")

	// errOutOfTime is an ErrBudget for time: it ends the inspection,
	// where memory refused for optional data (DWARF) only skips it.
	errOutOfTime = errors.New("out of time")
)

// corrupt returns an ErrCorrupt error saying what is wrong, e.g.
// corrupt("truncated or corrupt ELF", "section %d ...", i).
func corrupt(what, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", what, fmt.Sprintf(format, args...), ErrCorrupt)
}

// limits bound the cost of inspecting one binary.
type limits struct {
	// memPerByte and memBase bound what may be allocated for data read
	// from the binary: memBase + memPerByte × file size. A well-formed Go
	// binary costs less than 3 bytes per byte of file (its DWARF and
	// symbol table, parsed), stripped ones less than 1.
	memPerByte int64
	memBase    int64
	// timeout bounds the wall time of Open: tracerd's own 27 MB binary
	// takes 0.25 s, DWARF included.
	timeout time.Duration
}

var defaultLimits = limits{memPerByte: 8, memBase: 64 << 20, timeout: 20 * time.Second}

// budget is what is left of the limits while one binary is inspected.
type budget struct {
	allowed  int64
	left     int64
	deadline time.Time
}

func (l limits) budgetFor(fileSize int64) *budget {
	allowed := l.memBase + l.memPerByte*fileSize
	return &budget{allowed: allowed, left: allowed, deadline: time.Now().Add(l.timeout)}
}

// alloc accounts n bytes about to be allocated for what, or refuses. A
// nil budget has no limit (the offsets tables are generated from trusted
// builds).
func (b *budget) alloc(n uint64, what string) error {
	if b == nil {
		return nil
	}
	if n > uint64(b.left) {
		return fmt.Errorf("%s would take %d bytes, more than the %d left of the %d allowed for this file: %w",
			what, n, b.left, b.allowed, ErrBudget)
	}
	b.left -= int64(n)
	return b.tick(what)
}

// tick fails once the time budget is spent; loops over data read from the
// binary call it every few thousand iterations. A nil budget has no
// deadline.
func (b *budget) tick(what string) error {
	if b != nil && time.Now().After(b.deadline) {
		return fmt.Errorf("%s: %w: %w", what, errOutOfTime, ErrBudget)
	}
	return nil
}
