package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tracerd/tracerd/internal/correlate"
)

// scopeName is the instrumentation scope of every span tracerd sends.
const scopeName = "github.com/tracerd/tracerd"

// schemaURL: the semantic conventions the attribute names follow.
const schemaURL = "https://opentelemetry.io/schemas/1.43.0"

// OTLPOptions configure an OTLP exporter.
type OTLPOptions struct {
	Client     otlptrace.Client // gRPC or HTTP, from OTLPSettings.Client
	Sampler    Sampler
	QueueSpans int           // spans waiting at most; past it new spans are dropped
	BatchSpans int           // spans per export call at most
	BatchDelay time.Duration // a batch waits at most this long to fill
	Host       string        // host.name
	Resource   []*commonpb.KeyValue
	Version    string // tracerd's version, the scope's
	Logger     *slog.Logger
	// KeepQueryValues sends url.query as the client sent it instead of
	// with each value REDACTED (see RedactedValue).
	KeepQueryValues bool
}

// OTLPStats count what happened to requests and spans.
type OTLPStats struct {
	Sampled       [numDecisions]int64 // requests by decision
	RateLimited   int64               // sampled requests not exported: their service was over Sampler.MaxPerSecond
	SpansQueued   int64               // waiting now
	SpansExported int64               // accepted by the endpoint
	SpansDropped  int64               // the queue was full
	SpansFailed   int64               // their export failed
	Exports       int64               // export calls
	ExportErrors  int64               // export calls that failed
}

// OTLP exports sampled requests as span trees. Add never blocks: it
// samples, and queues the request for the export goroutine, which
// builds the spans, batches them and sends them one batch at a time.
// When the endpoint is down or slow the queue fills and what does not
// fit is dropped and counted; export resumes by itself.
type OTLP struct {
	opts    OTLPOptions
	queue   chan *otlpItem
	queued  atomic.Int64
	stop    chan struct{}
	done    chan struct{}
	closed  atomic.Bool
	ctx     context.Context // export calls; cancelled by a Shutdown that ran out of time
	cancel  context.CancelFunc
	res     *resources
	sampled [numDecisions]atomic.Int64
	limiter *traceLimiter // nil: no cap
	st      struct {
		exported, dropped, failed, exports, errors, limited atomic.Int64
	}
	failing failState // export goroutine only
}

// failState follows a run of failed exports, for the log.
type failState struct {
	since, lastLog time.Time
	errors, spans  int64
}

type otlpItem struct {
	req   correlate.Request
	proc  *Process
	spans int64
}

