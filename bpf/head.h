/* The request head kept in the kernel: only what user space parses —
 * the request line, and the traceparent header — never the rest (cookies,
 * Authorization). The head is copied into a per-CPU scratch buffer,
 * scanned for line ends, the two lines moved into the record, and the
 * scratch cleared. */
#pragma once

#include "maps.h"

/* The traceparent line kept: "traceparent: " + 55 + CRLF is 70 bytes. */
#define TP_LINE_CAP 128
#define HEAD_SLACK TP_LINE_CAP /* reads past n stay inside the scratch */

/* Line ends found (at most MAX_LINES: a traceparent header further down
 * is not kept). State lives here, not on the stack: the verifier does
 * not track map memory, so the loops' paths merge. */
#define MAX_LINES 32

struct head_scratch {
	__u8 b[REQ_HEAD_CAP + HEAD_SLACK]; /* first: 8-byte aligned for the word scan */
	__u32 n;      /* bytes captured */
	__u32 lines;  /* '\n' positions found */
	__u32 tp_count, tp_start, tp_end; /* traceparent lines: [start, end) of the last */
	__u16 eol[MAX_LINES];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct head_scratch);
} head_scratch SEC(".maps");

/* Through memory, every time: clang would keep these in registers,
 * which the verifier tracks exactly, one state per value. */
#define MEM(x) (*(volatile typeof(x) *)&(x))

static __always_inline struct head_scratch *scratch_head(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&head_scratch, &zero);
}

/* "tracepar" and "ent:", lower case, little endian; letters are folded
 * by OR 0x20 (':' already has that bit). */
#define TP_WORD0 0x7261706563617274ULL
#define TP_WORD1 0x3a746e65U
#define FOLD0 0x2020202020202020ULL
#define FOLD1 0x20202020U

#define NL8 0x0a0a0a0a0a0a0a0aULL
#define ONES8 0x0101010101010101ULL
#define HIGH8 0x8080808080808080ULL
#define LOW7 0x7f7f7f7f7f7f7f7fULL
#define BYTE_INDEX 0x0001020304050607ULL

/* Whether a header line starting at off is "traceparent:" (any case). */
static __always_inline int traceparent_at(struct head_scratch *s, __u32 off)
{
	__u64 w0;
	__u32 w1;

	if (off > REQ_HEAD_CAP)
		return 0;
	__builtin_memcpy(&w0, &s->b[off], 8);
	__builtin_memcpy(&w1, &s->b[off + 8], 4);
	return (w0 | FOLD0) == TP_WORD0 && (w1 | FOLD1) == TP_WORD1;
}

/* Keep the first n bytes' request line and traceparent line in dst;
 * returns the length kept. Without a complete request line, the n
 * bytes are all request line and kept as they are. */
static __always_inline __u16 keep_parsed(struct head_scratch *s, __u32 n, __u8 *dst)
{
	MEM(s->n) = n;
	MEM(s->lines) = 0;
	MEM(s->tp_count) = 0;
	MEM(s->tp_start) = 0;
	MEM(s->tp_end) = 0;
	/* Eight bytes at a time: a word holds a '\n' when word ^ NL8 has a
	 * zero byte (exact test); only such words are looked at further.
	 * Bytes past n are zero (the scratch is cleared after each use). */
	for (__u32 w = 0; w < REQ_HEAD_CAP / 8; w++) {
		__u32 base = w * 8;
		__u64 x;

		if (base >= MEM(s->n))
			break;
		__builtin_memcpy(&x, &s->b[base], 8);
		x ^= NL8;
		if (!((x - ONES8) & ~x & HIGH8))
			continue;
		/* 0x80 in each byte that is '\n', exactly (the quick test above
		 * may also flag a byte just past one): then one step per line
		 * end, not per byte. The lowest flag's byte index k comes from
		 * 1 << 8k times 0x0001020304050607, whose top byte is then k. */
		__u64 m = ~(((x & LOW7) + LOW7) | x | LOW7);

		for (__u32 j = 0; j < 8; j++) {
			if (!m)
				break;
			__u32 i = base + (__u32)((((m & -m) >> 7) * BYTE_INDEX) >> 56);

			m &= m - 1;
			if (i >= MEM(s->n))
				break;
			__u32 l = MEM(s->lines);

			if (l < MAX_LINES) {
				s->eol[l & (MAX_LINES - 1)] = i;
				MEM(s->lines) = l + 1;
			}
		}
	}
	/* Header lines: from just past one '\n' to the next (a last line
	 * without its '\n' was cut: not kept, as the parser ignores it). */
	for (__u32 k = 1; k < MAX_LINES; k++) {
		if (k >= MEM(s->lines))
			break;
		__u32 start = s->eol[(k - 1) & (MAX_LINES - 1)] + 1;

		if (traceparent_at(s, start)) {
			MEM(s->tp_count) = MEM(s->tp_count) + 1;
			MEM(s->tp_start) = start;
			MEM(s->tp_end) = s->eol[k & (MAX_LINES - 1)] + 1;
		}
	}
	__u64 len = MEM(s->lines) ? s->eol[0] + 1 : n;

	CLAMP_LEN(len, REQ_HEAD_CAP);
	if (len == 0 || bpf_probe_read_kernel(dst, len, s->b))
		return 0;
	/* One complete traceparent line (two make the context invalid),
	 * when it fits after the request line. */
	__u32 tp_start = MEM(s->tp_start), tp_end = MEM(s->tp_end);

	if (MEM(s->tp_count) == 1 && tp_end > tp_start &&
	    tp_end - tp_start <= TP_LINE_CAP && len <= REQ_HEAD_CAP - TP_LINE_CAP) {
		__u64 tlen = tp_end - tp_start, at = len, from = tp_start;

		CLAMP_LEN(at, REQ_HEAD_CAP - TP_LINE_CAP);
		CLAMP_LEN(from, REQ_HEAD_CAP);
		CLAMP_LEN(tlen, TP_LINE_CAP);
		if (!bpf_probe_read_kernel(dst + at, tlen, &s->b[from]))
			len += tlen;
	}
	return len;
}
