/* A connection's request lifecycle: start, update, emit. */
#pragma once

#include "maps.h"
#include "goruntime.h"
#include "head.h"
#include "quota.h"

/* x86_64 syscall numbers, to find the user buffer of the current
 * read/write from the syscall's registers. */
#define NR_read 0
#define NR_write 1
#define NR_readv 19
#define NR_writev 20
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47

#define MSG_PEEK_FLAG 2

/* The first user buffer of the current socket read/write syscall and
 * its length, or NULL (sendfile, io_uring, unknown syscall). */
static __always_inline void *syscall_buffer(__u64 *len)
{
	struct task_struct *task = bpf_get_current_task_btf();
	/* Typed (BTF) in every program: plain loads, all of them here, before
	 * any branch (clang would share one load between this pointer and the
	 * stack copy below, which the verifier refuses). */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	long nr = regs->orig_ax;
	void *arg = (void *)regs->si;
	__u64 dx = regs->dx;
	struct iovec iov = {};

	barrier_var(dx);
	switch (nr) {
	case NR_read:
	case NR_write:
	case NR_recvfrom:
	case NR_sendto:
		*len = dx;
		return arg;
	case NR_readv:
	case NR_writev:
		break;
	case NR_recvmsg:
	case NR_sendmsg: {
		struct user_msghdr msg = {};

		if (bpf_probe_read_user(&msg, sizeof(msg), arg))
			return NULL;
		arg = msg.msg_iov;
		break;
	}
	default:
		return NULL;
	}
	if (bpf_probe_read_user(&iov, sizeof(iov), arg))
		return NULL;
	*len = iov.iov_len;
	return iov.iov_base;
}

/* Copy up to cap bytes of the current syscall's buffer (ret bytes were
 * transferred) into dst; returns the length copied. */
static __always_inline __u16 capture(void *dst, __u64 cap, int ret)
{
	__u64 buflen = 0;
	void *buf = syscall_buffer(&buflen);
	__u64 n = (__u64)ret;

	if (!buf)
		return 0;
	if (n > buflen)
		n = buflen;
	if (n == 0)
		return 0;
	CLAMP_LEN(n, cap);
	if (bpf_probe_read_user(dst, n, buf)) {
		count(CNT_CAPTURE_FAILS);
		return 0;
	}
	return n;
}

/* The request record's head from the current read of ret bytes: copied
 * into the scratch, the parsed lines kept, the scratch cleared. A global
 * function: the verifier checks it once, not once for each of its
 * callers' paths (the scan's loops would blow its budget). */
__noinline int keep_head(struct req_record *r, int ret)
{
	struct head_scratch *s = scratch_head();
	__u16 n;

	if (!r)
		return 0;
	r->req_len = 0;
	if (!s)
		return 0;
	n = capture(s->b, REQ_HEAD_CAP, ret);
	if (!n)
		return 0;
	r->req_len = keep_parsed(s, n, r->req_head);
	/* Nothing else of the head stays in the kernel: the words the
	 * capture wrote are cleared (the rest is still zero), not the whole
	 * scratch, whose untouched lines would be brought in to be zeroed
	 * (a request's head is usually a few dozen bytes of the 512). */
	for (__u32 w = 0; w < REQ_HEAD_CAP / 8; w++) {
		if (w * 8 >= MEM(s->n))
			break;
		__u64 *word = (__u64 *)&s->b[(w * 8) & (REQ_HEAD_CAP - 1)];
		*word = 0;
	}
	return r->req_len;
}

/* The serving thread's throttling totals, created on first use (the
 * thread has its mark: the sched programs time it). */
static __always_inline struct task_sched *task_sched_of(__u32 tid)
{
	struct task_sched *t = bpf_map_lookup_elem(&tasks, &tid);

	if (t)
		return t;
	struct task_sched zero = {};
	if (bpf_map_update_elem(&tasks, &tid, &zero, BPF_NOEXIST) &&
	    !bpf_map_lookup_elem(&tasks, &tid)) {
		count(CNT_TASK_MAP_FULL);
		return NULL;
	}
	return bpf_map_lookup_elem(&tasks, &tid);
}

