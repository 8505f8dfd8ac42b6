/* Scheduler: the part of a serving thread's run-queue waits that CFS
 * bandwidth throttling held it off the CPU. (The waits themselves are
 * the kernel's own count, task->sched_info.run_delay, read at T_rd and
 * T_wl: request.h.) Attached only once a serving thread runs under a CPU
 * quota (quota.h). Every program first tests the threads' mark
 * (task_candidate): a context switch of any other thread of the host
 * costs two loads. */
#pragma once

#include "attach.h"
#include "maps.h"

#define TASK_RUNNING 0

/* Kernels < 6.18 throttle a cgroup's run queue (cfs_rq), not its tasks:
 * a task already waiting there when the quota runs out is never switched
 * out "throttled". The cfs_rq's cumulative throttled time, read when the
 * task becomes runnable and again when it runs, says how much of the
 * wait was throttled: 6.6+ keep it on the rq clock
 * (throttled_clock_self_time), older kernels on the PELT clock
 * (throttled_clock_pelt_time, which runs with the rq clock less IRQ
 * time). Both grow when a throttle ends, before the task can run. */
static __always_inline __u64 cfs_rq_throttled_total(struct cfs_rq *cfs)
{
	if (bpf_core_field_exists(cfs->throttled_clock_self_time))
		return BPF_CORE_READ(cfs, throttled_clock_self_time);
	return BPF_CORE_READ(cfs, throttled_clock_pelt_time);
}

static __always_inline void note_throttle_base(struct task_struct *p, int btf, struct task_sched *t)
{
	if (bpf_core_field_exists(p->throttled))
		return; /* per-task throttling: switch-outs say it */
	struct cfs_rq *cfs = KREAD(btf, p, se.cfs_rq);
	t->thr_cfs_rq = (__u64)cfs;
	t->thr_base = cfs ? cfs_rq_throttled_total(cfs) : 0;
}

/* Was p preempted by CFS bandwidth throttling? 6.18 throttles per task
 * (task_struct.throttled); older kernels throttle the cfs_rq. */
static __always_inline __u8 task_throttled(struct task_struct *p, int btf)
{
	if (bpf_core_field_exists(p->throttled))
		return KREAD(btf, p, throttled);
	return BPF_CORE_READ(p, se.cfs_rq, throttle_count) > 0;
}

static __always_inline void mark_runnable(struct task_struct *p, int btf)
{
	__u8 throttled = task_throttled(p, btf);

	/* Per-task throttling: only a throttled task's wait has a throttled
	 * part (a wait that was not switched out or woken throttled adds
	 * nothing to throttle_total). */
	if (bpf_core_field_exists(p->throttled) && !throttled)
		return;
	__u32 tid = KREAD(btf, p, pid);
	struct task_sched *t = bpf_map_lookup_elem(&tasks, &tid);

	/* Threads get an entry when they start serving a request. */
	if (!t)
		return;
	t->enqueued_at = bpf_ktime_get_ns();
	t->throttled = throttled;
	note_throttle_base(p, btf, t);
}

/* A task woken into a throttled cfs_rq waits for the quota, not for a
 * CPU: the throttled part of its wait starts being timed here. (6.18's
 * per-task throttling needs it too: without it, throttled time measured
 * against cpu.stat comes out several ms high per request.) */
static __always_inline int on_wakeup(struct task_struct *p, int btf)
{
	if (task_candidate(p, btf))
		mark_runnable(p, btf);
	return 0;
}

TRACEPOINT_PROGS(sched_wakeup, sched_wakeup, on_wakeup(p, btf), struct task_struct *p)
TRACEPOINT_PROGS(sched_wakeup_new, sched_wakeup_new, on_wakeup(p, btf), struct task_struct *p)

/* The part of a run-queue wait that its cfs_rq spent throttled (kernels
 * < 6.18; 0 if the task changed CPU meanwhile: another cfs_rq). */
static __always_inline __u64 throttled_while_queued(struct task_struct *p, int btf, struct task_sched *t)
{
	if (bpf_core_field_exists(p->throttled) || !t->thr_cfs_rq)
		return 0;
	struct cfs_rq *cfs = KREAD(btf, p, se.cfs_rq);
	if ((__u64)cfs != t->thr_cfs_rq)
		return 0;
	return cfs_rq_throttled_total(cfs) - t->thr_base;
}

/* prev_state (a 4th argument since 5.18) is not read: prev->__state
 * says the same on every kernel. */
static __always_inline int on_switch(struct task_struct *prev, struct task_struct *next, int btf)
{
	if (task_candidate(prev, btf) && KREAD(btf, prev, __state) == TASK_RUNNING)
		mark_runnable(prev, btf);

	if (!task_candidate(next, btf))
		return 0;
	__u32 tid = KREAD(btf, next, pid);
	struct task_sched *t = bpf_map_lookup_elem(&tasks, &tid);
	if (!t || !t->enqueued_at)
		return 0;
	__u64 waited = bpf_ktime_get_ns() - t->enqueued_at;
	__u64 held = t->throttled ? waited : throttled_while_queued(next, btf, t);
	if (held > waited)
		held = waited;
	t->throttle_total += held;
	t->enqueued_at = 0;
	t->throttled = 0;
	return 0;
}

TRACEPOINT_PROGS(sched_switch, sched_switch, on_switch(prev, next, btf),
		 bool preempt, struct task_struct *prev, struct task_struct *next)
