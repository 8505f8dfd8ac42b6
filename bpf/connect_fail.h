/* Port pressure: connect() calls of selected processes that failed
 * with EADDRNOTAVAIL ("Cannot assign requested address": the namespace
 * has no local port left for that destination), counted per
 * destination. The destination is read back from the caller's sockaddr
 * at the syscall's exit (through its saved registers), so a connect
 * that succeeds, or fails otherwise, costs one compare and no map
 * update. A non-blocking connect reports EADDRNOTAVAIL from connect()
 * itself too: the local port is chosen before the SYN is sent. */
#pragma once

#include "accept.h"
#include "filter.h"

#define EADDRNOTAVAIL_ERRNO 99

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct connect_fail_key);
	__type(value, __u64);
} connect_fails SEC(".maps");

/* Failures not counted per destination: connect_fails was full. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} connect_fails_lost SEC(".maps");

/* A process whose failures count: one that owns a traced connection, or
 * that the pid/comm/cgroup selection names (a pure client has no
 * accepted connection), or any process when nothing is selected. */
static __always_inline int connect_fail_selected(__u32 tgid)
{
	if (bpf_map_lookup_elem(&traced_tgids, &tgid))
		return 1;
	struct filter_config *f = filter_config();
	if (!f)
		return 0;
	if (f->pids || f->comms || f->cgroups)
		return process_matches(f, tgid);
	return !f->ports;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int connect_eaddrnotavail(struct syscall_exit_ctx *ctx)
{
	if (ctx->ret != -EADDRNOTAVAIL_ERRNO)
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!connect_fail_selected(tgid))
		return 0;

	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	/* connect(fd, uservaddr, addrlen): the sockaddr in the 2nd argument. */
	const void *uaddr = (const void *)BPF_CORE_READ(regs, si);
	struct connect_fail_key key = {};
	__u16 family = 0;

	key.tgid = tgid;
	key.netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	bpf_probe_read_user(&family, sizeof(family), uaddr);
	if (family == FAMILY_INET) {
		struct sockaddr_in sa = {};

		bpf_probe_read_user(&sa, sizeof(sa), uaddr);
		key.port = bpf_ntohs(sa.sin_port);
		__builtin_memcpy(key.addr, &sa.sin_addr, 4);
	} else if (family == FAMILY_INET6) {
		struct sockaddr_in6 sa = {};

		bpf_probe_read_user(&sa, sizeof(sa), uaddr);
		key.port = bpf_ntohs(sa.sin6_port);
		__builtin_memcpy(key.addr, &sa.sin6_addr, 16);
	} else {
		return 0;
	}
	key.family = family;

	__u64 *n = bpf_map_lookup_elem(&connect_fails, &key);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return 0;
	}
	__u64 one = 1;
	if (bpf_map_update_elem(&connect_fails, &key, &one, BPF_NOEXIST) == 0)
		return 0;
	n = bpf_map_lookup_elem(&connect_fails, &key); /* another CPU's insert */
	if (n) {
		__sync_fetch_and_add(n, 1);
		return 0;
	}
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&connect_fails_lost, &zero);
	if (lost)
		__sync_fetch_and_add(lost, 1);
	return 0;
}
