/* Go awareness: uprobes on Go functions (no uretprobes: Go stacks move;
 * a return is a uprobe on each RET instruction), goroutine ids from R14
 * (ABIInternal g register) or, at syscalls, from the thread's TLS. */
#pragma once

#include "maps.h"

/* Each uprobe program exists twice: for classic uprobes (one perf event
 * per probed address) and for uprobe_multi links (Linux ≥ 6.6: one link
 * for all of a process's addresses of a program, attached and removed in
 * one go). User space picks what the kernel has. */
#define GO_UPROBE(name)                                                  \
	SEC("uprobe/" #name)                                             \
	int name(struct pt_regs *ctx) { return name##_body(ctx); }       \
	SEC("uprobe.multi/" #name)                                       \
	int name##_multi(struct pt_regs *ctx) { return name##_body(ctx); }

/* What a Go uprobe's cookie says (enum go_cookie): the function probed
 * and where in it the probe sits. */
static __always_inline __u32 cookie_func(struct pt_regs *ctx)
{
	return (__u32)bpf_get_attach_cookie(ctx);
}

/* The 8-bit field of a cookie at shift (enum go_cookie). */
static __always_inline __u64 cookie_byte(__u64 cookie, int shift)
{
	return (cookie >> shift) & 0xff;
}

static __always_inline __u64 cookie_site(struct pt_regs *ctx)
{
	return cookie_byte(bpf_get_attach_cookie(ctx), GO_COOKIE_SITE_SHIFT);
}

/* runtime.g.goid of the goroutine whose g is g, off being its offset. */
static __always_inline __u64 goid_at(__u64 g, __u64 off)
{
	__u64 goid = 0;

	bpf_probe_read_user(&goid, sizeof(goid), (void *)(g + off));
	return goid;
}

static __always_inline __u64 goid_of(__u64 g, struct go_proc *gp)
{
	return goid_at(g, gp->g_goid);
}

/* g of the current thread at a syscall: the runtime keeps it at fs:-8. */
static __always_inline __u64 goid_at_syscall(struct go_proc *gp)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 fsbase = task->thread.fsbase;
	__u64 g = 0;

	if (!fsbase || bpf_probe_read_user(&g, sizeof(g), (void *)(fsbase - 8)) || !g)
		return 0;
	return goid_of(g, gp);
}

static __always_inline __u64 goid_at_uprobe(struct pt_regs *ctx, struct go_proc *gp)
{
	return goid_of(ctx->r14, gp);
}

/* Copy a Go string (ptr, len at addr) into dst; returns bytes copied. */
static __always_inline __u8 read_go_string(char *dst, __u32 cap, __u64 addr)
{
	struct {
		__u64 ptr;
		__u64 len;
	} s = {};

	if (bpf_probe_read_user(&s, sizeof(s), (void *)addr) || !s.ptr)
		return 0;
	__u64 n = s.len;
	if (n == 0)
		return 0;
	CLAMP_LEN(n, cap);
	if (bpf_probe_read_user(dst, n, (void *)s.ptr))
		return 0;
	return n;
}

struct go_str {
	__u64 ptr;
	__u64 len;
};

/* Copy a Go string into dst; returns bytes copied. */
static __always_inline __u8 copy_go_string(char *dst, __u32 cap, struct go_str s)
{
	__u64 n = s.len;

	if (!s.ptr || n == 0)
		return 0;
	CLAMP_LEN(n, cap);
	if (bpf_probe_read_user(dst, n, (void *)s.ptr))
		return 0;
	return n;
}

/* The Go string header at off in head, a copy of cap bytes from base;
 * read on its own when it lies past them. */
static __always_inline struct go_str go_string_in(const char *head, __u64 cap, __u64 base, __u64 off)
{
	struct go_str s = {};

	if (off <= cap - sizeof(s)) {
		CLAMP_LEN(off, cap - sizeof(s));
		__builtin_memcpy(&s, head + off, sizeof(s));
	} else {
		bpf_probe_read_user(&s, sizeof(s), (void *)(base + off));
	}
	return s;
}

/* A copy of a Go string's first bytes (cap at most) out of line, the
 * scratch copy of base's first bytes; returns bytes copied. The copy is
 * of kernel memory: no user access and its checks (which cost a user
 * read ≈ 75 ns in a busy server). */
static __always_inline __u8 carve_go_string(char *dst, __u32 cap, const char *line, __u64 off, __u64 len)
{
	__u64 n = len;

	if (n == 0)
		return 0;
	CLAMP_LEN(n, cap);
	CLAMP_LEN(off, GO_LINE_CAP);
	if (bpf_probe_read_kernel(dst, n, line + off))
		return 0;
	return n;
}

/* Where the first bytes (cap at most) of s lie from base: their end's
 * offset, or GO_LINE_CAP + 1 when they do not lie in base's first
 * GO_LINE_CAP bytes. */
static __always_inline __u64 piece_end(struct go_str s, __u64 cap, __u64 base)
{
	__u64 n = s.len < cap ? s.len : cap;

	if (s.ptr < base || s.ptr - base > GO_LINE_CAP || s.ptr - base + n > GO_LINE_CAP)
		return GO_LINE_CAP + 1;
	return s.ptr - base + n;
}

/* Method, path and query (m, p, q) in one read when their bytes lie
 * within GO_LINE_CAP bytes from the method's: an HTTP/1 request's do,
 * net/http slicing Method out of the request line and url.Parse Path
 * (when it has no escapes) and RawQuery out of its RequestURI; the
 * pieces are then carved out of the copy. 0: they do not (HTTP/2's come
 * from HPACK, each a string of its own), or the read failed: the caller
 * reads each on its own. */
static __always_inline int read_line(struct go_event *ev, struct go_http_head *h, struct go_str m, struct go_str p,
				     struct go_str q)
{
	__u64 base = m.ptr, end, e;

	if (!base || !m.len || !p.ptr || !p.len)
		return 0;
	end = piece_end(m, GO_METHOD_CAP, base);
	e = piece_end(p, GO_PATH_CAP, base);
	if (e > end)
		end = e;
	if (q.ptr && q.len) {
		e = piece_end(q, GO_QUERY_CAP, base);
		if (e > end)
			end = e;
	}
	if (end > GO_LINE_CAP)
		return 0;
	CLAMP_LEN(end, GO_LINE_CAP);
	if (bpf_probe_read_user(h->line, end, (void *)base))
		return 0;
	ev->method_len = carve_go_string(ev->method, GO_METHOD_CAP, h->line, 0, m.len);
	ev->path_len = carve_go_string(ev->path, GO_PATH_CAP, h->line, p.ptr - base, p.len);
	if (q.ptr && q.len)
		ev->query_len = carve_go_string(ev->query, GO_QUERY_CAP, h->line, q.ptr - base, q.len);
	return 1;
}

/* The method, path and query of the http.Request at req. The head of
 * the Request (its first req_cap bytes) and of its URL are copied at
 * once (a copy per field costs the traced process a helper call each):
 * the fields read lie in them in every Go version tracerd knows
 * (RemoteAddr ends at 192, URL at 24, RawQuery at 112); one past them
 * is read on its own. The three strings' bytes are read at once where
 * they lie together (read_line), else one by one. Returns the scratch
 * copy of the Request's head (NULL: none). */
static __always_inline struct go_http_head *capture_request(struct go_event *ev, __u64 req, struct go_proc *gp,
							    __u32 req_cap)
{
	struct go_str m, p = {}, q = {};
	__u64 url = 0;
	__u32 zero = 0;
	struct go_http_head *h = bpf_map_lookup_elem(&go_http_scratch, &zero);

	if (!h)
		return NULL;
	ev->req = req;
	if (req_cap > sizeof(h->req))
		req_cap = sizeof(h->req);
	if (bpf_probe_read_user(h->req, req_cap, (void *)req))
		return NULL;
	m = go_string_in(h->req, req_cap, req, gp->req_method);
	url = go_string_in(h->req, req_cap, req, gp->req_url).ptr;
	if (url && !bpf_probe_read_user(h->url, sizeof(h->url), (void *)url)) {
		p = go_string_in(h->url, sizeof(h->url), url, gp->url_path);
		if (gp->url_raw_query)
			q = go_string_in(h->url, sizeof(h->url), url, gp->url_raw_query);
	}
	if (read_line(ev, h, m, p, q))
		return h;
	ev->method_len = copy_go_string(ev->method, GO_METHOD_CAP, m);
	ev->path_len = copy_go_string(ev->path, GO_PATH_CAP, p);
	ev->query_len = copy_go_string(ev->query, GO_QUERY_CAP, q);
	return h;
}

/* net/http.serverHandler.ServeHTTP(sh, rw, req): req is in RDI; the
 * request's remote address and protocol too. rw's data word (RCX) is
 * kept: its status is read at the exit (exit_status). */
static __always_inline void capture_http(struct go_event *ev, struct pt_regs *ctx, struct go_proc *gp)
{
	__u64 req = ctx->di;
	ev->rw = ctx->cx;
	struct go_http_head *h = capture_request(ev, req, gp, sizeof(h->req));

	if (!h)
		return;
	if (gp->req_remote_addr) /* 0: unknown for this binary */
		ev->remote_len = copy_go_string(ev->remote, GO_REMOTE_CAP, go_string_in(h->req, sizeof(h->req), req, gp->req_remote_addr));
	ev->proto_major = go_string_in(h->req, sizeof(h->req), req, gp->req_proto_major).ptr;
}

/* grpc-go (*Server).handleStream(t, stream): stream is in RDI; the
 * method ("/package.Service/Method") goes where an HTTP path would. */
static __always_inline void capture_grpc(struct go_event *ev, struct pt_regs *ctx, struct go_proc *gp)
{
	__u64 stream = ctx->di + gp->grpc_stream_embed;

	if (gp->grpc_stream_deref &&
	    (bpf_probe_read_user(&stream, sizeof(stream), (void *)stream) || !stream))
		return;
	ev->path_len = read_go_string(ev->path, GO_PATH_CAP, stream + gp->grpc_stream_method);
}

/* Calls whose event carries strings read at the entry (or, for a TLS
 * handshake, the *tls.Conn read again at its end). */
static __always_inline int has_strings(__u32 func)
{
	return func == GO_SERVE_HTTP || func == GO_GRPC_METHOD || func == GO_TLS_HANDSHAKE ||
	       func == GO_TLS_CLIENT_HANDSHAKE;
}

/* Entry of a timed Go function; the cookie says which. The latest entry
 * wins: after stack growth a function restarts from its entry. A call
 * without strings needs no offset here: the probe is attached for its
 * process alone, and its end looks the process up. */
static __always_inline int go_entry_body(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32;
	struct go_call_key key = { .pid = pid, .func = cookie_func(ctx), .g = ctx->r14 };
	__u32 zero = 0;

	if (!has_strings(key.func)) {
		struct go_call c = { .start = bpf_ktime_get_ns(), .tid = (__u32)pid_tgid };
		if (bpf_map_update_elem(&go_calls_short, &key, &c, BPF_ANY))
			count(CNT_GO_MAP_FULL);
		return 0;
	}
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &pid);
	if (!gp)
		return 0;
	struct go_event *ev = bpf_map_lookup_elem(&go_scratch, &zero);
	if (!ev)
		return 0;
	/* The strings' tails are left as they are: their lengths bound
	 * what is read of them. */
	__builtin_memset(ev, 0, GO_EVENT_HEAD);
	ev->kind = EV_GO;
	ev->pid = pid;
	ev->tid = (__u32)pid_tgid;
	ev->func = key.func;
	ev->goid = goid_of(key.g, gp);
	ev->start = bpf_ktime_get_ns();
	if (key.func == GO_SERVE_HTTP)
		capture_http(ev, ctx, gp);
	else if (key.func == GO_GRPC_METHOD)
		capture_grpc(ev, ctx, gp);
	else /* (*tls.Conn).serverHandshake/clientHandshake(ctx): the receiver in RAX */
		ev->req = ctx->ax;
	if (bpf_map_update_elem(&go_calls, &key, ev, BPF_ANY))
		count(CNT_GO_MAP_FULL);
	return 0;
}

/* A Go event of size bytes (GO_EVENT_HEAD, or the whole struct with its
 * strings), reserved in the ring buffer, its head zeroed (the reserved
 * memory holds older entries; the strings' tails are left as they are:
 * their lengths bound what is read of them). */
static __always_inline struct go_event *go_event_new(__u64 size, __u32 pid, __u32 tid, __u32 func, __u64 goid)
{
	struct go_event *ev = bpf_ringbuf_reserve(&events, size, 0);

	if (!ev) {
		count(CNT_GO_DROPS);
		return NULL;
	}
	__builtin_memset(ev, 0, GO_EVENT_HEAD);
	ev->kind = EV_GO;
	ev->pid = pid;
	ev->tid = tid;
	ev->func = func;
	ev->goid = goid;
	return ev;
}

/* A Go event without strings. */
static __always_inline struct go_event *go_event_head(__u32 pid, __u32 tid, __u32 func, __u64 goid)
{
	return go_event_new(GO_EVENT_HEAD, pid, tid, func, goid);
}

/* h begins "HTTP/1.x " (1: an HTTP/1 status line's head). */
static __always_inline int is_http1_status_head(const char h[12])
{
	return h[0] == 'H' && h[1] == 'T' && h[2] == 'T' && h[3] == 'P' && h[4] == '/' && h[5] == '1' && h[6] == '.' &&
	       h[8] == ' ';
}

/* h begins an HTTP/1 status line, "HTTP/1.x NNN": NNN (user space
 * keeps only real statuses), else 0. */
static __always_inline __u32 http1_status(const char h[12])
{
	if (!is_http1_status_head(h))
		return 0;
	__u32 status = 0;
	for (int i = 9; i < 12; i++) {
		if (h[i] < '0' || h[i] > '9')
			return 0;
		status = status * 10 + (h[i] - '0');
	}
	return status;
}

/* The status of a ServeHTTP call at its exit, whose probe's cookie said
 * which ResponseWriter the call has (kind, enum go_rw_kind): no
 * WriteHeader probe is needed for it (goprobe leaves those out when the
 * offsets are known). HTTP/1: conn.serve, after ServeHTTP returned and
 * before finishRequest, holds a *response: its status, 0 when the
 * handler wrote nothing (finishRequest then sends 200) or took the
 * connection over (hijackedv says which, when DWARF gave its offset).
 * HTTP/2: at (*http2responseWriter).handlerDone's entry rw.rws is still
 * set; 0 again means nothing written yet (handlerDone sends 200).
 * User space maps 0 (docs/go.md). */
static __always_inline void exit_status(struct go_event *ev, struct go_proc *gp, __u32 kind)
{
	__s64 status = 0;
	__u64 p = 0;
	__u8 hijacked = 0;

	if (!ev->rw)
		return;
	if (kind == GO_RW_RESPONSE && gp->resp_status) {
		if (bpf_probe_read_user(&status, sizeof(status), (void *)(ev->rw + gp->resp_status)))
			return;
		if (status == 0 && gp->conn_hijacked &&
		    !bpf_probe_read_user(&p, sizeof(p), (void *)(ev->rw + gp->resp_conn)) && p &&
		    !bpf_probe_read_user(&hijacked, sizeof(hijacked), (void *)(p + gp->conn_hijacked)))
			ev->status_flags |= GO_STATUS_HIJACK_KNOWN | (hijacked ? GO_STATUS_HIJACKED : 0);
	} else if (kind == GO_RW_HTTP2 && gp->h2_rws_status) {
		if (bpf_probe_read_user(&p, sizeof(p), (void *)(ev->rw + gp->h2_rws)) || !p ||
		    bpf_probe_read_user(&status, sizeof(status), (void *)(p + gp->h2_rws_status)))
			return;
		ev->status_flags |= GO_STATUS_HTTP2;
	} else {
		return;
	}
	if (status < 0 || status > 999)
		return; /* not a status: net/http panics on such codes */
	ev->arg = status;
	ev->status_flags |= GO_STATUS_READ;
}

/* The end of a call without strings (go_calls_short) of func on the
 * goroutine whose g is g, if one is open: out it goes, with its end time.
 * goid_off: runtime.g.goid's offset (from the probe's cookie, or the
 * process's go_proc). */
static __always_inline int end_short_call(__u32 pid, __u32 func, __u64 g, __u64 goid_off)
{
	struct go_call_key key = { .pid = pid, .func = func, .g = g };
	struct go_call *c = bpf_map_lookup_elem(&go_calls_short, &key);

	if (!c)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	struct go_event *ev = go_event_head(pid, c->tid, func, goid_at(g, goid_off));
	if (ev) {
		ev->start = c->start;
		ev->end = now;
		bpf_ringbuf_submit(ev, ringbuf_flags());
	}
	bpf_map_delete_elem(&go_calls_short, &key);
	return 1;
}

/* The end of a call of func on the goroutine whose g is g, if one is
 * open: out it goes, with its end time. rw_kind: a ServeHTTP exit's
 * ResponseWriter (enum go_rw_kind; 0: none known). */
static __always_inline int end_call(__u32 pid, struct go_proc *gp, __u32 func, __u64 g, __u32 rw_kind)
{
	struct go_call_key key = { .pid = pid, .func = func, .g = g };

	if (!has_strings(func))
		return end_short_call(pid, func, g, gp->g_goid);
	struct go_event *ev = bpf_map_lookup_elem(&go_calls, &key);
	if (!ev)
		return 0;
	ev->end = bpf_ktime_get_ns();
	/* ServeMux has set the route it matched by now. */
	if (ev->func == GO_SERVE_HTTP && gp->req_pattern && ev->req)
		ev->pattern_len = read_go_string(ev->pattern, GO_PATTERN_CAP, ev->req + gp->req_pattern);
	if (ev->func == GO_SERVE_HTTP && rw_kind)
		exit_status(ev, gp, rw_kind);
	if (bpf_ringbuf_output(&events, ev, sizeof(*ev), ringbuf_flags()))
		count(CNT_GO_DROPS);
	bpf_map_delete_elem(&go_calls, &key);
	return 1;
}

/* crypto/tls (*Conn).serverHandshake or clientHandshake (func) returns
 * (probed at its RETs: it is called through a method value, so no
 * caller can be proven; once per connection): what was negotiated, from
 * the Conn's fields, and whether it failed (the error's itab, RAX, is
 * not nil). */
static __always_inline void tls_handshake_done(struct pt_regs *ctx, __u32 pid, struct go_proc *gp, __u32 func)
{
	struct go_call_key key = { .pid = pid, .func = func, .g = ctx->r14 };
	struct go_event *ev = bpf_map_lookup_elem(&go_calls, &key);
	__u16 vers = 0, cipher = 0;
	__u8 resumed = 0;
	__u64 certs = 0;

	if (!ev)
		return;
	if (ctx->ax)
		ev->tls_flags |= GO_TLS_FAILED;
	if (!gp->tls_vers || !ev->req)
		return;
	if (bpf_probe_read_user(&vers, sizeof(vers), (void *)(ev->req + gp->tls_vers)) ||
	    bpf_probe_read_user(&cipher, sizeof(cipher), (void *)(ev->req + gp->tls_cipher)) ||
	    bpf_probe_read_user(&resumed, sizeof(resumed), (void *)(ev->req + gp->tls_did_resume)) ||
	    bpf_probe_read_user(&certs, sizeof(certs), (void *)(ev->req + gp->tls_peer_certs + 8)))
		return;
	ev->arg = vers | (__u32)cipher << 16;
	ev->tls_flags |= GO_TLS_KNOWN | (resumed ? GO_TLS_RESUMED : 0) |
			 (certs && func == GO_TLS_HANDSHAKE ? GO_TLS_PEER_CERT : 0);
}

/* Where a timed Go function's call ends: one of its RETs, or an emulated
 * instruction that runs once its work is done (after the worker's call
 * returned, in it or in its caller). An exit shared by two functions'
 * calls ends whichever of them is open. The cookie is read once (a
 * helper call), and the end of a call without strings whose probe
 * carries goid's offset (json.Marshal's exits) looks nothing up but the
 * call itself. */
static __always_inline int go_return_body(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 func = (__u32)cookie;
	__u32 alt = cookie_byte(cookie, GO_COOKIE_ALT_SHIFT);
	__u64 goid_off = cookie_byte(cookie, GO_COOKIE_GOID_SHIFT) * 8;
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (goid_off && !has_strings(func) && !has_strings(alt)) {
		if (!end_short_call(pid, func, ctx->r14, goid_off) && alt)
			end_short_call(pid, alt, ctx->r14, goid_off);
		return 0;
	}
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &pid);
	if (!gp)
		return 0;
	if ((func == GO_TLS_HANDSHAKE || func == GO_TLS_CLIENT_HANDSHAKE) &&
	    cookie_byte(cookie, GO_COOKIE_SITE_SHIFT) == PROBE_AT_RET)
		tls_handshake_done(ctx, pid, gp, func);
	if (!end_call(pid, gp, func, ctx->r14, cookie_byte(cookie, GO_COOKIE_RW_SHIFT)) && alt)
		end_call(pid, gp, alt, ctx->r14, 0);
	return 0;
}

