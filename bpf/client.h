/* Outbound calls: connections a traced process opens itself. Adopted
 * when connect() sends the SYN, so the record has the connect latency
 * (T_syn → T_est) and the SYNs sent again; then requests are cut the
 * other way round from accepted connections: the app's first write after
 * it read an answer starts a request (T_wr; T_wl its last write, T_tx its
 * last byte leaving, T_ack the peer's ACK of it), the answer's first byte
 * arrives (T_rx, tcp_probe), the app reads it (T_rd first, T_rl last);
 * the next write, the close or the idle sweep ends it. The hooks are the
 * accepted connections' own (their ways included): only the branch on
 * req.direction, taken once a connection is found traced, is added to
 * their path. */
#pragma once

#include "maps.h"
#include "request.h"
#include "proc.h"
#include "tlswire.h"

/* The current process sends a SYN on sk (inet_sock_set_state CLOSE →
 * SYN_SENT, in connect()'s own context): trace the connection when the
 * process owns traced connections (it was selected at an accept), or is
 * selected by pid, name or cgroup. */
static __always_inline void on_connect_start(const struct sock *sk, int btf)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	__u64 key = (__u64)sk;

	__u8 *traced = bpf_map_lookup_elem(&traced_tgids, &tgid);

	if (!traced) {
		/* A process selected by pid, name or cgroup (and not by port,
		 * known only at an accept) is followed from its first connect
		 * too: a pure client (curl) accepts nothing. */
		struct filter_config *f = filter_config();
		__u8 one = 1;

		if (!f || f->ports || !(f->pids || f->comms || f->cgroups) || !process_matches(f, tgid))
			return;
		if (!bpf_map_update_elem(&traced_tgids, &tgid, &one, BPF_NOEXIST))
			emit_proc(tgid, PROC_TRACED);
		traced = bpf_map_lookup_elem(&traced_tgids, &tgid);
		if (!traced)
			return;
	}
	if (KREAD(btf, sk, sk_protocol) != IPPROTO_TCP)
		return;
	{
		static const struct traced_conn zero = {};
		if (bpf_map_update_elem(&conns, &key, &zero, BPF_ANY)) {
			count(CNT_CONN_MAP_FULL);
			return;
		}
	}
	struct traced_conn *c = bpf_map_lookup_elem(&conns, &key);
	if (!c)
		return;
	struct req_record *r = &c->req;

	r->kind = EV_REQUEST;
	r->direction = DIR_CLIENT;
	r->sk = key;
	r->pid = tgid;
	r->tid = (__u32)pid_tgid;
	r->t_syn = bpf_ktime_get_ns();
	r->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(r->comm, sizeof(r->comm));
	/* The source port is chosen after this transition: the addresses
	 * are read at ESTABLISHED. */
	if (btf)
		bpf_sk_storage_get(&sk_marks, (void *)sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	count(CNT_CONNS_TRACED);
	/* User space keeps the windows of a process's served requests (to
	 * find a call's parent) only once it knows the process calls out:
	 * before any record of a request that made this call. */
	if (*traced != 2) {
		*traced = 2;
		emit_proc(tgid, PROC_CALLS);
	}
}

/* A traced client connection changed state; returns 1 when handled
 * (the close is the caller's, as for accepted connections). */
static __always_inline int client_set_state(struct traced_conn *c, const struct sock *sk, int oldstate,
					    int newstate)
{
	if (oldstate != TCP_SYN_SENT || newstate != TCP_ESTABLISHED)
		return 0;
	c->req.t_est = bpf_ktime_get_ns();
	c->req.flags |= REQ_HAS_EST;
	fill_addrs(&c->req, (struct sock *)sk);
	return 1;
}

/* connect() sent its SYN again (the connection is not ESTABLISHED yet). */
static __always_inline int client_syn_retransmit(struct traced_conn *c)
{
	if (c->req.direction != DIR_CLIENT || c->req.t_est)
		return 0;
	c->req.syn_retrans++;
	return 1;
}

/* The app wrote ret bytes on a client connection not sending a request:
 * the previous request (its answer read) ends, a new one starts. */
static __always_inline void client_request_start(struct traced_conn *c, int ret)
{
	struct req_record *r = &c->req;
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	if (c->state == CONN_READING)
		emit(c, END_NEXT_REQUEST);
	c->state = CONN_WRITING;
	r->t_wr = bpf_ktime_get_ns();
	r->tid = (__u32)pid_tgid;
	current_comm(r->comm);
	r->t_rl = 0;
	r->flags &= ~REQ_HAS_RX;
	/* Method and target: the request head, captured as a server's. */
	keep_head(r, ret);
	/* A TLS handshake flight (the ClientHello; TLS 1.2's key exchange):
	 * its bytes and the server's answer go to user space as a served
	 * connection's do (tlswire.h), for what the handshake negotiated. */
	tls_wire_start(c);
}

/* The app read ret bytes of the answer on a client connection. */
static __always_inline void client_answer_read(struct traced_conn *c, __u64 now, int ret)
{
	struct req_record *r = &c->req;

	if (c->state == CONN_WRITING) {
		c->state = CONN_READING;
		r->t_rd = now;
		if (c->rx_ts) {
			r->t_rx = c->rx_ts;
			r->flags |= REQ_HAS_RX;
		}
		/* The status line. */
		r->resp_len = capture(r->resp_head, RESP_HEAD_CAP, ret);
		/* The idle sweep looks again (see idle_sweep). */
		count(CNT_ANSWERS);
	}
	if (c->state == CONN_READING) {
		r->t_rl = now;
		/* The first read took bytes that arrived before the request's
		 * last write (TLS 1.3's session tickets, sent by the server after
		 * its handshake flight and read by the client with the answer):
		 * they are not the answer; its first byte is the first arrival
		 * after that write, once there is one. */
		if ((r->flags & REQ_HAS_RX) && r->t_rx < r->t_wl && c->rx_answer)
			r->t_rx = c->rx_answer;
	}
	/* Bytes while no request is out (server-first protocols): no record. */
}
