package goinspect

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// Encodings of the instructions the exit tests assemble functions from.
var (
	asmNop1    = []byte{0x90}
	asmNop2    = []byte{0x66, 0x90}
	asmNop4    = []byte{0x0f, 0x1f, 0x40, 0x00} // not emulated before Linux 6.16
	asmMov     = []byte{0x48, 0x89, 0xc3}       // MOVQ AX, BX
	asmTest    = []byte{0x48, 0x85, 0xc0}       // TESTQ AX, AX
	asmRet     = []byte{0xc3}
	asmInt3    = []byte{0xcc}
	asmCallRAX = []byte{0xff, 0xd0}
	asmJmpRAX  = []byte{0xff, 0xe0}
	asmPush    = []byte{0x55}
)

// fnAsm assembles a test function at entry 0x1000; calls and jumps take
// their target as an absolute address, resolved once parts are laid out.
type fnAsm struct {
	parts [][]byte
	fix   []func(code []byte)
	at    map[string]int // label → offset
}

func newAsm() *fnAsm { return &fnAsm{at: map[string]int{}} }

func (a *fnAsm) pc() int {
	n := 0
	for _, p := range a.parts {
		n += len(p)
	}
	return n
}

func (a *fnAsm) label(name string) *fnAsm { a.at[name] = a.pc(); return a }

func (a *fnAsm) raw(b ...[]byte) *fnAsm {
	a.parts = append(a.parts, b...)
	return a
}

// rel32 emits op (e8 CALL, e9 JMP, 0f 8x Jcc) to target: an address, or
// a label resolved at the end.
func (a *fnAsm) rel32(op []byte, target uint64, label string) *fnAsm {
	at := a.pc() + len(op)
	a.parts = append(a.parts, append(bytes.Clone(op), 0, 0, 0, 0))
	a.fix = append(a.fix, func(code []byte) {
		t := target
		if label != "" {
			t = 0x1000 + uint64(a.at[label])
		}
		binary.LittleEndian.PutUint32(code[at:], uint32(int64(t)-int64(0x1000+at+4)))
	})
	return a
}

func (a *fnAsm) call(target uint64) *fnAsm { return a.rel32([]byte{0xe8}, target, "") }
func (a *fnAsm) jmp(label string) *fnAsm   { return a.rel32([]byte{0xe9}, 0, label) }
func (a *fnAsm) jne(label string) *fnAsm   { return a.rel32([]byte{0x0f, 0x85}, 0, label) }

func (a *fnAsm) fn(t *testing.T) *fnCode {
	t.Helper()
	code := bytes.Join(a.parts, nil)
	for _, f := range a.fix {
		f(code)
	}
	fn, err := decodeFn("test", 0x1000, code, func(e uint64) bool { return e == noRet })
	if err != nil {
		t.Fatal(err)
	}
	return fn
}

const (
	worker = 0x9000 // the work's function
	other  = 0xa000
	noRet  = 0xb000 // a panic
)

// gateExits runs the last level of an After plan on fn by hand: the
// calls of worker, the exit after each, the RETs of paths without one.
func gateExits(fn *fnCode, crossCalls int) (exits, rets []uint64, err error) {
	gates := fn.callsTo(worker)
	if len(gates) == 0 {
		return nil, nil, errors.New("no gate")
	}
	if fn.reaches(gates, gates) {
		return nil, nil, errors.New("loop")
	}
	var sites []int
	for _, g := range gates {
		s, tail, err := fn.walkFrom(g, crossCalls)
		if err != nil {
			return nil, nil, err
		}
		if tail {
			return nil, nil, errors.New("tail")
		}
		sites = append(sites, s)
		exits = append(exits, fn.insns[s].pc)
	}
	if fn.reaches(sites, append(append([]int{}, sites...), gates...)) {
		return nil, nil, errors.New("twice")
	}
	us, err := fn.unguardedReturns(append(gates, sites...))
	for _, u := range us {
		rets = append(rets, u.Addr)
	}
	return exits, rets, err
}

func TestEmulatedEverywhere(t *testing.T) {
	for _, c := range []struct {
		code []byte
		want bool
	}{
		{asmNop1, true}, {asmNop2, true}, {[]byte{0x66, 0x66, 0x90}, true},
		{asmNop4, false}, {[]byte{0x0f, 0x1f, 0x44, 0x00, 0x00}, false},
		{[]byte{0x75, 0x02}, true}, {[]byte{0x0f, 0x84, 1, 0, 0, 0}, true},
		{[]byte{0xeb, 0x00}, true}, {[]byte{0xe9, 0, 0, 0, 0}, true},
		{[]byte{0xe8, 0x66, 0x85, 0xff, 0xff}, true}, // 0x66 in the displacement, not a prefix
		{[]byte{0x66, 0xe8, 0, 0}, false},            // CALLW: the kernel refuses
		{asmPush, true}, {[]byte{0x41, 0x57}, true}, {[]byte{0x66, 0x55}, false},
		{asmRet, false}, {asmMov, false}, {asmCallRAX, false}, {asmJmpRAX, false},
	} {
		in, err := x86asm.Decode(c.code, 64)
		if err != nil {
			t.Fatalf("% x: %v", c.code, err)
		}
		if got := emulatedEverywhere(in, c.code); got != c.want {
			t.Errorf("% x (%v): emulated %v, want %v", c.code, in, got, c.want)
		}
	}
}

