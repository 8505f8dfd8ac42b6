#include "textflag.h"

// Each site function starts with the instruction to probe (at offset 0)
// and returns; the benchmark calls it in a loop with and without a
// uprobe there. Bytes are spelled out so that the assembler emits
// exactly the encoding Go's compiler does at such places.

TEXT ·siteNone(SB), NOSPLIT|NOFRAME, $0-0
	RET

// RET itself: what a return probe sits on (single-stepped).
TEXT ·siteRet(SB), NOSPLIT|NOFRAME, $0-0
	RET

// MOVQ AX, BX: an ordinary instruction (single-stepped).
TEXT ·siteMov(SB), NOSPLIT|NOFRAME, $0-0
	BYTE $0x48; BYTE $0x89; BYTE $0xc3
	RET

// NOPL (90): the inline marks Go emits.
TEXT ·siteNop1(SB), NOSPLIT|NOFRAME, $0-0
	BYTE $0x90
	RET

// NOPW (66 90).
TEXT ·siteNop2(SB), NOSPLIT|NOFRAME, $0-0
	BYTE $0x66; BYTE $0x90
	RET

// NOPL 0(AX) (0f 1f 40 00): alignment before a call.
TEXT ·siteNop4(SB), NOSPLIT|NOFRAME, $0-0
	BYTE $0x0f; BYTE $0x1f; BYTE $0x40; BYTE $0x00
	RET

// NOPL 0(AX)(AX*1) (0f 1f 44 00 00).
TEXT ·siteNop5(SB), NOSPLIT|NOFRAME, $0-0
	BYTE $0x0f; BYTE $0x1f; BYTE $0x44; BYTE $0x00; BYTE $0x00
	RET

// NOPW 0(AX)(AX*1) (66 0f 1f 84 00 00 00 00 00): 9 bytes.
TEXT ·siteNop9(SB), NOSPLIT|NOFRAME, $0-0
	BYTE $0x66; BYTE $0x0f; BYTE $0x1f; BYTE $0x84; BYTE $0x00; BYTE $0x00; BYTE $0x00; BYTE $0x00; BYTE $0x00
	RET

// JNE +0 (75 00): the stack check's or an error check's jump.
TEXT ·siteJcc8(SB), NOSPLIT|NOFRAME, $0-0
	BYTE $0x75; BYTE $0x00
	RET

// JNE +0 (0f 85 rel32).
TEXT ·siteJcc32(SB), NOSPLIT|NOFRAME, $0-0
	BYTE $0x0f; BYTE $0x85; BYTE $0x00; BYTE $0x00; BYTE $0x00; BYTE $0x00
	RET

// JMP +0 (eb 00).
TEXT ·siteJmp(SB), NOSPLIT|NOFRAME, $0-0
	BYTE $0xeb; BYTE $0x00
	RET

// CALL rel32 to a leaf.
TEXT ·siteCall(SB), NOSPLIT|NOFRAME, $0-0
	CALL ·siteNone(SB)
	RET

// PUSHQ BP (a frame's first instruction), then POPQ BP.
TEXT ·sitePush(SB), NOSPLIT|NOFRAME, $0-0
	PUSHQ BP
	POPQ BP
	RET

// siteServe(req, rw) puts req in DI and rw in CX, as net/http's
// serverHandler.ServeHTTP has its *Request and its ResponseWriter's data
// word there, then reaches its probed JNE (offset 10).
TEXT ·siteServe(SB), NOSPLIT|NOFRAME, $0-16
	MOVQ req+0(FP), DI
	MOVQ rw+8(FP), CX
	BYTE $0x75; BYTE $0x00
	RET

// siteClientWrite(req) puts req in AX, as net/http's (*Request).write
// has its receiver there, then reaches its probed JNE (offset 5).
TEXT ·siteClientWrite(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ req+0(FP), AX
	BYTE $0x75; BYTE $0x00
	RET

// siteClientRead(br, req) puts br in AX and req in BX, as
// net/http.ReadResponse has them, then reaches its probed JNE (offset 10).
TEXT ·siteClientRead(SB), NOSPLIT|NOFRAME, $0-16
	MOVQ br+0(FP), AX
	MOVQ req+8(FP), BX
	BYTE $0x75; BYTE $0x00
	RET
