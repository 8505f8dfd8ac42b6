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

/* What a path MTU black hole looks like from the sender: the same large
 * segment retransmitted again and again, then (tcp_mtu_probing) the MSS
 * lowered below the path MTU TCP knows, which never changed because no
 * ICMP fragmentation-needed came back. Kept per request: the largest
 * segment, the longest run of retransmissions of one sequence number and
 * its size, and mss_cache and icsk_pmtu_cookie at the first and last
 * retransmission. */
static __always_inline void note_retransmit_shape(const struct sock *sk, int btf, struct traced_conn *c,
						  __u32 seq, __u32 end_seq, __u16 segs)
{
	struct req_record *r = &c->req;
	struct tcp_sock *tp = TCP_SK(btf, sk);
	__u32 len = end_seq - seq;

	if (!tp)
		return;
	/* A retransmitted skb is cut to the current MSS; several segments
	 * share its length. */
	if (segs > 1)
		len = (len + segs - 1) / segs;
	__u32 mss = KREAD(btf, tp, mss_cache);
	__u32 pmtu = KREAD(btf, tp, inet_conn.icsk_pmtu_cookie);

	if (!r->rt_mss_first) {
		r->rt_mss_first = mss;
		r->rt_pmtu_first = pmtu;
	}
	r->rt_mss_last = mss;
	r->rt_pmtu_last = pmtu;
	if (len > r->rt_max_seg)
		r->rt_max_seg = len;
	if (c->rt_run && c->rt_seq == seq) {
		c->rt_run++;
		if (len > c->rt_run_seg)
			c->rt_run_seg = len;
	} else {
		c->rt_seq = seq;
		c->rt_run = 1;
		c->rt_run_seg = len;
	}
	if (c->rt_run > r->rt_repeats) {
		r->rt_repeats = c->rt_run;
		r->rt_repeat_seg = c->rt_run_seg;
	}
}

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
	struct req_record *r = &c->req;

	r->retransmits += segs ? segs : 1;
	/* Not idle: TCP is still delivering (the retransmission timer's
	 * waits grow past the idle timeout). */
	c->last_io = bpf_ktime_get_ns();
	note_retransmit_shape(sk, btf, c, BPF_CORE_READ(cb, seq), BPF_CORE_READ(cb, end_seq), segs);
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
