// Package cgroupfs finds the cgroup file systems: where the cgroup v2
// hierarchy and the v1 hierarchy of the cpu controller are mounted.
package cgroupfs

import (
	"bytes"
	"strconv"
	"strings"
)

// Mounts finds, in /proc/self/mountinfo, where the cgroup v2 hierarchy
// and the v1 hierarchy of the cpu controller are mounted (the root of
// the hierarchy: a mount of a subdirectory is skipped; the first of
// each). Empty: not mounted.
func Mounts(mountinfo []byte) (v2, v1cpu string) {
	for line := range bytes.Lines(mountinfo) {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(strings.TrimRight(string(line), "\n"), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 || f[3] != "/" {
			continue
		}
		switch g[0] {
		case "cgroup2":
			if v2 == "" {
				v2 = Unescape(f[4])
			}
		case "cgroup":
			for _, o := range strings.Split(g[2], ",") {
				if o == "cpu" && v1cpu == "" {
					v1cpu = Unescape(f[4])
				}
			}
		}
	}
	return v2, v1cpu
}

// Unescape undoes mountinfo's octal escapes (\040 for a space).
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
