/* TCP facts from incoming segments: the peer's ACK of the answer
 * (T_ack), srtt, cwnd, zero windows; and retransmissions. */
#pragma once

#include "request.h"

SEC("tp_btf/tcp_probe")
int BPF_PROG(tcp_probe, struct sock *sk, const struct sk_buff *skb)
{
	__u64 key = (__u64)sk;
	struct traced_conn *c = bpf_map_lookup_elem(&conns, &key);
	struct tcphdr th;

	if (!c)
		return 0;
	/* In tcp_rcv_established skb->data is the TCP header. */
	if (bpf_probe_read_kernel(&th, sizeof(th), BPF_CORE_READ(skb, data)))
		return 0;

	struct req_record *r = &c->req;
	struct tcp_sock *tp = (struct tcp_sock *)sk;

	r->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	r->snd_cwnd = BPF_CORE_READ(tp, snd_cwnd);
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
		r->t_ack = bpf_ktime_get_ns();
		c->last_io = r->t_ack;
	}
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_retransmit_skb, const struct sock *sk,
	     const struct sk_buff *skb, int err)
{
	__u64 key = (__u64)sk;
	struct traced_conn *c = bpf_map_lookup_elem(&conns, &key);

	if (!c || c->state == CONN_IDLE || err)
		return 0;
	/* Count segments, as tcpi_total_retrans does: a retransmitted skb
	 * may carry several (TCP_SKB_CB(skb)->tcp_gso_segs). */
	struct tcp_skb_cb *cb = (struct tcp_skb_cb *)&skb->cb[0];
	__u16 segs = BPF_CORE_READ(cb, tcp_gso_segs);
	c->req.retransmits += segs ? segs : 1;
	return 0;
}
