package loader

import "testing"

// The per-CPU LRU maps keep their compiled size on small hosts and grow
// with the possible CPUs so that each CPU's list holds perCPU calls.
func TestPerCPUListEntries(t *testing.T) {
	for _, c := range []struct {
		compiled uint32
		cpus     int
		perCPU   uint32
		want     uint32
	}{
		{8192, 2, 256, 8192},
		{8192, 32, 256, 8192},
		{8192, 33, 256, 33 * 256},
		{8192, 96, 256, 96 * 256},
		{8192, 96, 1024, 96 * 1024},
		{8192, 0, 1024, 8192},
		{8192, 1 << 20, 1024, 1 << 24},
	} {
		got := perCPUListEntries(c.compiled, c.cpus, c.perCPU)
		if got != c.want {
			t.Errorf("perCPUListEntries(%d, %d, %d) = %d, want %d", c.compiled, c.cpus, c.perCPU, got, c.want)
		}
		if c.cpus > 0 && got < 1<<24 && uint64(got)/uint64(c.cpus) < uint64(c.perCPU) {
			t.Errorf("perCPUListEntries(%d, %d, %d) = %d leaves a CPU fewer than %d", c.compiled, c.cpus, c.perCPU, got, c.perCPU)
		}
	}
}
