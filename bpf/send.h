/* Outbound side: the app's answer (T_wr, T_wl) and its last byte
 * leaving through a device (T_tx). */
#pragma once

#include "attach.h"
#include "client.h"
#include "request.h"
#include "tlswire.h"

#define TCP_NAGLE_OFF 1

/* The app handed ret bytes of its answer to sk (a write of any kind). */
static __always_inline int on_sock_send(struct sock *sk, int ret, int btf)
{
	__u64 key = (__u64)sk;

	if (ret <= 0 || !sk_candidate(sk, btf))
		return 0;
	struct traced_conn *c = bpf_map_lookup_elem(&conns, &key);

	if (!c)
		return 0;
	if (c->req.direction == DIR_CLIENT) {
		if (c->state != CONN_WRITING)
			client_request_start(c, ret);
		/* The goroutine that wrote last (a Go process with probes):
		 * net/http's writeLoop writes a request, but a TLS 1.3
		 * connection's first request follows the client Finished its
		 * dialer wrote (correlate's Go client join). */
		c->req.goid = reading_goid(c->req.pid);
		c->rx_answer = 0; /* the answer arrives after the request's last write */
	} else if (c->state == CONN_IDLE) {
		count(CNT_UNANSWERED_WRITES);
		return 0;
	}

	struct req_record *r = &c->req;
	struct tcp_sock *tp = TCP_SK(btf, sk);
	__u64 now = bpf_ktime_get_ns();

	if (!tp)
		return 0;
	if (c->state == CONN_READING) {
		c->state = CONN_WRITING;
		r->t_wr = now;
		/* Into the stack, then the record: a user copy checks its
		 * destination (hardened usercopy), and a stack buffer passes at
		 * the first test where the conns element (slab memory) costs a
		 * page lookup; ≈ 1/5 of this program's run per answer. */
		__u8 head[RESP_HEAD_CAP] = {};

		r->resp_len = capture(head, RESP_HEAD_CAP, ret);
		__builtin_memcpy(r->resp_head, head, RESP_HEAD_CAP);
		count(CNT_ANSWERS);
	}
	r->t_wl = now;
	c->last_io = now;
	c->resp_end = KREAD(btf, tp, write_seq);
	if (c->tls_write) {
		/* A TLS handshake exchange's answer (tlswire.h). */
		c->tls_write = 0;
		tls_wire_out(r->sk, r->pid, TLS_WIRE_WRITE, c->resp_end - (__u32)ret, ret);
	}
	r->t_tx = 0;
	/* A transmit on another CPU (Nagle's held segment, sent when an ACK
	 * comes) may run right now: either it sees the new resp_end, or we
	 * see its last_tx_end (on loopback the bytes usually left inside
	 * this very syscall). */
	full_barrier(c);
	if (seq_ge(c->last_tx_end, c->resp_end) && c->last_tx_ts)
		r->t_tx = c->last_tx_ts;
	r->t_ack = 0;
	if (btf)
		r->nagle = !(BPF_CORE_READ_BITFIELD(tp, nonagle) & TCP_NAGLE_OFF);
	else
		r->nagle = !(BPF_CORE_READ_BITFIELD_PROBED(tp, nonagle) & TCP_NAGLE_OFF);
	update_sched(c);
	return 0;
}

/* Linux ≥ 6.3: sock_send_length, in sock_sendmsg for every socket write. */
TRACEPOINT_PROGS(sock_send_length, sock_send_length, on_sock_send(sk, ret, btf),
		 struct sock *sk, int ret, int flags)

/* Older kernels: the return of TCP's own sendmsg (see tcp_recvmsg_exit
 * for why not sock_sendmsg). sendfile(2) does not pass through it
 * before 6.5 (splice used sendpage): its bytes are not seen this way. */
SEC("fexit/tcp_sendmsg")
int BPF_PROG(tcp_sendmsg_exit, struct sock *sk, struct msghdr *msg, size_t size, int ret)
{
	return on_sock_send(sk, ret, 1);
}

/* The window the server advertised in an outgoing segment closed or
 * opened (own_receive_window): time it closed, counted in the request
 * the app was reading, else carried to the next request's first read
 * (start_request), the bytes that filled it being that request's. */
static __always_inline void note_own_window(struct traced_conn *c, __u16 window)
{
	if (!window) {
		if (c->rwnd_closed_ts)
			return;
		c->rwnd_closed_ts = bpf_ktime_get_ns();
		c->rwnd_closed_reading = c->state == CONN_READING;
		if (c->rwnd_closed_reading)
			c->req.rwnd_zero++;
		else
			c->rwnd_carry_zero++;
		return;
	}
	if (!c->rwnd_closed_ts)
		return;
	__u64 closed = bpf_ktime_get_ns() - c->rwnd_closed_ts;

	c->rwnd_closed_ts = 0;
	if (c->rwnd_closed_reading)
		c->req.rwnd_reading_ns += closed;
	else
		c->rwnd_carry_ns += closed;
}

/* Sequence number just past the TCP payload of an outgoing skb, and
 * the window it advertises (unscaled; 0 is closed). */
static __always_inline int tx_end_seq(const struct sk_buff *skb, int btf, __u32 *end, __u16 *window)
{
	unsigned char *head = KREAD(btf, skb, head);
	__u16 th_off = KREAD(btf, skb, transport_header);
	unsigned char *data = KREAD(btf, skb, data);
	struct tcphdr th;

	if (th_off == (__u16)~0U)
		return -1;
	if (bpf_probe_read_kernel(&th, sizeof(th), head + th_off))
		return -1;
	__u32 hdrs = (head + th_off - data) + th.doff * 4;
	__u32 len = KREAD(btf, skb, len);
	if (len < hdrs)
		return -1;
	*end = bpf_ntohl(th.seq) + (len - hdrs) + th.fin;
	*window = th.window;
	return 0;
}

static __always_inline int on_start_xmit(const struct sk_buff *skb, int btf)
{
	struct sock *sk = KREAD(btf, skb, sk);
	__u64 key = (__u64)sk;
	struct traced_conn *c;
	__u32 end;
	__u16 window;

	if (!sk || !sk_candidate(sk, btf))
		return 0;
	c = bpf_map_lookup_elem(&conns, &key);
	if (!c || tx_end_seq(skb, btf, &end, &window))
		return 0;
	note_own_window(c, window);
	if (c->last_tx_ts && !seq_ge(end, c->last_tx_end + 1))
		return 0; /* pure ACK or retransmission of old bytes */

	__u64 now = bpf_ktime_get_ns();
	c->last_tx_end = end;
	c->last_tx_ts = now;
	full_barrier(c); /* pairs with the one in on_sock_send */
	if (c->state == CONN_WRITING) {
		c->last_io = now;
		if (!c->req.t_tx && seq_ge(end, c->resp_end))
			c->req.t_tx = now;
	}
	return 0;
}

TRACEPOINT_PROGS(net_dev_start_xmit, net_dev_start_xmit, on_start_xmit(skb, btf),
		 const struct sk_buff *skb, const struct net_device *dev)