func TestExitAfterWorker(t *testing.T) {
	t.Run("straight", func(t *testing.T) {
		// CALL worker; MOV; NOPL (multi-byte: passed); TEST; JNE err; RET; err: RET
		fn := newAsm().call(worker).raw(asmMov, asmNop4, asmTest).jne("err").raw(asmRet).label("err").raw(asmRet).fn(t)
		exits, rets, err := gateExits(fn, 0)
		if err != nil || len(exits) != 1 || exits[0] != 0x1000+5+3+4+3 || len(rets) != 0 {
			t.Errorf("exits %x rets %x err %v; want the JNE", exits, rets, err)
		}
	})
	t.Run("early return keeps its RET", func(t *testing.T) {
		// TEST; JNE work; RET (early); work: CALL worker; NOP; RET
		fn := newAsm().raw(asmTest).jne("work").label("early").raw(asmRet).label("work").call(worker).raw(asmNop1, asmRet).fn(t)
		exits, rets, err := gateExits(fn, 0)
		if err != nil || len(exits) != 1 || len(rets) != 1 || rets[0] != 0x1000+9 {
			t.Errorf("exits %x rets %x err %v; want the NOP and the early RET", exits, rets, err)
		}
	})
	t.Run("worker in a loop", func(t *testing.T) {
		fn := newAsm().label("top").call(worker).raw(asmTest).jne("top").raw(asmRet).fn(t)
		if _, _, err := gateExits(fn, 0); err == nil || err.Error() != "loop" {
			t.Errorf("err %v, want the loop refused", err)
		}
	})
	t.Run("tail call", func(t *testing.T) {
		fn := newAsm().call(worker).raw(asmMov, asmRet).fn(t)
		if _, _, err := gateExits(fn, 0); err == nil || err.Error() != "tail" {
			t.Errorf("err %v, want the tail call refused", err)
		}
	})
	t.Run("indirect call before the exit", func(t *testing.T) {
		fn := newAsm().call(worker).raw(asmCallRAX, asmNop2, asmRet).fn(t)
		if _, _, err := gateExits(fn, 0); err == nil {
			t.Error("an indirect call crossed without leave")
		}
		if exits, _, err := gateExits(fn, 1); err != nil || len(exits) != 1 || exits[0] != 0x1000+7 {
			t.Errorf("crossing one: exits %x err %v", exits, err)
		}
	})
	t.Run("jump table before the work", func(t *testing.T) {
		// An indirect jump: its targets are unknown, a path could return unseen.
		fn := newAsm().raw(asmTest).jne("work").raw(asmJmpRAX).label("work").call(worker).raw(asmNop1, asmRet).fn(t)
		if _, _, err := gateExits(fn, 0); err == nil {
			t.Error("a function with an indirect jump on a path around the work was accepted")
		}
	})
	t.Run("exit that leads back to the work", func(t *testing.T) {
		// CALL worker; JNE again; RET; again: CALL other; JMP → the JNE... : the
		// JNE exit reaches itself.
		fn := newAsm().call(worker).label("x").jne("again").raw(asmRet).label("again").call(other).jmp("x").fn(t)
		if _, _, err := gateExits(fn, 0); err == nil || err.Error() != "twice" {
			t.Errorf("err %v, want an exit that can run twice refused", err)
		}
	})
	t.Run("panic path is not a way to the work", func(t *testing.T) {
		// TEST; JNE bad; CALL worker; NOP; RET; bad: CALL panic; (falls into) CALL worker...
		fn := newAsm().raw(asmTest).jne("bad").label("work").call(worker).raw(asmNop1, asmRet).
			label("bad").call(noRet).raw(asmInt3).fn(t)
		if exits, rets, err := gateExits(fn, 0); err != nil || len(exits) != 1 || len(rets) != 0 {
			t.Errorf("exits %x rets %x err %v", exits, rets, err)
		}
	})
}