/* (*response).WriteHeader(code) / (*http2responseWriter).WriteHeader:
 * receiver in RAX, code in RBX. */
static __always_inline int go_write_header_body(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &pid);

	if (!gp)
		return 0;
	struct go_event *ev = go_event_head(pid, (__u32)pid_tgid, GO_WRITE_HEADER, goid_at_uprobe(ctx, gp));
	if (!ev)
		return 0;
	ev->arg = ctx->bx;
	ev->start = ev->end = bpf_ktime_get_ns();
	bpf_ringbuf_submit(ev, ringbuf_flags());
	return 0;
}

/* grpc-go (*http2Server).writeStatus(s, st) (WriteStatus before 1.69):
 * st (*status.Status) in RCX; its *spb.Status is nil for OK. It is the
 * RPC's last act: it also ends the goroutine's handleStream call, whose
 * RETs would be single-stepped for every RPC. */
static __always_inline int go_grpc_status_body(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &pid);
	__u64 proto = 0;
	__s32 code = 0;

	if (!gp)
		return 0;
	if (!bpf_probe_read_user(&proto, sizeof(proto), (void *)(ctx->cx + gp->grpc_status_proto)) && proto)
		bpf_probe_read_user(&code, sizeof(code), (void *)(proto + gp->grpc_status_code));
	struct go_event *ev = go_event_head(pid, (__u32)pid_tgid, GO_GRPC_STATUS, goid_at_uprobe(ctx, gp));
	if (ev) {
		ev->arg = code;
		ev->start = ev->end = bpf_ktime_get_ns();
		bpf_ringbuf_submit(ev, ringbuf_flags());
	}
	end_call(pid, gp, GO_GRPC_METHOD, ctx->r14, 0);
	return 0;
}

