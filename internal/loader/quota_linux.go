package loader

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/tracerd/tracerd/internal/cgroupfs"
)

// The scheduler's hooks (sched_switch, sched_wakeup) run for every
// context switch of the host, traced or not, and they time one thing:
// how much of a serving thread's run-queue wait CFS bandwidth
// throttling held it (run-queue waits themselves are the kernel's own
// count, read at the request's boundaries). Throttling needs a CPU
// quota on the thread's cgroup or one of its ancestors. So they are
// attached at start only when some cgroup of the host has a quota;
// otherwise the kernel side looks, at most once a second per serving
// thread, whether the thread runs under one (bpf/quota.h), and the
// periodic look attaches them the first time it does (≤ 1 s later).
// Until then a traced request cannot be throttled: its cfs_throttle is
// 0 and its runqueue the whole wait, as before. Once attached they stay.
//
// TRACERD_SCHED_HOOKS=start attaches them at start whatever the quotas.

// quotaScanLimit bounds the directories read at start: a host with more
// cgroups gets the hooks at once (as if a quota were there).
const quotaScanLimit = 20000

// hasQuota says whether the cgroup directory dir sets a CPU quota:
// cgroup v2's cpu.max other than "max …", v1's cpu.cfs_quota_us other
// than -1.
func hasQuota(dir string, v2 bool) bool {
	if v2 {
		b, err := os.ReadFile(filepath.Join(dir, "cpu.max"))
		return err == nil && len(bytes.TrimSpace(b)) > 0 && !bytes.HasPrefix(b, []byte("max"))
	}
	b, err := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us"))
	return err == nil && len(bytes.TrimSpace(b)) > 0 && string(bytes.TrimSpace(b)) != "-1"
}

var errQuotaFound = errors.New("quota found")

// quotaUnder walks the cgroup tree at root: whether a directory sets a
// CPU quota, or the tree holds more than limit directories (then the
// answer is yes: the caller should not wait for one).
func quotaUnder(root string, v2 bool, limit int) bool {
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil // a cgroup removed meanwhile, or a file
		}
		if n++; n > limit || hasQuota(path, v2) {
			return errQuotaFound
		}
		return nil
	})
	return errors.Is(err, errQuotaFound)
}

// hostHasCPUQuota says whether any cgroup of the host sets a CPU quota
// (or there are too many to look at). How long it took is for the log.
func hostHasCPUQuota() (bool, time.Duration) {
	start := time.Now()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return true, time.Since(start) // cannot tell: attach
	}
	v2, v1 := cgroupfs.Mounts(mi)
	found := v2 != "" && quotaUnder(v2, true, quotaScanLimit) || v1 != "" && quotaUnder(v1, false, quotaScanLimit)
	return found, time.Since(start)
}
