/* Inbound side: data arrival (T_rx, softirq) and consumption (T_rd),
 * which also marks request boundaries. */
#pragma once

#include "attach.h"
#include "request.h"
#include "softirq.h"

/* Request bytes became readable on the connection keyed key (c, its
 * traced state, looked up by the caller; NULL before accept()): note the
 * oldest unread one. */
static __always_inline void note_rx(__u64 key, struct traced_conn *c)
{
	__u64 softirq_ns = 0;

	if (c) {
		if (c->rx_ts)
			return; /* only the oldest unread byte counts */
		c->rx_ts = bpf_ktime_get_ns();
		c->rx_has_softirq = softirq_delay(c->rx_ts, &softirq_ns);
		c->rx_softirq = softirq_ns;
		return;
	}
	/* Data may arrive before accept(). */
	struct pending *p = bpf_map_lookup_elem(&pending_est, &key);
	if (!p || p->rx_ts)
		return;
	p->rx_ts = bpf_ktime_get_ns();
	p->rx_has_softirq = softirq_delay(p->rx_ts, &softirq_ns);
	p->rx_softirq = softirq_ns;
}

static __always_inline int on_data_ready(const struct sock *sk)
{
	__u64 key = (__u64)sk;

	note_rx(key, bpf_map_lookup_elem(&conns, &key));
	return 0;
}

/* Linux ≥ 6.3: the sk_data_ready tracepoint (in tcp_data_ready). */
TRACEPOINT_PROGS(sk_data_ready, sk_data_ready, on_data_ready(sk), const struct sock *sk)

/* Older kernels: the function that tracepoint sits in. */
SEC("fentry/tcp_data_ready")
int BPF_PROG(tcp_data_ready_entry, struct sock *sk)
{
	return on_data_ready(sk);
}

/* The app consumed ret bytes of sk (a successful read of any kind). */
static __always_inline int on_sock_recv(struct sock *sk, int ret, int flags)
{
	__u64 key = (__u64)sk;

	/* Empty reads (EAGAIN: every Go read that drains a socket ends with
	 * one) and peeks first: no map lookup for them. */
	if (ret <= 0 || (flags & MSG_PEEK_FLAG))
		return 0;
	struct traced_conn *c = bpf_map_lookup_elem(&conns, &key);

	if (!c)
		return 0;
	__u64 now = bpf_ktime_get_ns();

	if (c->state == CONN_WRITING)
		emit(c, END_NEXT_REQUEST);
	if (c->state == CONN_IDLE)
		start_request(c, now, ret);
	else if (c->state == CONN_READING && c->req.goid)
		/* The rest of the request (of a Go process with probes): the
		 * goroutine that reads it is the one that serves it (net/http's
		 * background read may have taken the first byte on another). */
		c->req.goid = reading_goid(c->req.pid);
	c->last_io = now;

	/* Everything read: the next arrival starts a new wait. */
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	if (BPF_CORE_READ(tp, copied_seq) == BPF_CORE_READ(tp, rcv_nxt))
		c->rx_ts = 0;
	return 0;
}

/* Linux ≥ 6.3: sock_recv_length, in sock_recvmsg for every socket read. */
TRACEPOINT_PROGS(sock_recv_length, sock_recv_length, on_sock_recv(sk, ret, flags),
		 struct sock *sk, int ret, int flags)

/* Older kernels: the return of TCP's own recvmsg (sock_recvmsg, where
 * the tracepoint sits, may be inlined into its callers: its traceable
 * copy then misses read(2); tcp_recvmsg is called through sk_prot, from
 * another file, never inlined). */
SEC("fexit/tcp_recvmsg")
int BPF_PROG(tcp_recvmsg_exit, struct sock *sk, struct msghdr *msg, size_t len, int flags,
	     int *addr_len, int ret)
{
	return on_sock_recv(sk, ret, flags);
}

/* Before 5.19 tcp_recvmsg had a nonblock argument before flags. */
SEC("fexit/tcp_recvmsg")
int BPF_PROG(tcp_recvmsg_nb_exit, struct sock *sk, struct msghdr *msg, size_t len, int nonblock,
	     int flags, int *addr_len, int ret)
{
	return on_sock_recv(sk, ret, flags);
}