/* runtime.stopTheWorldWithSema(reason): the world stops. reason is a
 * uint8: Go's ABI leaves the rest of RAX undefined. */
static __always_inline int go_stw_stop_body(struct pt_regs *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (!bpf_map_lookup_elem(&go_procs, &pid))
		return 0;
	struct stw_state st = { .start = bpf_ktime_get_ns(), .reason = ctx->ax & 0xff };
	bpf_map_update_elem(&go_stw, &pid, &st, BPF_ANY);
	return 0;
}

/* runtime.startTheWorldWithSema: the pause ends where Go's own clock
 * (PauseTotalNs) ends it. Mark termination reads that clock before the
 * call (the pause ends at the entry), sweep termination inside it after
 * restarting the Ps (at its RETs): probed at both, the cookie's site
 * says which probe this is. Either way the pause is timed from one
 * probe's clock read to another's, as a call is from entry to exit, so
 * user space takes the same calibrated probe cost off both kinds. */
static __always_inline int go_stw_start_body(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32;
	struct stw_state *st = bpf_map_lookup_elem(&go_stw, &pid);

	if (!st)
		return 0;
	int mark_term = st->reason == STW_GC_MARK_TERM;
	if ((cookie_site(ctx) == PROBE_AT_ENTRY) != mark_term)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	struct go_event *ev = go_event_head(pid, (__u32)pid_tgid, GO_STW, 0);
	if (ev) {
		ev->start = st->start;
		ev->end = now;
		ev->arg = st->reason;
		bpf_ringbuf_submit(ev, ringbuf_flags());
	}
	bpf_map_delete_elem(&go_stw, &pid);
	return 0;
}

