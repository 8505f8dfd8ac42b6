/* The bytes of a TLS handshake's exchanges, for user space's tlswire
 * (struct tls_wire): a connection's exchange whose first bytes read are
 * a TLS handshake record, among its first TLS_WIRE_EXCHANGES, has its
 * first TLS_WIRE_READS reads and its first write sent out (each cut at
 * TLS_WIRE_CAP bytes). Plaintext traffic pays two byte compares at its
 * first read and a flag test at each read and at its answer's first
 * write. */
#pragma once

#include "request.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tls_wire);
} tls_wire_scratch SEC(".maps");

/* Whether the exchange just started (its head kept) is a TLS handshake
 * exchange whose bytes are to be captured. */
static __always_inline void tls_wire_start(struct traced_conn *c)
{
	struct req_record *r = &c->req;

	c->tls_reads = 0;
	c->tls_write = 0;
	if (r->req_len >= 2 && r->req_head[0] == 22 && r->req_head[1] == 3 &&
	    r->request_index < TLS_WIRE_EXCHANGES) {
		c->tls_reads = TLS_WIRE_READS;
		c->tls_write = 1;
	}
}

/* Send out the current read's or write's first bytes (ret moved; seq:
 * the sequence number of its first byte). A global function: checked
 * once by the verifier. */
__noinline int tls_wire_out(__u64 sk, __u32 pid, __u32 dir, __u32 seq, int ret)
{
	__u32 zero = 0;
	struct tls_wire *w = bpf_map_lookup_elem(&tls_wire_scratch, &zero);

	if (!w || ret <= 0)
		return 0;
	w->kind = EV_TLS_WIRE;
	w->dir = dir;
	w->sk = sk;
	w->pid = pid;
	w->seq = seq;
	w->total = ret;
	w->len = capture(w->b, TLS_WIRE_CAP, ret);
	if (!w->len)
		return 0;
	__u64 size = offsetof(struct tls_wire, b) + w->len;

	CLAMP_LEN(size, sizeof(*w));
	if (bpf_ringbuf_output(&events, w, size, ringbuf_flags()))
		count(CNT_RINGBUF_DROPS);
	return 0;
}
