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

static __always_inline __u64 cookie_site(struct pt_regs *ctx)
{
	return bpf_get_attach_cookie(ctx) >> GO_COOKIE_SITE_SHIFT;
}

/* g of the current thread at a syscall: the runtime keeps it at fs:-8. */
static __always_inline __u64 goid_at_syscall(struct go_proc *gp)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 fsbase = task->thread.fsbase;
	__u64 g = 0, goid = 0;

	if (!fsbase || bpf_probe_read_user(&g, sizeof(g), (void *)(fsbase - 8)) || !g)
		return 0;
	bpf_probe_read_user(&goid, sizeof(goid), (void *)(g + gp->g_goid));
	return goid;
}

static __always_inline __u64 goid_at_uprobe(struct pt_regs *ctx, struct go_proc *gp)
{
	__u64 goid = 0;

	bpf_probe_read_user(&goid, sizeof(goid), (void *)(ctx->r14 + gp->g_goid));
	return goid;
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

/* net/http.serverHandler.ServeHTTP(sh, rw, req): req is in RDI. */
static __always_inline void capture_http(struct go_event *ev, struct pt_regs *ctx, struct go_proc *gp)
{
	__u64 req = ctx->di, url = 0, major = 0;

	ev->req = req;

	ev->method_len = read_go_string(ev->method, GO_METHOD_CAP, req + gp->req_method);
	if (gp->req_remote_addr) /* 0: unknown for this binary */
		ev->remote_len = read_go_string(ev->remote, GO_REMOTE_CAP, req + gp->req_remote_addr);
	bpf_probe_read_user(&major, sizeof(major), (void *)(req + gp->req_proto_major));
	ev->proto_major = major;
	if (!bpf_probe_read_user(&url, sizeof(url), (void *)(req + gp->req_url)) && url) {
		ev->path_len = read_go_string(ev->path, GO_PATH_CAP, url + gp->url_path);
		if (gp->url_raw_query)
			ev->query_len = read_go_string(ev->query, GO_QUERY_CAP, url + gp->url_raw_query);
	}
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

/* Entry of a timed Go function; the cookie says which. The latest entry
 * wins: after stack growth a function restarts from its entry. */
static __always_inline int go_entry_body(struct pt_regs *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &pid);
	__u32 zero = 0;

	if (!gp)
		return 0;
	struct go_event *ev = bpf_map_lookup_elem(&go_scratch, &zero);
	if (!ev)
		return 0;
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->kind = EV_GO;
	ev->pid = pid;
	ev->tid = (__u32)bpf_get_current_pid_tgid();
	ev->func = cookie_func(ctx);
	ev->goid = goid_at_uprobe(ctx, gp);
	ev->start = bpf_ktime_get_ns();
	if (ev->func == GO_SERVE_HTTP)
		capture_http(ev, ctx, gp);
	else if (ev->func == GO_GRPC_METHOD)
		capture_grpc(ev, ctx, gp);

	struct go_call_key key = { .pid = pid, .func = ev->func, .goid = ev->goid };
	if (bpf_map_update_elem(&go_calls, &key, ev, BPF_ANY))
		count(CNT_GO_MAP_FULL);
	return 0;
}

/* A RET of a timed Go function. */
static __always_inline int go_return_body(struct pt_regs *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &pid);

	if (!gp)
		return 0;
	struct go_call_key key = {
		.pid = pid,
		.func = cookie_func(ctx),
		.goid = goid_at_uprobe(ctx, gp),
	};
	struct go_event *ev = bpf_map_lookup_elem(&go_calls, &key);
	if (!ev)
		return 0;
	ev->end = bpf_ktime_get_ns();
	/* ServeMux has set the route it matched by now. */
	if (ev->func == GO_SERVE_HTTP && gp->req_pattern && ev->req)
		ev->pattern_len = read_go_string(ev->pattern, GO_PATTERN_CAP, ev->req + gp->req_pattern);
	if (bpf_ringbuf_output(&events, ev, sizeof(*ev), ringbuf_flags()))
		count(CNT_GO_DROPS);
	bpf_map_delete_elem(&go_calls, &key);
	return 0;
}

/* (*response).WriteHeader(code) / (*http2responseWriter).WriteHeader:
 * receiver in RAX, code in RBX. */
static __always_inline int go_write_header_body(struct pt_regs *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &pid);

	if (!gp)
		return 0;
	struct go_event ev = {
		.kind = EV_GO,
		.pid = pid,
		.tid = (__u32)bpf_get_current_pid_tgid(),
		.func = GO_WRITE_HEADER,
		.goid = goid_at_uprobe(ctx, gp),
		.arg = ctx->bx,
	};
	ev.start = ev.end = bpf_ktime_get_ns();
	if (bpf_ringbuf_output(&events, &ev, sizeof(ev), ringbuf_flags()))
		count(CNT_GO_DROPS);
	return 0;
}

/* grpc-go (*http2Server).writeStatus(s, st) (WriteStatus before 1.69):
 * st (*status.Status) in RCX; its *spb.Status is nil for OK. */
static __always_inline int go_grpc_status_body(struct pt_regs *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &pid);
	__u64 proto = 0;
	__s32 code = 0;

	if (!gp)
		return 0;
	if (!bpf_probe_read_user(&proto, sizeof(proto), (void *)(ctx->cx + gp->grpc_status_proto)) && proto)
		bpf_probe_read_user(&code, sizeof(code), (void *)(proto + gp->grpc_status_code));
	struct go_event ev = {
		.kind = EV_GO,
		.pid = pid,
		.tid = (__u32)bpf_get_current_pid_tgid(),
		.func = GO_GRPC_STATUS,
		.goid = goid_at_uprobe(ctx, gp),
		.arg = code,
	};
	ev.start = ev.end = bpf_ktime_get_ns();
	if (bpf_ringbuf_output(&events, &ev, sizeof(ev), ringbuf_flags()))
		count(CNT_GO_DROPS);
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
 * probe's clock read to another's, as a call is from entry to RET, so
 * user space takes the same calibrated probe cost off both kinds. */
static __always_inline int go_stw_start_body(struct pt_regs *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct stw_state *st = bpf_map_lookup_elem(&go_stw, &pid);

	if (!st)
		return 0;
	int mark_term = st->reason == STW_GC_MARK_TERM;
	if ((cookie_site(ctx) == PROBE_AT_ENTRY) != mark_term)
		return 0;
	struct go_event ev = {
		.kind = EV_GO,
		.pid = pid,
		.tid = (__u32)bpf_get_current_pid_tgid(),
		.func = GO_STW,
		.start = st->start,
		.end = bpf_ktime_get_ns(),
		.arg = st->reason,
	};
	bpf_map_delete_elem(&go_stw, &pid);
	if (bpf_ringbuf_output(&events, &ev, sizeof(ev), ringbuf_flags()))
		count(CNT_GO_DROPS);
	return 0;
}

GO_UPROBE(go_entry)
GO_UPROBE(go_return)
GO_UPROBE(go_write_header)
GO_UPROBE(go_grpc_status)
GO_UPROBE(go_stw_stop)
GO_UPROBE(go_stw_start)