/* The client reads a Request's Method and URL alone: its first 32 bytes
 * (Method at 0, URL at 16 in every Go version tracerd knows). */
#define GO_CLIENT_REQ_HEAD 32

/* net/http.(*Request).write(r, w, usingProxy, extraHeaders,
 * waitForContinue): the HTTP/1 client's writeLoop about to write request
 * r (RAX) on its connection (Request.Write and WriteProxy call it too).
 * An instant: the request's method, path and query, and r, which the
 * response's ReadResponse is given again. */
static __always_inline int go_http_client_request_body(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &pid);

	if (!gp)
		return 0;
	struct go_event *ev = go_event_new(sizeof(*ev), pid, (__u32)pid_tgid, GO_HTTP_CLIENT_REQUEST, goid_at_uprobe(ctx, gp));
	if (!ev)
		return 0;
	ev->start = ev->end = bpf_ktime_get_ns();
	capture_request(ev, ctx->ax, gp, GO_CLIENT_REQ_HEAD);
	bpf_ringbuf_submit(ev, ringbuf_flags());
	return 0;
}

/* net/http.ReadResponse(r *bufio.Reader, req *Request): r in RAX, req in
 * RBX. The HTTP/1 client's readLoop peeked at the connection before (its
 * Peek(1)), so r's buffer holds the response's first bytes, decrypted
 * under TLS: its status line, "HTTP/1.x NNN", at buf[r:w]. arg = the
 * status, 0 when the line is not (yet) in the buffer or not one. */
