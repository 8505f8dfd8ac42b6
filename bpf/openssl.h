/* OpenSSL servers: uprobes on the traced process's libssl (attached for
 * that process alone). A handshake's end (SSL_do_handshake or SSL_accept
 * returning 1), and the plaintext of HTTP/1 over TLS: the first line of
 * what SSL_read returned (the request line; nothing past its '\n' leaves
 * the program: headers such as Cookie never reach the ring buffer) and
 * the status of an HTTP/1 status line SSL_write is given; as a client
 * (an outbound call), the first line of a request line SSL_write is
 * given (SSL_read's first line is then the answer's status line). Events are Go
 * events (struct go_event) whose goid is the thread id: the correlator
 * joins them by thread and time. C stacks do not move: uretprobes. */
#pragma once

#include "maps.h"

#define SSL_LINE_CAP GO_PATH_CAP

struct ssl_read_args {
	__u64 buf;
	__u64 readbytes; /* SSL_read_ex's size_t *; 0 for SSL_read */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct ssl_read_args);
} ssl_reads SEC(".maps");

/* A libssl event of the current thread (goid: the thread id), zeroed. */
static __always_inline struct go_event *ssl_event(__u32 func)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct go_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);

	if (!ev) {
		count(CNT_GO_DROPS);
		return NULL;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->kind = EV_GO;
	ev->pid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->goid = (__u32)pid_tgid;
	ev->func = func;
	ev->start = ev->end = bpf_ktime_get_ns();
	return ev;
}

/* Sends ev, whose path holds n bytes of plaintext, with its first line
 * only: the rest is zeroed before it leaves. */
static __always_inline void ssl_submit_line(struct go_event *ev, __u32 n)
{
	__u32 keep = n, seen = 0;

	for (__u32 i = 0; i < SSL_LINE_CAP; i++) {
		if (seen)
			ev->path[i] = 0;
		else if (ev->path[i] == '\n') {
			seen = 1;
			keep = i + 1;
		}
	}
	ev->path_len = keep;
	bpf_ringbuf_submit(ev, ringbuf_flags());
}

/* Sends the first line of the n bytes of plaintext at buf as a func
 * event of the current thread. */
static __always_inline void ssl_send_line(__u32 func, __u64 buf, __u64 n)
{
	struct go_event *ev = ssl_event(func);

	if (!ev)
		return;
	CLAMP_LEN(n, SSL_LINE_CAP);
	if (bpf_probe_read_user(ev->path, n, (void *)buf)) {
		bpf_ringbuf_discard(ev, 0);
		return;
	}
	ssl_submit_line(ev, n);
}

/* SSL_do_handshake(ssl) / SSL_accept(ssl) returned: 1 is done (a
 * non-blocking server calls it until then). */
SEC("uretprobe/ssl_handshake_ret")
int ssl_handshake_ret(struct pt_regs *ctx)
{
	if ((int)PT_REGS_RC(ctx) != 1)
		return 0;
	struct go_event *ev = ssl_event(SSL_HANDSHAKE_DONE);
	if (ev)
		bpf_ringbuf_submit(ev, ringbuf_flags());
	return 0;
}

/* SSL_read(ssl, buf, num) / SSL_read_ex(ssl, buf, num, &readbytes). */
SEC("uprobe/ssl_read_entry")
int ssl_read_entry(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct ssl_read_args a = { .buf = PT_REGS_PARM2(ctx) };

	if (bpf_get_attach_cookie(ctx))
		a.readbytes = PT_REGS_PARM4(ctx);
	bpf_map_update_elem(&ssl_reads, &pid_tgid, &a, BPF_ANY);
	return 0;
}

