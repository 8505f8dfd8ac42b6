/* Process lifecycle of traced processes, so that user space attaches Go
 * probes to new and exec'd processes and removes them on exit. */
#pragma once

#include "attach.h"
#include "maps.h"
#include "filter.h"

static __always_inline void emit_proc(__u32 pid, __u32 what)
{
	struct proc_note ev = { .kind = EV_PROC, .pid = pid, .what = what };

	if (bpf_ringbuf_output(&events, &ev, sizeof(ev), ringbuf_flags()))
		count(CNT_RINGBUF_DROPS);
}

static __always_inline int on_exec(struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);
	struct filter_config *f = filter_config();
	int traced = bpf_map_lookup_elem(&traced_tgids, &tgid) != NULL;
	int probed = bpf_map_lookup_elem(&go_procs, &tgid) != NULL;
	/* Selected by pid, comm or cgroup (a port is unknown at exec; with
	 * none of those kinds a process is adopted at its first accept). */
	int by_process = f && (f->pids || f->comms || f->cgroups);
	int selected = by_process && process_matches(f, tgid);

	/* Keep them ints: clang would OR the two pointers, which the
	 * verifier refuses. */
	barrier_var(traced);
	barrier_var(probed);

	/* A new binary (its name is already the new one here): old offsets
	 * no longer apply. */
	bpf_map_delete_elem(&go_procs, &tgid);
	if (by_process && !selected) {
		/* Out of the selection now (e.g. --comm and another name):
		 * its Go probes go. Connections it accepted while selected
		 * stay traced until they close, under its new name. */
		if (traced || probed)
			emit_proc(tgid, PROC_EXIT);
		bpf_map_delete_elem(&traced_tgids, &tgid);
		return 0;
	}
	if (traced || selected)
		emit_proc(tgid, PROC_EXEC);
	return 0;
}

static __always_inline int on_exit(struct task_struct *p, int btf)
{
	__u32 tgid = KREAD(btf, p, tgid);
	__u32 tid = KREAD(btf, p, pid);

	/* Only serving threads have an entry (and a mark). */
	if (task_candidate(p, btf))
		bpf_map_delete_elem(&tasks, &tid);
	/* The last thread of the process: do_exit counted it out of
	 * signal->live before the event (the group_dead argument that only
	 * newer kernels pass says the same). */
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	/* Traced, or probed without a traced connection yet (selected by
	 * pid, comm or cgroup): either way its probes go. */
	if (!bpf_map_lookup_elem(&traced_tgids, &tgid) && !bpf_map_lookup_elem(&go_procs, &tgid))
		return 0;
	bpf_map_delete_elem(&traced_tgids, &tgid);
	bpf_map_delete_elem(&go_procs, &tgid);
	bpf_map_delete_elem(&go_stw, &tgid);
	emit_proc(tgid, PROC_EXIT);
	return 0;
}

TRACEPOINT_PROGS(sched_process_exec, sched_process_exec, on_exec(p), struct task_struct *p)
TRACEPOINT_PROGS(sched_process_exit, sched_process_exit, on_exit(p, btf), struct task_struct *p)