static __always_inline int go_http_client_response_body(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &pid);
	__u64 br[8] = {};
	char line[12] = {};
	__u32 status = 0;

	if (!gp)
		return 0;
	if (gp->bufio_w && !bpf_probe_read_user(br, sizeof(br), (void *)ctx->ax)) {
		__u64 buf = br[(gp->bufio_buf / 8) & 7];
		__u64 r = br[(gp->bufio_r / 8) & 7], w = br[(gp->bufio_w / 8) & 7];
		if (buf && r + sizeof(line) <= w && w - r < (1 << 20) &&
		    !bpf_probe_read_user(line, sizeof(line), (void *)(buf + r)))
			status = http1_status(line);
	}
	struct go_event *ev = go_event_head(pid, (__u32)pid_tgid, GO_HTTP_CLIENT_RESPONSE, 0);
	if (!ev)
		return 0;
	ev->req = ctx->bx;
	ev->arg = status;
	ev->start = ev->end = bpf_ktime_get_ns();
	bpf_ringbuf_submit(ev, ringbuf_flags());
	return 0;
}

GO_UPROBE(go_entry)
GO_UPROBE(go_return)
GO_UPROBE(go_write_header)
GO_UPROBE(go_grpc_status)
GO_UPROBE(go_stw_stop)
GO_UPROBE(go_http_client_request)
GO_UPROBE(go_http_client_response)
GO_UPROBE(go_stw_start)
