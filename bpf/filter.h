/* Target selection: which accepting processes and sockets are traced.
 * Kinds combine with AND, values of one kind with OR. */
#pragma once

#include "maps.h"

/* Walk at most this many cgroup levels up, so that a path selects the
 * processes in its descendants too (a pod's cgroup, a unit's slice). */
#define CGROUP_MAX_DEPTH 8

static __always_inline int cgroup_selected(struct task_struct *task, __s32 v1_subsys)
{
	struct cgroup *cg;

	if (v1_subsys < 0) {
		cg = BPF_CORE_READ(task, cgroups, dfl_cgrp);
	} else {
		struct cgroup_subsys_state *css;
		__u32 ss = v1_subsys;

		if (ss >= CGROUP_SUBSYS_COUNT)
			return 0;
		css = BPF_CORE_READ(task, cgroups, subsys[ss]);
		cg = BPF_CORE_READ(css, cgroup);
	}
	for (int i = 0; i < CGROUP_MAX_DEPTH; i++) {
		if (!cg)
			return 0;
		__u64 id = BPF_CORE_READ(cg, kn, id);
		if (bpf_map_lookup_elem(&target_cgroups, &id))
			return 1;
		cg = BPF_CORE_READ(cg, self.parent, cgroup);
	}
	return 0;
}

/* The pid, comm and cgroup tests (the port is known only at accept). */
static __always_inline int process_matches(struct filter_config *f, __u32 tgid)
{
	if (f->pids && !bpf_map_lookup_elem(&target_pids, &tgid))
		return 0;
	if (f->comms) {
		struct comm_key key = {};

		bpf_get_current_comm(key.comm, sizeof(key.comm));
		if (!bpf_map_lookup_elem(&target_comms, &key))
			return 0;
	}
	if (f->cgroups &&
	    !cgroup_selected((struct task_struct *)bpf_get_current_task(), f->cgroup_v1_subsys))
		return 0;
	return 1;
}

/* Is the current process, accepting on local port lport, a target? */
static __always_inline int process_selected(struct filter_config *f, __u32 tgid, __u16 lport)
{
	if (f->ports && !bpf_map_lookup_elem(&target_ports, &lport))
		return 0;
	return process_matches(f, tgid);
}
