/* Scheduler: per-thread time runnable-but-not-running (run queue) and
 * held off by CFS bandwidth throttling, for traced processes only. */
#pragma once

#include "attach.h"
#include "maps.h"

#define TASK_RUNNING 0

static __always_inline int traced_task(struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);
	return bpf_map_lookup_elem(&traced_tgids, &tgid) != NULL;
}

/* Kernels < 6.18 throttle a cgroup's run queue (cfs_rq), not its tasks:
 * a task already waiting there when the quota runs out is never switched
 * out "throttled". Its cfs_rq's throttled_clock (rq clock time) tells
 * whether a throttle began while it waited; rq->clock was just updated
 * by the scheduler at each event tracerd sees. 0 where unknown. */
static __always_inline __u64 rq_clock_of(struct task_struct *p)
{
	if (bpf_core_field_exists(p->throttled))
		return 0; /* per-task throttling: not needed */
	return BPF_CORE_READ(p, se.cfs_rq, rq, clock);
}

static __always_inline void mark_runnable(struct task_struct *p, __u8 throttled)
{
	__u32 tid = BPF_CORE_READ(p, pid);
	struct task_sched *t = bpf_map_lookup_elem(&tasks, &tid);

	/* Threads get an entry when they start serving a request. */
	if (!t)
		return;
	t->enqueued_at = bpf_ktime_get_ns();
	t->enqueued_rq = rq_clock_of(p);
	t->throttled = throttled;
}

/* Was p preempted by CFS bandwidth throttling? 6.18 throttles per task
 * (task_struct.throttled); older kernels throttle the cfs_rq. */
static __always_inline __u8 task_throttled(struct task_struct *p)
{
	if (bpf_core_field_exists(p->throttled))
		return BPF_CORE_READ(p, throttled);
	return BPF_CORE_READ(p, se.cfs_rq, throttle_count) > 0;
}

/* A task woken into a throttled cfs_rq (kernels < 6.18 throttle the
 * runqueue, not the task) waits for the quota, not for a CPU. */
static __always_inline int on_wakeup(struct task_struct *p)
{
	if (traced_task(p))
		mark_runnable(p, task_throttled(p));
	return 0;
}

TRACEPOINT_PROGS(sched_wakeup, sched_wakeup, on_wakeup(p), struct task_struct *p)
TRACEPOINT_PROGS(sched_wakeup_new, sched_wakeup_new, on_wakeup(p), struct task_struct *p)

/* The part of a run-queue wait that its cfs_rq spent throttled: from
 * the throttle's start to now (like a task preempted by the throttle,
 * whose whole wait counts), when the throttle began during the wait. */
static __always_inline __u64 throttled_while_queued(struct task_struct *p, struct task_sched *t)
{
	__u64 now_rq = rq_clock_of(p);
	__u64 since;

	if (!now_rq || !t->enqueued_rq)
		return 0;
	since = BPF_CORE_READ(p, se.cfs_rq, throttled_clock);
	if (since <= t->enqueued_rq || since >= now_rq)
		return 0;
	return now_rq - since;
}

/* prev_state (a 4th argument since 5.18) is not read: prev->__state
 * says the same on every kernel. */
static __always_inline int on_switch(struct task_struct *prev, struct task_struct *next)
{
	if (traced_task(prev) && BPF_CORE_READ(prev, __state) == TASK_RUNNING)
		mark_runnable(prev, task_throttled(prev));

	if (!traced_task(next))
		return 0;
	__u32 tid = BPF_CORE_READ(next, pid);
	struct task_sched *t = bpf_map_lookup_elem(&tasks, &tid);
	if (!t || !t->enqueued_at)
		return 0;
	__u64 waited = bpf_ktime_get_ns() - t->enqueued_at;
	__u64 held = t->throttled ? waited : throttled_while_queued(next, t);
	if (held > waited)
		held = waited;
	t->throttle_total += held;
	t->runq_total += waited - held;
	t->enqueued_at = 0;
	t->throttled = 0;
	return 0;
}

TRACEPOINT_PROGS(sched_switch, sched_switch, on_switch(prev, next),
		 bool preempt, struct task_struct *prev, struct task_struct *next)
