package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// The gRPC service "tracerd.test.Lab", described by hand (no generated
// code): requests and answers are google.protobuf.Struct.
//
//	Sleep {ms, code, items}: sleeps ms, then fails with status code when
//	  non-zero, else answers a list of items entries; the handler's own
//	  proto.Marshal of that answer is timed and sent as the header
//	  x-serialize-ns (grpc-go then marshals the answer again).
//	Count {n, ms}: server stream of n messages, ms apart.
var labService = grpc.ServiceDesc{
	ServiceName: "tracerd.test.Lab",
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Sleep", Handler: labSleep}},
	Streams:     []grpc.StreamDesc{{StreamName: "Count", Handler: labCount, ServerStreams: true}},
}

func number(s *structpb.Struct, key string) int {
	return int(s.GetFields()[key].GetNumberValue())
}

func labSleep(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	in := &structpb.Struct{}
	if err := dec(in); err != nil {
		return nil, err
	}
	time.Sleep(time.Duration(number(in, "ms")) * time.Millisecond)
	if code := number(in, "code"); code != 0 {
		return nil, status.Error(codes.Code(code), "asked for it")
	}
	list := make([]any, number(in, "items"))
	for i := range list {
		list[i] = map[string]any{"id": float64(i), "name": fmt.Sprintf("item-%d", i), "ok": true}
	}
	items, err := structpb.NewList(list)
	if err != nil {
		return nil, err
	}
	out := &structpb.Struct{Fields: map[string]*structpb.Value{"items": structpb.NewListValue(items)}}
	start := time.Now()
	if _, err := proto.Marshal(out); err != nil {
		return nil, err
	}
	took := time.Since(start)
	if err := grpc.SetHeader(ctx, metadata.Pairs("x-serialize-ns", strconv.FormatInt(took.Nanoseconds(), 10))); err != nil {
		return nil, err
	}
	return out, nil
}

func labCount(_ any, stream grpc.ServerStream) error {
	in := &structpb.Struct{}
	if err := stream.RecvMsg(in); err != nil {
		return err
	}
	for i := 0; i < number(in, "n"); i++ {
		time.Sleep(time.Duration(number(in, "ms")) * time.Millisecond)
		msg, _ := structpb.NewStruct(map[string]any{"i": float64(i)})
		if err := stream.SendMsg(msg); err != nil {
			return err
		}
	}
	return nil
}

// serveGRPC starts the gRPC server (plaintext HTTP/2) and returns its address.
func serveGRPC(addr string) string {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	srv.RegisterService(&labService, nil)
	go func() { log.Fatal(srv.Serve(ln)) }()
	return ln.Addr().String()
}
