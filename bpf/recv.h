/* Inbound side: request bytes becoming readable (T_rx, softirq; seen by
 * tcp_probe, tcp.h) and the app consuming them (T_rd), which also marks
 * request boundaries. */
#pragma once

#include "attach.h"
#include "client.h"
#include "request.h"
#include "softirq.h"
#include "tlswire.h"

/* Request bytes of sk became readable at now (c: its traced state, looked
 * up by the caller; NULL before accept()): note the oldest unread one. */
static __always_inline void note_rx(const struct sock *sk, int btf, struct traced_conn *c, __u64 now)
{
	__u64 softirq_ns = 0;

	if (c) {
		if (c->req.direction == DIR_CLIENT && c->state != CONN_IDLE && !c->rx_answer)
			c->rx_answer = now;
		if (c->rx_ts)
			return; /* only the oldest unread byte counts */
		c->rx_ts = now;
		c->rx_has_softirq = softirq_delay(sk, btf, now, &softirq_ns);
		c->rx_softirq = softirq_ns;
		return;
	}
	/* Data may arrive before accept(). */
	__u64 key = (__u64)sk;
	struct pending *p = bpf_map_lookup_elem(&pending_est, &key);
	if (!p || p->rx_ts)
		return;
	p->rx_ts = now;
	p->rx_has_softirq = softirq_delay(sk, btf, now, &softirq_ns);
	p->rx_softirq = softirq_ns;
}

/* The app consumed ret bytes of sk (a successful read of any kind). */
static __always_inline int on_sock_recv(struct sock *sk, int ret, int flags, int btf)
{
	__u64 key = (__u64)sk;

	/* Empty reads (EAGAIN: every Go read that drains a socket ends with
	 * one), peeks and untraced sockets first: no map lookup for them. */
	if (ret <= 0 || (flags & MSG_PEEK_FLAG) || !sk_candidate(sk, btf))
		return 0;
	struct traced_conn *c = bpf_map_lookup_elem(&conns, &key);

	if (!c)
		return 0;
	__u64 now = bpf_ktime_get_ns();

	if (c->req.direction == DIR_CLIENT) {
		client_answer_read(c, now, ret);
	} else {
		if (c->state == CONN_WRITING)
			emit(c, END_NEXT_REQUEST);
		if (c->state == CONN_IDLE) {
			start_request(c, now, ret);
			tls_wire_start(c);
		} else if (c->state == CONN_READING && c->req.goid)
			/* The rest of the request (of a Go process with probes):
			 * the goroutine that reads it is the one that serves it
			 * (net/http's background read may have taken the first
			 * byte on another). */
			c->req.goid = reading_goid(c->req.pid);
	}
	c->last_io = now;

	struct tcp_sock *tp = TCP_SK(btf, sk);

	if (!tp)
		return 0;
	__u32 copied = KREAD(btf, tp, copied_seq);

	/* A TLS handshake exchange's bytes (tlswire.h). */
	if (c->tls_reads && c->state == CONN_READING) {
		c->tls_reads--;
		tls_wire_out(c->req.sk, c->req.pid, TLS_WIRE_READ, copied - (__u32)ret, ret);
	}
	/* Everything read: the next arrival starts a new wait. */
	if (copied == KREAD(btf, tp, rcv_nxt))
		c->rx_ts = 0;
	return 0;
}

/* Linux ≥ 6.3: sock_recv_length, in sock_recvmsg for every socket read. */
TRACEPOINT_PROGS(sock_recv_length, sock_recv_length, on_sock_recv(sk, ret, flags, btf),
		 struct sock *sk, int ret, int flags)

/* Older kernels: the return of TCP's own recvmsg (sock_recvmsg, where
 * the tracepoint sits, may be inlined into its callers: its traceable
 * copy then misses read(2); tcp_recvmsg is called through sk_prot, from
 * another file, never inlined). */
SEC("fexit/tcp_recvmsg")
int BPF_PROG(tcp_recvmsg_exit, struct sock *sk, struct msghdr *msg, size_t len, int flags,
	     int *addr_len, int ret)
{
	return on_sock_recv(sk, ret, flags, 1);
}

/* Before 5.19 tcp_recvmsg had a nonblock argument before flags. */
SEC("fexit/tcp_recvmsg")
int BPF_PROG(tcp_recvmsg_nb_exit, struct sock *sk, struct msghdr *msg, size_t len, int nonblock,
	     int flags, int *addr_len, int ret)
{
	return on_sock_recv(sk, ret, flags, 1);
}
