/* Inbound side: data arrival (T_rx, softirq) and consumption (T_rd),
 * which also marks request boundaries. */
#pragma once

#include "request.h"
#include "softirq.h"

SEC("tp_btf/sk_data_ready")
int BPF_PROG(sk_data_ready, const struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct traced_conn *c = bpf_map_lookup_elem(&conns, &key);
	__u64 softirq_ns = 0;
	__u8 has_softirq;

	if (c) {
		if (c->rx_ts)
			return 0; /* only the oldest unread byte counts */
		c->rx_ts = bpf_ktime_get_ns();
		has_softirq = softirq_delay(c->rx_ts, &softirq_ns);
		c->rx_softirq = softirq_ns;
		c->rx_has_softirq = has_softirq;
		return 0;
	}
	/* Data may arrive before accept(). */
	struct pending *p = bpf_map_lookup_elem(&pending_est, &key);
	if (!p || p->rx_ts)
		return 0;
	p->rx_ts = bpf_ktime_get_ns();
	p->rx_has_softirq = softirq_delay(p->rx_ts, &softirq_ns);
	p->rx_softirq = softirq_ns;
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(sock_recv_length, struct sock *sk, int ret, int flags)
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