// NewOTLP starts the client and the export goroutine. The endpoint need
// not be up: the first exports will fail and be counted.
func NewOTLP(opts OTLPOptions) (*OTLP, error) {
	if opts.QueueSpans <= 0 || opts.BatchSpans <= 0 || opts.BatchDelay <= 0 {
		return nil, errors.New("OTLP queue size, batch size and batch delay must be positive")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	e := &OTLP{
		opts:    opts,
		queue:   make(chan *otlpItem, opts.QueueSpans),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		res:     newResources(opts.Host, opts.Resource),
		limiter: newTraceLimiter(opts.Sampler.MaxPerSecond),
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	if err := opts.Client.Start(e.ctx); err != nil {
		e.cancel()
		return nil, fmt.Errorf("starting the OTLP client: %w", err)
	}
	go e.run()
	return e, nil
}

// SpanCount is how many spans a request's tree has.
func SpanCount(r *correlate.Request) int64 {
	n := int64(1 + len(r.Spans))
	r.Phases.Each(func(correlate.Phase, int64) { n++ })
	return n
}

// Add samples a request and queues it when sampled. It returns the
// decision (counted in Stats().Sampled), or NotSampled when the
// request's service is over its traces per second (counted in
// RateLimited): callers link exported traces from metrics, and this one
// will not be. A sampled request can still be dropped (counted) when
// the queue is full. p is the request's process (Processes.Identify),
// r.Service its service.
func (e *OTLP) Add(r *correlate.Request, p *Process) Decision {
	d := e.opts.Sampler.Decide(r)
	e.sampled[d].Add(1)
	if d == NotSampled {
		return d
	}
	if e.limiter != nil && !e.limiter.allow(r.Service) {
		e.st.limited.Add(1)
		return NotSampled
	}
	n := SpanCount(r)
	if e.closed.Load() {
		e.st.dropped.Add(n)
		return d
	}
	if e.queued.Add(n) > int64(e.opts.QueueSpans) {
		e.queued.Add(-n)
		e.st.dropped.Add(n)
		return d
	}
	select {
	case e.queue <- &otlpItem{req: r.Clone(), proc: p, spans: n}:
	default: // cannot happen: the channel holds as many items as spans
		e.queued.Add(-n)
		e.st.dropped.Add(n)
	}
	return d
}

// Stats returns the counts so far.
func (e *OTLP) Stats() OTLPStats {
	var s OTLPStats
	for i := range s.Sampled {
		s.Sampled[i] = e.sampled[i].Load()
	}
	s.RateLimited = e.st.limited.Load()
	s.SpansQueued = max(e.queued.Load(), 0)
	s.SpansExported = e.st.exported.Load()
	s.SpansDropped = e.st.dropped.Load()
	s.SpansFailed = e.st.failed.Load()
	s.Exports = e.st.exports.Load()
	s.ExportErrors = e.st.errors.Load()
	return s
}

// Shutdown exports what is queued, within ctx, and stops the client.
// What is still queued when ctx ends is counted as dropped.
func (e *OTLP) Shutdown(ctx context.Context) error {
	if e.closed.Swap(true) {
		return nil
	}
	close(e.stop)
	select {
	case <-e.done:
	case <-ctx.Done():
		e.cancel() // abandon the export in flight
		<-e.done
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := e.opts.Client.Stop(stopCtx)
	e.cancel()
	if n := e.queued.Swap(0); n > 0 {
		e.st.dropped.Add(n)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// batch is spans grouped by resource, in arrival order.
type batch struct {
	rs    []*tracepb.ResourceSpans
	index map[*resourcepb.Resource]*tracepb.ScopeSpans
	spans int64
}

func (b *batch) add(res *resourcepb.Resource, version string, spans []*tracepb.Span) {
	if b.index == nil {
		b.index = map[*resourcepb.Resource]*tracepb.ScopeSpans{}
	}
	ss := b.index[res]
	if ss == nil {
		ss = &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: scopeName, Version: version}, SchemaUrl: schemaURL}
		b.rs = append(b.rs, &tracepb.ResourceSpans{Resource: res, ScopeSpans: []*tracepb.ScopeSpans{ss}, SchemaUrl: schemaURL})
		b.index[res] = ss
	}
	ss.Spans = append(ss.Spans, spans...)
	b.spans += int64(len(spans))
}

func (e *OTLP) run() {
	defer close(e.done)
	var b batch
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	take := func(it *otlpItem) {
		e.queued.Add(-it.spans)
		if b.spans == 0 {
			timer.Reset(e.opts.BatchDelay)
		}
		b.add(e.res.get(it.proc, it.req.Service), e.opts.Version, requestSpans(&it.req, e.opts.KeepQueryValues))
	}
	flush := func() {
		timer.Stop()
		if b.spans > 0 {
			e.export(&b)
			b = batch{}
		}
	}
	limit := int64(e.opts.BatchSpans)
	push := func(it *otlpItem) {
		if b.spans > 0 && b.spans+it.spans > limit {
			flush() // a request's spans stay in one batch
		}
		take(it)
		if b.spans >= limit {
			flush()
		}
	}
	for {
		select {
		case it := <-e.queue:
			push(it)
		case <-timer.C:
			flush()
		case <-e.stop:
			for {
				select {
				case it := <-e.queue:
					push(it)
					continue
				default:
				}
				break
			}
			flush()
			return
		}
	}
}

func (e *OTLP) export(b *batch) {
	e.st.exports.Add(1)
	err := e.opts.Client.UploadTraces(e.ctx, b.rs)
	if err == nil {
		e.st.exported.Add(b.spans)
		e.recovered()
		return
	}
	e.st.errors.Add(1)
	e.st.failed.Add(b.spans)
	e.failed(err, b.spans)
}

// logEvery bounds the warnings of an endpoint that stays down.
const logEvery = 30 * time.Second

func (e *OTLP) failed(err error, spans int64) {
	f := &e.failing
	now := time.Now()
	f.errors++
	f.spans += spans
	if f.since.IsZero() {
		f.since, f.lastLog = now, now
		e.opts.Logger.Warn("OTLP export failed: tracing goes on, spans are dropped and counted until the endpoint answers", "error", err, "spans", spans)
		return
	}
	if now.Sub(f.lastLog) >= logEvery {
		f.lastLog = now
		e.opts.Logger.Warn("OTLP export still failing", "since", now.Sub(f.since).Round(time.Second), "failed_exports", f.errors, "spans_lost", f.spans+e.st.dropped.Load(), "error", err)
	}
}

func (e *OTLP) recovered() {
	f := &e.failing
	if f.since.IsZero() {
		return
	}
	e.opts.Logger.Info("OTLP export resumed", "after", time.Since(f.since).Round(time.Millisecond), "failed_exports", f.errors, "spans_failed", f.spans, "spans_dropped_total", e.st.dropped.Load())
	e.failing = failState{}
}
