/* Whether CFS bandwidth throttling can hold a serving thread at all: the
 * scheduler programs (sched.h), which fire for every context switch of
 * the host, are attached only once a serving thread is found under a
 * CPU quota. Until then no traced request can be throttled, and its
 * run-queue wait (the kernel's run_delay) needs no hook. */
#pragma once

#include "maps.h"

/* The scheduler's "no quota" (RUNTIME_INF). */
#define QUOTA_NONE (~0ULL)
/* Cgroup levels looked at: a thread's own and its ancestors'. */
#define QUOTA_DEPTH 16
/* A thread's cgroups are looked at again after this long: a quota may be
 * set, or the thread moved, at any time. */
#define QUOTA_RECHECK_NS 1000000000ULL

/* task's task group, or one of its ancestors, has a CFS quota (cgroup
 * v2 cpu.max or v1 cpu.cfs_quota_us: both set cfs_bandwidth.quota). */
static __always_inline int under_cpu_quota(struct task_struct *task)
{
	if (!bpf_core_field_exists(((struct task_group *)0)->cfs_bandwidth))
		return 0; /* no CONFIG_CFS_BANDWIDTH: nothing throttles */
	struct task_group *tg = BPF_CORE_READ(task, sched_task_group);

	for (int i = 0; i < QUOTA_DEPTH && tg; i++) {
		if (BPF_CORE_READ(tg, cfs_bandwidth.quota) != QUOTA_NONE)
			return 1;
		tg = BPF_CORE_READ(tg, parent);
	}
	return 0;
}

/* At a request's first read, at most once a second per thread (checked:
 * its task_mark's): tell
 * user space (CNT_QUOTA_SEEN) if the thread runs under a quota. (Not
 * stopped once the hooks are attached: user space attaches them and
 * validates their way at start, so no flag of theirs can say it; a
 * second's check costs a few loads per level.) */
static __always_inline void note_quota(struct task_struct *task, __u64 *checked, __u64 now)
{
	if (now - *checked < QUOTA_RECHECK_NS)
		return;
	*checked = now;
	if (under_cpu_quota(task))
		count(CNT_QUOTA_SEEN);
}
