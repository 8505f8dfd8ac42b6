package main

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/tracerd/tracerd/internal/goinspect"
	"github.com/tracerd/tracerd/internal/loader"
)

func siteServe(req, rw uintptr)

// symtabOffset is the file offset of sym's address in .symtab.
func symtabOffset(path, sym string) (uint64, error) {
	f, err := elf.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return 0, err
	}
	for _, s := range syms {
		if s.Name != sym {
			continue
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && s.Value >= p.Vaddr && s.Value < p.Vaddr+p.Filesz {
				return s.Value - p.Vaddr + p.Off, nil
			}
		}
	}
	return 0, fmt.Errorf("%s: no %s in an executable segment", path, sym)
}

func siteClientWrite(req uintptr)

func siteClientRead(br, req uintptr)

// fakeReader is a *bufio.Reader as ReadResponse's probe reads it: its
// buffer holds a status line (the layout every supported Go has).
type fakeReader struct {
	head [64]byte
	line []byte
}

func newFakeReader(l goinspect.BufioLayout) *fakeReader {
	r := &fakeReader{line: []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")}
	*(*uintptr)(unsafe.Pointer(&r.head[l.Buf])) = uintptr(unsafe.Pointer(&r.line[0]))
	*(*int)(unsafe.Pointer(&r.head[l.R])) = 0
	*(*int)(unsafe.Pointer(&r.head[l.W])) = len(r.line)
	return r
}

// progCase is tracerd's own programs on site functions: the CPU one call
// of a timed function costs the thread, entry and end probes together.
type progCase struct {
	name  string
	hits  int
	calls func()
	// probes: program, site symbol, function id, probe site
	probes []progProbe
}

type progProbe struct {
	prog string
	sym  string
	fn   loader.TracerdGoFunc
	site loader.TracerdProbeSite
	rw   loader.TracerdGoRwKind // ServeHTTP's exit: the ResponseWriter whose status it reads
}

// fakeRequest is an *http.Request as ServeHTTP's probe reads it: method,
// URL with path and query, remote address, protocol (offsets of this
// binary's net/http). Method, path and query are slices of one request
// line, as net/http's HTTP/1 server makes them (readRequest slices
// Method out of the line, url.Parse Path and RawQuery out of its
// RequestURI).
type fakeRequest struct {
	buf                      [512]byte
	url                      [256]byte
	method, path, q, address string
}

func newFakeRequest(o goinspect.Offsets) *fakeRequest {
	line := strings.Clone("GET /json?n=1 HTTP/1.1")
	r := &fakeRequest{method: line[:3], path: line[4:9], q: line[10:13], address: "127.0.0.1:40000"}
	put := func(b []byte, off uint64, s string) {
		*(*string)(unsafe.Pointer(&b[off])) = s
	}
	put(r.buf[:], o.RequestMethod, r.method)
	put(r.buf[:], o.RequestRemoteAddr, r.address)
	*(*uintptr)(unsafe.Pointer(&r.buf[o.RequestURL])) = uintptr(unsafe.Pointer(&r.url[0]))
	*(*int)(unsafe.Pointer(&r.buf[o.RequestProtoMajor])) = 1
	put(r.url[:], o.URLPath, r.path)
	put(r.url[:], o.URLRawQuery, r.q)
	return r
}

// progCosts loads the Go uprobe programs (and their maps) of the BPF
// object at obj (tracerd's build of bpf/, possibly an older one), lets
// them act for this process, and measures each case as siteCosts does.
func progCosts(obj string, rounds, calls int) (map[string][]float64, []progCase, error) {
	spec, err := ebpf.LoadCollectionSpec(obj)
	if err != nil {
		return nil, nil, err
	}
	var objs struct {
		Entry       *ebpf.Program `ebpf:"go_entry_multi"`
		Return      *ebpf.Program `ebpf:"go_return_multi"`
		WriteHeader *ebpf.Program `ebpf:"go_write_header_multi"`
		ClientReq   *ebpf.Program `ebpf:"go_http_client_request_multi"`
		ClientResp  *ebpf.Program `ebpf:"go_http_client_response_multi"`
		GoProcs     *ebpf.Map     `ebpf:"go_procs"`
		Events      *ebpf.Map     `ebpf:"events"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, nil, err
	}
	defer objs.Entry.Close()
	defer objs.Return.Close()
	defer objs.WriteHeader.Close()
	defer objs.ClientReq.Close()
	defer objs.ClientResp.Close()
	defer objs.GoProcs.Close()
	defer objs.Events.Close()
	progs := map[string]*ebpf.Program{loader.TracerdProgGoEntry: objs.Entry, loader.TracerdProgGoReturn: objs.Return, loader.TracerdProgGoWriteHeader: objs.WriteHeader,
		loader.TracerdProgGoHttpClientRequest: objs.ClientReq, loader.TracerdProgGoHttpClientResponse: objs.ClientResp}

	bin, err := goinspect.OpenPreferTable("/proc/self/exe")
	if err != nil {
		return nil, nil, err
	}
	o := bin.Offsets
	offs := map[string]uint64{}
	for _, sym := range []string{"main.siteJcc8", "main.siteJcc32", "main.siteCall", "main.siteRet", "main.siteServe",
		"main.siteClientWrite", "main.siteClientRead"} {
		f, err := siteFunc(bin, sym)
		if err == nil {
			offs[sym] = f.EntryOffset
			continue
		}
		// An assembly function with arguments may be absent from the
		// pclntab where .symtab puts it (Go 1.26): its .symtab entry.
		off, serr := symtabOffset("/proc/self/exe", sym+".abi0")
		if serr != nil {
			bin.Close()
			return nil, nil, errors.Join(err, serr)
		}
		offs[sym] = off
	}
	offs["main.siteServe"] += 10      // past MOVQ req+0(FP), DI; MOVQ rw+8(FP), CX
	offs["main.siteClientWrite"] += 5 // past MOVQ req+0(FP), AX
	offs["main.siteClientRead"] += 10 // past MOVQ br+0(FP), AX; MOVQ req+8(FP), BX
	bufio := bin.Bufio
	bin.Close()
	if bufio == nil {
		return nil, nil, errors.New("bufio.Reader's layout unknown")
	}
	self := uint32(os.Getpid())
	if err := objs.GoProcs.Put(self, loader.TracerdGoProc{G_goid: o.GGoid, ReqMethod: o.RequestMethod, ReqUrl: o.RequestURL,
		ReqProtoMajor: o.RequestProtoMajor, ReqRemoteAddr: o.RequestRemoteAddr, UrlPath: o.URLPath, UrlRawQuery: o.URLRawQuery,
		BufioBuf: bufio.Buf, BufioR: bufio.R, BufioW: bufio.W, RespStatus: o.ResponseStatus}); err != nil {
		return nil, nil, err
	}
	// The programs' events are read and dropped, as tracerd reads them.
	rd, err := ringbuf.NewReader(objs.Events)
	if err != nil {
		return nil, nil, err
	}
	defer rd.Close()
	go func() {
		for {
			if _, err := rd.Read(); errors.Is(err, ringbuf.ErrClosed) {
				return
			}
		}
	}()
	req := newFakeRequest(o)
	// A *net/http.response whose handler set 201: what ServeHTTP's exit
	// in conn.serve reads.
	resp := make([]byte, o.ResponseStatus+8)
	*(*int)(unsafe.Pointer(&resp[o.ResponseStatus])) = 201
	br := newFakeReader(*bufio)
	cases := []progCase{
		{"entry (json.Marshal): go_entry on a JNE", 1, func() { siteJcc8() },
			[]progProbe{{loader.TracerdProgGoEntry, "main.siteJcc8", loader.TracerdGoFuncGO_JSON_MARSHAL, loader.TracerdProbeSitePROBE_AT_ENTRY, 0}}},
		{"entry and exit (json.Marshal): go_entry on a JNE, go_return on a CALL", 2, func() { siteJcc8(); siteCall() },
			[]progProbe{{loader.TracerdProgGoEntry, "main.siteJcc8", loader.TracerdGoFuncGO_JSON_MARSHAL, loader.TracerdProbeSitePROBE_AT_ENTRY, 0},
				{loader.TracerdProgGoReturn, "main.siteCall", loader.TracerdGoFuncGO_JSON_MARSHAL, loader.TracerdProbeSitePROBE_AT_EXIT, 0}}},
		{"entry and RET (json.Marshal): go_entry on a JNE, go_return on a RET", 2, func() { siteJcc8(); siteRet() },
			[]progProbe{{loader.TracerdProgGoEntry, "main.siteJcc8", loader.TracerdGoFuncGO_JSON_MARSHAL, loader.TracerdProbeSitePROBE_AT_ENTRY, 0},
				{loader.TracerdProgGoReturn, "main.siteRet", loader.TracerdGoFuncGO_JSON_MARSHAL, loader.TracerdProbeSitePROBE_AT_RET, 0}}},
		{"entry and exit (ServeHTTP: method, path, query, peer read; the status at the exit): go_entry on a JNE, go_return on a CALL", 2,
			func() { siteServe(uintptr(unsafe.Pointer(&req.buf[0])), uintptr(unsafe.Pointer(&resp[0]))); siteCall() },
			[]progProbe{{loader.TracerdProgGoEntry, "main.siteServe", loader.TracerdGoFuncGO_SERVE_HTTP, loader.TracerdProbeSitePROBE_AT_ENTRY, 0},
				{loader.TracerdProgGoReturn, "main.siteCall", loader.TracerdGoFuncGO_SERVE_HTTP, loader.TracerdProbeSitePROBE_AT_EXIT, loader.TracerdGoRwKindGO_RW_RESPONSE}}},
		{"WriteHeader: go_write_header on a JNE", 1, func() { siteJcc32() },
			[]progProbe{{loader.TracerdProgGoWriteHeader, "main.siteJcc32", loader.TracerdGoFuncGO_WRITE_HEADER, loader.TracerdProbeSitePROBE_AT_ENTRY, 0}}},
		{"HTTP client request ((*Request).write: method, path, query read): go_http_client_request on a JNE", 1,
			func() { siteClientWrite(uintptr(unsafe.Pointer(&req.buf[0]))) },
			[]progProbe{{loader.TracerdProgGoHttpClientRequest, "main.siteClientWrite", loader.TracerdGoFuncGO_HTTP_CLIENT_REQUEST, loader.TracerdProbeSitePROBE_AT_ENTRY, 0}}},
		{"HTTP client response (ReadResponse: status line read): go_http_client_response on a JNE", 1,
			func() { siteClientRead(uintptr(unsafe.Pointer(&br.head[0])), uintptr(unsafe.Pointer(&req.buf[0]))) },
			[]progProbe{{loader.TracerdProgGoHttpClientResponse, "main.siteClientRead", loader.TracerdGoFuncGO_HTTP_CLIENT_RESPONSE, loader.TracerdProbeSitePROBE_AT_ENTRY, 0}}},
	}
	ex, err := link.OpenExecutable("/proc/self/exe")
	if err != nil {
		return nil, nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	attach := func(c progCase) ([]link.Link, error) {
		var ls []link.Link
		for _, p := range c.probes {
			cookie := uint64(p.fn) | uint64(p.site)<<loader.TracerdGoCookieGO_COOKIE_SITE_SHIFT |
				uint64(p.rw)<<loader.TracerdGoCookieGO_COOKIE_RW_SHIFT
			if p.prog == loader.TracerdProgGoReturn && o.GGoid%8 == 0 && o.GGoid/8 <= 0xff {
				cookie |= o.GGoid / 8 << loader.TracerdGoCookieGO_COOKIE_GOID_SHIFT // as goprobe's carryGoid (older objects ignore it)
			}
			l, err := ex.UprobeMulti(nil, progs[p.prog], &link.UprobeMultiOptions{PID: self, Addresses: []uint64{offs[p.sym]}, Cookies: []uint64{cookie}})
			if err != nil {
				for _, l := range ls {
					l.Close()
				}
				return nil, fmt.Errorf("%s on %s: %w", p.prog, p.sym, err)
			}
			ls = append(ls, l)
		}
		return ls, nil
	}
	out := map[string][]float64{}
	for r := 0; r < rounds; r++ {
		for _, c := range cases {
			off := timeCalls(c.calls, calls)
			ls, err := attach(c)
			if err != nil {
				return nil, nil, err
			}
			on := timeCalls(c.calls, calls)
			for _, l := range ls {
				l.Close()
			}
			out[c.name] = append(out[c.name], float64(on-off)/float64(calls*c.hits))
		}
	}
	// BPF run time per hit, in a pass of its own (the statistics add two
	// clock reads to each run): what the programs take here, against
	// what they take in the JSON server (the load's tables).
	if stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err == nil {
		for _, c := range cases {
			ls, err := attach(c)
			if err != nil {
				stats.Close()
				return nil, nil, err
			}
			before := runTime(progs)
			timeCalls(c.calls, calls)
			out[c.name+runTimeKey] = []float64{float64(runTime(progs)-before) / float64(calls*c.hits)}
			for _, l := range ls {
				l.Close()
			}
		}
		stats.Close()
	}
	runtime.KeepAlive(req)
	runtime.KeepAlive(resp)
	runtime.KeepAlive(br)
	return out, cases, nil
}

// runTimeKey marks a case's BPF run time per hit in progCosts' results.
const runTimeKey = " (BPF run time)"

// runTime is the programs' total run time (BPF statistics on).
func runTime(progs map[string]*ebpf.Program) time.Duration {
	var t time.Duration
	for _, p := range progs {
		if s, err := p.Stats(); err == nil {
			t += s.Runtime
		}
	}
	return t
}

func progReport(costs map[string][]float64, cases []progCase, obj string, rounds, calls int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n### Cost of one uprobe hit with tracerd's programs\n\n")
	fmt.Fprintf(&b, "`go run ./tests/bench/goaware -sites-only -bpf-object %s`, %s: tracerd's Go uprobe programs (loaded from that object, acting for the benchmark process) on site functions as above, each case called %d times without and with its probes, %d interleaved rounds; thread CPU time added per probe hit (trap and program). ServeHTTP's entry reads a request laid out as this binary's net/http lays it out.\n\n",
		obj, time.Now().UTC().Format("2006-01-02 15:04 UTC"), calls, rounds)
	fmt.Fprintf(&b, "| case | per hit (median) | range | of it BPF run time (one pass, statistics on) |\n|---|---|---|---|\n")
	for _, c := range cases {
		v := append([]float64(nil), costs[c.name]...)
		sort.Float64s(v)
		rt := "–"
		if r := costs[c.name+runTimeKey]; len(r) > 0 {
			rt = fmt.Sprintf("%.0f ns", r[0])
		}
		fmt.Fprintf(&b, "| %s | %.2f µs | %.2f – %.2f µs | %s |\n", c.name, v[len(v)/2]/1e3, v[0]/1e3, v[len(v)-1]/1e3, rt)
	}
	return b.String()
}