// exitPlans are the plans tracerd uses (internal/goprobe), for the
// functions testdata/server has.
var exitPlans = []struct {
	fn   string
	plan ExitPlan
}{
	{"encoding/json.Marshal", ExitPlan{Callers: true}},
	{"encoding/json.Marshal", ExitPlan{After: []string{"encoding/json.(*encodeState).marshal"}}},
	{"encoding/json.(*Encoder).Encode", ExitPlan{After: []string{"encoding/json.(*encodeState).marshal"}}},
	{"encoding/json.(*Decoder).Decode", ExitPlan{After: []string{"encoding/json.(*decodeState).unmarshal", "encoding/json.(*decodeState).value"}}},
	{"net/http.serverHandler.ServeHTTP", ExitPlan{Callers: true, CrossCalls: 1, Follow: map[string]string{
		"net/http.initALPNRequest.ServeHTTP":         "net/http.(*http2responseWriter).handlerDone",
		"net/http.unencryptedHTTP2Request.ServeHTTP": "net/http.(*http2responseWriter).handlerDone",
	}}},
}

// TestExitsBinaries: on real builds, every exit is an instruction start of
// its function, decoding in the file to what it is said to be (an
// emulated instruction, else a RET); stripped builds have the same exits;
// the handler's json.Marshal and conn.serve's ServeHTTP have theirs.
func TestExitsBinaries(t *testing.T) {
	got := map[string]map[string][]uint64{}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			path := v.build(t)
			file, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			mine := map[string][]uint64{}
			for _, p := range exitPlans {
				exits, err := b.Exits(p.fn, p.plan)
				if err != nil {
					t.Errorf("Exits(%s, %+v): %v", p.fn, p.plan, err)
					continue
				}
				key := p.fn + " " + strings.Join(p.plan.After, ">")
				var in []string
				for _, e := range exits {
					checkExit(t, b, file, e)
					mine[key] = append(mine[key], e.Addr)
					in = append(in, e.Func)
					t.Logf("%s: %s %#x %s (emulated %v)", key, e.Func, e.Addr, e.Insn, e.Emulated)
				}
				switch {
				case p.fn == "encoding/json.Marshal" && p.plan.Callers && !strings.Contains(strings.Join(in, " "), "main.main.func1"):
					t.Errorf("no exit in the /json handler: %v", in)
				case p.fn == "net/http.serverHandler.ServeHTTP" && !strings.Contains(strings.Join(in, " "), "net/http.(*conn).serve"):
					t.Errorf("no exit in conn.serve: %v", in)
				}
			}
			got[v.name] = mine
			if v.pairOf != "" {
				if other, ok := got[v.pairOf]; ok {
					for k, addrs := range mine {
						if !equalU64(addrs, other[k]) {
							t.Errorf("%s: stripped exits %x, unstripped %x", k, addrs, other[k])
						}
					}
				}
			}
		})
	}
}

// checkExit: e lies in its function's pclntab bounds, at an instruction
// start of it, and decodes in the file to its kind.
func checkExit(t *testing.T, b *Binary, file []byte, e Exit) {
	t.Helper()
	entry, size, err := b.locate(e.Func)
	if err != nil && !errors.Is(err, ErrNoSymbol) {
		t.Errorf("%s: %v", e.Func, err)
		return
	}
	if err == nil {
		fn, err := b.codeAt(e.Func, entry, size)
		if err != nil {
			t.Errorf("%s: %v", e.Func, err)
			return
		}
		if _, ok := fn.index(e.Addr); !ok {
			t.Errorf("exit %#x is not an instruction start of %s [%#x, +%d)", e.Addr, e.Func, entry, size)
		}
	}
	if e.Offset >= uint64(len(file)) {
		t.Errorf("exit offset %#x past the file", e.Offset)
		return
	}
	in, err := x86asm.Decode(file[e.Offset:], 64)
	if err != nil {
		t.Errorf("exit at offset %#x does not decode: %v", e.Offset, err)
		return
	}
	if e.Emulated != emulatedEverywhere(in, file[e.Offset:]) || (!e.Emulated && in.Op != x86asm.RET) {
		t.Errorf("exit %s %#x (emulated %v) decodes to %v", e.Func, e.Addr, e.Emulated, in)
	}
}

// TestExitsFunctionValue: json.Marshal's address planted in the data (a
// function value: calls through it would go unseen after its callers)
// makes the callers' plan fail; the worker's plan still holds.
func TestExitsFunctionValue(t *testing.T) {
	path := findVariant("local").build(t)
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	entry, _, err := b.locate("encoding/json.Marshal")
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	patched := patchedCopy(t, path, func(data []byte, f *elf.File) []byte {
		s := section(t, f, ".noptrdata")
		binary.LittleEndian.PutUint64(data[(s.Offset+7)&^7+8:], entry)
		return data
	})
	b, err = Open(patched)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Exits("encoding/json.Marshal", ExitPlan{Callers: true}); err == nil || !strings.Contains(err.Error(), "in the data") {
		t.Errorf("callers' exits with the address in the data: %v", err)
	}
	if _, err := b.Exits("encoding/json.Marshal", ExitPlan{After: []string{"encoding/json.(*encodeState).marshal"}}); err != nil {
		t.Errorf("worker's exits: %v", err)
	}
}