SEC("uretprobe/ssl_read_ret")
int ssl_read_ret(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct ssl_read_args *a = bpf_map_lookup_elem(&ssl_reads, &pid_tgid);
	__u64 n = 0;
	__u8 first = 0;

	if (!a)
		return 0;
	int rc = PT_REGS_RC(ctx);
	if (a->readbytes) {
		if (rc == 1)
			bpf_probe_read_user(&n, sizeof(n), (void *)a->readbytes);
	} else if (rc > 0) {
		n = rc;
	}
	__u64 buf = a->buf;
	bpf_map_delete_elem(&ssl_reads, &pid_tgid);
	/* A request line begins with a method: an upper-case letter. */
	if (!n || bpf_probe_read_user(&first, 1, (void *)buf) || first < 'A' || first > 'Z')
		return 0;
	ssl_send_line(SSL_READ_LINE, buf, n);
	return 0;
}

/* The first n bytes of a string, as a little-endian word. */
#define SSL_W(c, i) ((__u64)(__u8)(c) << (8 * (i)))
#define SSL_W4(a, b, c, d) (SSL_W(a, 0) | SSL_W(b, 1) | SSL_W(c, 2) | SSL_W(d, 3))
#define SSL_W5(a, b, c, d, e) (SSL_W4(a, b, c, d) | SSL_W(e, 4))
#define SSL_W6(a, b, c, d, e, f) (SSL_W5(a, b, c, d, e) | SSL_W(f, 5))
#define SSL_W7(a, b, c, d, e, f, g) (SSL_W6(a, b, c, d, e, f) | SSL_W(g, 6))
#define SSL_W8(a, b, c, d, e, f, g, k) (SSL_W7(a, b, c, d, e, f, g) | SSL_W(k, 7))

/* is_method: h begins with an HTTP method and a space (the methods of
 * RFC 9110 and PATCH): a request line. Nine word compares, made only
 * when h is not a status line (one 8-byte word: the compiler may not
 * turn byte tests into a computed stack offset, which the verifier
 * refuses). */
static __always_inline int is_method(const char *h)
{
	__u64 w;

	__builtin_memcpy(&w, h, sizeof(w));
	__u64 w4 = w & 0xffffffffULL, w5 = w & 0xffffffffffULL, w6 = w & 0xffffffffffffULL,
	      w7 = w & 0xffffffffffffffULL;

	return w4 == SSL_W4('G', 'E', 'T', ' ') || w5 == SSL_W5('P', 'O', 'S', 'T', ' ') ||
	       w4 == SSL_W4('P', 'U', 'T', ' ') || w7 == SSL_W7('D', 'E', 'L', 'E', 'T', 'E', ' ') ||
	       w5 == SSL_W5('H', 'E', 'A', 'D', ' ') || w6 == SSL_W6('P', 'A', 'T', 'C', 'H', ' ') ||
	       w == SSL_W8('O', 'P', 'T', 'I', 'O', 'N', 'S', ' ') || w6 == SSL_W6('T', 'R', 'A', 'C', 'E', ' ') ||
	       w == SSL_W8('C', 'O', 'N', 'N', 'E', 'C', 'T', ' ');
}

/* SSL_write(ssl, buf, num) / SSL_write_ex(ssl, buf, num, &written):
 * "HTTP/1.x NNN" at the start of buf is a status line (a server's
 * answer); a method and a space, a request line (a client's call: its
 * first line goes out, as SSL_read's does). */
SEC("uprobe/ssl_write_entry")
int ssl_write_entry(struct pt_regs *ctx)
{
	char h[12] = {};
	__u64 num = PT_REGS_PARM3(ctx), buf = PT_REGS_PARM2(ctx);

	if (num < sizeof(h) || bpf_probe_read_user(h, sizeof(h), (void *)buf))
		return 0;
	if (!is_http1_status_head(h)) {
		if (is_method(h))
			ssl_send_line(SSL_WRITE_LINE, buf, num);
		return 0;
	}
	__u32 status = http1_status(h);
	if (!status)
		return 0;
	struct go_event *ev = ssl_event(SSL_WRITE_STATUS);
	if (ev) {
		ev->arg = status;
		bpf_ringbuf_submit(ev, ringbuf_flags());
	}
	return 0;
}
