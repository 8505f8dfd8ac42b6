/* TCP facts from incoming segments: data arrival (T_rx), the peer's ACK
 * of the answer (T_ack), srtt, cwnd, zero windows; and retransmissions. */
#pragma once

#include "attach.h"
#include "recv.h"
#include "request.h"

/* A segment carrying the next expected bytes is about to be queued:
 * tcp_probe fires at the top of tcp_rcv_established, in the softirq that
 * delivers it (or at the backlog's processing, when the app owned the
 * socket). Data of the segment that completes the handshake goes through
 * tcp_rcv_state_process instead: the accept hook takes T_est for it
 * (start_request). */
static __always_inline void note_arrival(struct sock *sk, int btf, struct tcp_sock *tp, struct traced_conn *c,
					 const struct sk_buff *skb, const struct tcphdr *th, __u64 now)
{
	__u32 len = KREAD(btf, skb, len);
	__u32 hdr = th->doff * 4;

	if (len <= hdr)
		return; /* no payload */
	if (bpf_ntohl(th->seq) != KREAD(btf, tp, rcv_nxt))
		return; /* out of order or old: not readable now */
	note_rx(sk, btf, c, now);
}

static __always_inline int on_tcp_probe(struct sock *sk, const struct sk_buff *skb, int btf)
{
	__u64 key = (__u64)sk;
	struct traced_conn *c;
	struct tcp_sock *tp;
	struct tcphdr th;

	if (!sk_candidate(sk, btf))
		return 0;
	c = bpf_map_lookup_elem(&conns, &key);
	/* Not traced (yet): only data before accept() matters. */
	if (!c && !bpf_map_lookup_elem(&pending_est, &key))
		return 0;
	tp = TCP_SK(btf, sk);
	if (!tp)
		return 0;
	/* In tcp_rcv_established skb->data is the TCP header. */
	if (bpf_probe_read_kernel(&th, sizeof(th), KREAD(btf, skb, data)))
		return 0;
	/* One clock read for both the arrival and the ACK (on loopback the
	 * client's next request carries both). */
	__u64 now = bpf_ktime_get_ns();

	note_arrival(sk, btf, tp, c, skb, &th, now);
	if (!c)
		return 0;

	struct req_record *r = &c->req;

	r->srtt_us = KREAD(btf, tp, srtt_us) >> 3;
	r->snd_cwnd = KREAD(btf, tp, snd_cwnd);
	r->flags |= REQ_HAS_TCP;
	if (th.window == 0) {
		if (!c->peer_zero_window && c->state == CONN_WRITING)
			r->zero_window++;
		c->peer_zero_window = 1;
	} else {
		c->peer_zero_window = 0;
	}
	if (th.ack && c->state == CONN_WRITING && r->t_tx && !r->t_ack &&
	    seq_ge(bpf_ntohl(th.ack_seq), c->resp_end)) {
		r->t_ack = now;
		c->last_io = now;
	}
	return 0;
}

TRACEPOINT_PROGS(tcp_probe, tcp_probe, on_tcp_probe(sk, skb, btf),
		 struct sock *sk, const struct sk_buff *skb)

static __always_inline int on_retransmit(const struct sock *sk, const struct sk_buff *skb, int btf)
{
	__u64 key = (__u64)sk;
	struct traced_conn *c;

	if (!sk_candidate(sk, btf))
		return 0;
	c = bpf_map_lookup_elem(&conns, &key);
	if (!c || client_syn_retransmit(c) || c->state == CONN_IDLE)
		return 0;
	/* Count segments, as tcpi_total_retrans does: a retransmitted skb
	 * may carry several (TCP_SKB_CB(skb)->tcp_gso_segs). */
	struct tcp_skb_cb *cb = (struct tcp_skb_cb *)&skb->cb[0];
	__u16 segs = BPF_CORE_READ(cb, tcp_gso_segs);
	c->req.retransmits += segs ? segs : 1;
	return 0;
}

/* Kernels after 6.12 (third argument err): the event fires for failed
 * attempts too; count only the segments that went out. */
TRACEPOINT_PROGS(tcp_retransmit_skb, tcp_retransmit_skb,
		 err ? 0 : on_retransmit(sk, skb, btf),
		 const struct sock *sk, const struct sk_buff *skb, int err)

/* Older kernels (two arguments): the event fires only for segments
 * that went out. */
TRACEPOINT_PROGS(tcp_retransmit_skb_sent, tcp_retransmit_skb, on_retransmit(sk, skb, btf),
		 const struct sock *sk, const struct sk_buff *skb)
