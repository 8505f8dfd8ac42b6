package export

import (
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tracerd/tracerd/internal/correlate"
)

// Attributes of a finding's span event (docs/findings.md).
const (
	eventFinding        = "tracerd.finding"
	attrFindingCode     = "tracerd.finding.code"
	attrFindingPhase    = "tracerd.finding.phase"
	attrFindingLostNs   = "tracerd.finding.lost_ns"
	attrFindingRemedy   = "tracerd.finding.remedy"
	attrFindingEvidence = "tracerd.finding.evidence."
)

// findingEvents puts each finding as an event on the request's span and
// on the span of the phase it explains, at that phase's end (the
// request's end when the phase has no span).
func findingEvents(r *correlate.Request, server *tracepb.Span, phaseSpan *[correlate.NumPhases]*tracepb.Span, wins *[correlate.NumPhases]window, ok *[correlate.NumPhases]bool) {
	for i := range r.Findings {
		f := &r.Findings[i]
		a := newAttrs(4 + len(f.Evidence))
		a.str(attrFindingCode, f.Code.String())
		a.str(attrFindingPhase, f.Phase.String())
		a.int(attrFindingLostNs, f.LostNs)
		a.str(attrFindingRemedy, f.Code.Remedy())
		for _, e := range f.Evidence {
			switch e.Kind {
			case correlate.EvInt:
				a.int(attrFindingEvidence+e.Key, e.Int)
			case correlate.EvFloat:
				a.list = append(a.list, &commonpb.KeyValue{Key: attrFindingEvidence + e.Key,
					Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: e.Float}}})
			default:
				a.str(attrFindingEvidence+e.Key, e.Text)
			}
		}
		at := r.EndUnixNano
		if f.Phase < correlate.NumPhases && ok[f.Phase] {
			at = wins[f.Phase].end
		}
		// The attributes are shared: messages are only read once built.
		ev := &tracepb.Span_Event{TimeUnixNano: uint64(max(at, 0)), Name: eventFinding, Attributes: a.list}
		server.Events = append(server.Events, ev)
		if f.Phase < correlate.NumPhases {
			if ps := phaseSpan[f.Phase]; ps != nil {
				ps.Events = append(ps.Events, ev)
			}
		}
	}
}