/* A thread's run-queue waits so far (ns; schedstat's run_delay). */
static __always_inline __u64 run_delay(struct task_struct *task)
{
	return task->sched_info.run_delay;
}

/* The current thread's name into dst (16 bytes), as
 * bpf_get_current_comm would put it, but with two loads from the task
 * (its BTF type lets the verifier allow them: reads inside a char array
 * field) instead of a helper call and a string copy, at every request.
 * The bytes after the name's NUL may be an older, longer name's (a
 * thread renamed on kernels before 6.2 did not pad): user space reads
 * up to the NUL. */
static __always_inline void current_comm(char *dst)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 *src = (__u64 *)task->comm;
	__u64 lo = src[0], hi = src[1];

	__builtin_memcpy(dst, &lo, 8);
	__builtin_memcpy(dst + 8, &hi, 8);
}

/* The connection's addresses, into its record. */
static __always_inline void fill_addrs(struct req_record *r, struct sock *sk)
{
	r->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	r->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	r->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (r->family == FAMILY_INET6) {
		BPF_CORE_READ_INTO(&r->laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&r->raddr, sk, __sk_common.skc_v6_daddr);
	} else {
		BPF_CORE_READ_INTO(&r->laddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO(&r->raddr, sk, __sk_common.skc_daddr);
	}
}

/* Write the current request out and make room for the next one. */
static __always_inline void emit(struct traced_conn *c, __u8 reason)
{
	struct req_record *r = &c->req;

	if (c->state == CONN_IDLE)
		return;
	r->end_reason = reason;
	/* The request head's unused tail stays behind. */
	__u64 size = offsetof(struct req_record, req_head) + r->req_len;
	CLAMP_LEN(size, sizeof(*r));
	if (bpf_ringbuf_output(&events, r, size, ringbuf_flags()))
		count(CNT_RINGBUF_DROPS);
	else
		count(CNT_RECORDS);

	c->state = CONN_IDLE;
	r->request_index++;
	r->t_rx = r->t_rd = r->t_wr = r->t_wl = r->t_tx = r->t_ack = 0;
	r->softirq_ns = r->runq_ns = r->throttle_ns = 0;
	r->retransmits = 0;
	r->zero_window = 0;
	r->rt_max_seg = r->rt_repeats = r->rt_repeat_seg = 0;
	r->rt_mss_first = r->rt_mss_last = r->rt_pmtu_first = r->rt_pmtu_last = 0;
	r->rwnd_zero = 0;
	r->rwnd_unread_ns = r->rwnd_reading_ns = 0;
	c->rt_run = 0;
	r->flags &= REQ_HAS_EST | REQ_HAS_TCP;
	r->req_len = r->resp_len = 0;
	r->end_reason = 0;
}

/* The goroutine reading the socket now, for a Go process with probes. */
static __always_inline __u64 reading_goid(__u32 pid)
{
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &pid);

	return gp ? goid_at_syscall(gp) : 0;
}

