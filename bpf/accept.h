/* Connection lifecycle: ESTABLISHED (accept queue entry), accept(),
 * close. */
#pragma once

#include "attach.h"
#include "client.h"
#include "fd.h"
#include "request.h"
#include "proc.h"
#include "softirq.h"

/* The syscalls' exit context (format of syscalls/sys_exit_*). */
struct syscall_exit_ctx {
	__u64 pad;
	int nr;
	long ret;
};

/* The listener's accept queue as accept() took this connection from it
 * (the queue left, plus this one) and its limit. The listener is
 * accept()'s first argument, still in the syscall's saved registers. */
static __always_inline void note_listener(struct req_record *r)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	struct sock *l = tcp_sock_of_fd(BPF_CORE_READ(regs, di));

	if (!l)
		return;
	r->acc_queue = BPF_CORE_READ(l, sk_ack_backlog) + 1;
	r->acc_queue_max = BPF_CORE_READ(l, sk_max_ack_backlog);
}

static __always_inline int on_accept_exit(struct syscall_exit_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	long fd = ctx->ret;

	struct filter_config *f = filter_config();

	/* Go retries accept4 after EAGAIN: only successes matter. */
	if (fd < 0 || !f)
		return 0;
	if (f->pids && !bpf_map_lookup_elem(&target_pids, &tgid))
		return 0;

	struct sock *sk = tcp_sock_of_fd(fd);
	if (!sk)
		return 0;
	__u16 lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (!process_selected(f, tgid, lport))
		return 0;

	__u64 key = (__u64)sk;
	struct traced_conn *c;

	/* With marks on, the socket hooks see only marked sockets: one that
	 * became ESTABLISHED before tracerd attached has none and stays
	 * untraced; one whose mark could not be made (its pending entry
	 * says it was a candidate) is counted as not traced. */
	if (!sk_candidate(sk, 0)) {
		if (bpf_map_lookup_elem(&pending_est, &key)) {
			bpf_map_delete_elem(&pending_est, &key);
			count(CNT_CONN_MAP_FULL);
		}
		return 0;
	}
	{
		/* A zeroed conn is too large for the stack: insert, then fill. */
		static const struct traced_conn zero = {};
		if (bpf_map_update_elem(&conns, &key, &zero, BPF_ANY)) {
			count(CNT_CONN_MAP_FULL);
			return 0;
		}
	}
	c = bpf_map_lookup_elem(&conns, &key);
	if (!c)
		return 0;

	struct req_record *r = &c->req;
	__u64 now = bpf_ktime_get_ns();

	r->kind = EV_REQUEST;
	r->sk = key;
	r->pid = tgid;
	r->tid = (__u32)pid_tgid;
	r->t_acc = now;
	r->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(r->comm, sizeof(r->comm));
	fill_addrs(r, sk);
	note_listener(r);

	struct pending *p = bpf_map_lookup_elem(&pending_est, &key);
	if (p) {
		r->t_est = p->t_est;
		r->flags |= REQ_HAS_EST;
		c->est_softirq = p->est_softirq;
		c->est_has_softirq = p->est_has_softirq;
		/* Bytes may have arrived since the conn went in the map above
		 * (tcp_probe then set rx_ts on it): keep the earlier. */
		if (p->rx_ts && (!c->rx_ts || p->rx_ts < c->rx_ts)) {
			c->rx_ts = p->rx_ts;
			c->rx_softirq = p->rx_softirq;
			c->rx_has_softirq = p->rx_has_softirq;
		}
		bpf_map_delete_elem(&pending_est, &key);
	}

	__u8 one = 1;
	if (!bpf_map_update_elem(&traced_tgids, &tgid, &one, BPF_NOEXIST))
		emit_proc(tgid, PROC_TRACED);
	count(CNT_CONNS_TRACED);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int sys_exit_accept4(struct syscall_exit_ctx *ctx)
{
	return on_accept_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int sys_exit_accept(struct syscall_exit_ctx *ctx)
{
	return on_accept_exit(ctx);
}

static __always_inline int on_set_state(const struct sock *sk, int oldstate, int newstate, int btf)
{
	__u64 key = (__u64)sk;
	struct traced_conn *c = sk_candidate(sk, btf) ? bpf_map_lookup_elem(&conns, &key) : NULL;

	if (!c) {
		if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) {
			on_connect_start(sk, btf);
			return 0;
		}
		if (oldstate != TCP_SYN_RECV || newstate != TCP_ESTABLISHED)
			return 0;
		/* A child socket entered the accept queue. */
		struct filter_config *f = filter_config();

		if (!f)
			return 0;
		if (f->ports) {
			__u16 lport = KREAD(btf, sk, __sk_common.skc_num);
			if (!bpf_map_lookup_elem(&target_ports, &lport))
				return 0;
		}
		struct pending p = { .t_est = bpf_ktime_get_ns() };
		__u64 d = 0;

		/* The segment completing the handshake may carry the first
		 * request (start_request): its softirq delay, now. */
		p.est_has_softirq = softirq_delay(sk, btf, p.t_est, &d);
		p.est_softirq = d;
		bpf_map_update_elem(&pending_est, &key, &p, BPF_ANY);
		/* A candidate: the socket hooks look it up from now on. */
		if (btf)
			bpf_sk_storage_get(&sk_marks, (void *)sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		return 0;
	}

	if (c->req.direction == DIR_CLIENT && client_set_state(c, sk, oldstate, newstate))
		return 0;
	switch (newstate) {
	case TCP_FIN_WAIT2:
		/* Our FIN was acked, so was every byte before it. */
	case TCP_CLOSE:
		if (c->state == CONN_WRITING && c->req.t_tx && !c->req.t_ack &&
		    c->req.direction == DIR_SERVER)
			c->req.t_ack = bpf_ktime_get_ns();
		break;
	default:
		return 0;
	}
	/* The app cannot answer any more: the request is over. */
	emit(c, END_CLOSE);
	if (newstate == TCP_CLOSE) {
		bpf_map_delete_elem(&conns, &key);
	}
	return 0;
}

TRACEPOINT_PROGS(inet_sock_set_state, inet_sock_set_state, on_set_state(sk, oldstate, newstate, btf),
		 const struct sock *sk, const int oldstate, const int newstate)