/* The app consumed the first bytes of a new request. */
static __always_inline void start_request(struct traced_conn *c, __u64 now, int ret)
{
	struct req_record *r = &c->req;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	c->state = CONN_READING;
	r->t_rd = now;
	r->tid = tid;
	/* The process's name now: it may have exec'd since the accept. */
	current_comm(r->comm);
	if (c->rx_ts) {
		r->t_rx = c->rx_ts;
		r->flags |= REQ_HAS_RX;
		if (c->rx_has_softirq) {
			r->softirq_ns = c->rx_softirq;
			r->flags |= REQ_HAS_SOFTIRQ;
		}
	} else if (rx_enabled && r->request_index == 0 && (r->flags & REQ_HAS_EST)) {
		/* Unread bytes that tcp_probe never saw came with the segment
		 * that completed the handshake (TCP_DEFER_ACCEPT servers get
		 * every first request so): they arrived at T_est. */
		r->t_rx = r->t_est;
		r->flags |= REQ_HAS_RX;
		if (c->est_has_softirq) {
			r->softirq_ns = c->est_softirq;
			r->flags |= REQ_HAS_SOFTIRQ;
		}
	} else {
		r->flags &= ~REQ_HAS_RX;
	}
	r->flags &= ~REQ_HAS_SCHED;
	if (sched_enabled && bpf_core_field_exists(((struct task_struct *)0)->sched_info)) {
		struct task_struct *task = bpf_get_current_task_btf();
		/* The mark first: with it the sched programs time the thread
		 * once they run. While they wait, nothing is throttled and the
		 * tasks entry is not needed (see update_sched). */
		struct task_mark *m = bpf_task_storage_get(&task_marks, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		struct task_sched *t = NULL;

		c->sched_base = 0;
		if (m && !sched_hooks_attached()) {
			c->throttle_base = 0;
		} else if ((t = task_sched_of(tid))) {
			c->throttle_base = t->throttle_total;
			c->sched_base = 1;
		}
		if (m || t) {
			c->task = (__u64)task;
			c->runq_base = run_delay(task);
			r->flags |= REQ_HAS_SCHED;
			if (m)
				note_quota(task, &m->quota_checked, now);
		}
	}
	keep_head(r, ret);
	r->goid = reading_goid(r->pid);
	/* The window the request's bytes closed before this read: theirs. */
	r->rwnd_zero += c->rwnd_carry_zero;
	r->rwnd_unread_ns += c->rwnd_carry_ns;
	c->rwnd_carry_zero = 0;
	c->rwnd_carry_ns = 0;
	if (c->rwnd_closed_ts && !c->rwnd_closed_reading) {
		/* Still closed: the wait so far was before the read. */
		r->rwnd_unread_ns += now - c->rwnd_closed_ts;
		c->rwnd_closed_ts = now;
		c->rwnd_closed_reading = 1;
	}
}

/* Scheduling delay of the serving thread since T_rd: its run-queue
 * waits (the kernel's count), of which throttled (ours). */
static __always_inline void update_sched(struct traced_conn *c)
{
	struct req_record *r = &c->req;
	__u32 tid = r->tid;
	struct task_sched *t;
	__u64 waited;

	if (!(r->flags & REQ_HAS_SCHED))
		return;
	/* The scheduler programs waited at T_rd (no CPU quota seen): the
	 * thread has no tasks entry for them to fill, nothing of the wait is
	 * known throttled, and no lookup is needed to say so. (Throttling
	 * after they attach in the middle of the request is counted in
	 * runqueue, as throttling before they attach always is.) */
	t = NULL;
	if (c->sched_base) {
		t = bpf_map_lookup_elem(&tasks, &tid);
		if (!t) {
			r->flags &= ~REQ_HAS_SCHED; /* evicted: cannot tell */
			return;
		}
	}
	struct task_struct *cur = bpf_get_current_task_btf();
	if (cur->pid == tid) {
		waited = run_delay(cur);
	} else {
		/* Another thread writes (a Go goroutine moved): read the
		 * serving thread's count where it was, if it is still that
		 * thread (a task_struct freed since reads as another pid). */
		struct task_struct *task = (struct task_struct *)c->task;
		if (BPF_CORE_READ(task, pid) != tid) {
			r->flags &= ~REQ_HAS_SCHED;
			return;
		}
		waited = BPF_CORE_READ(task, sched_info.run_delay);
	}
	waited -= c->runq_base;
	r->throttle_ns = t ? t->throttle_total - c->throttle_base : 0;
	if (r->throttle_ns > waited)
		r->throttle_ns = waited;
	r->runq_ns = waited - r->throttle_ns;
}
