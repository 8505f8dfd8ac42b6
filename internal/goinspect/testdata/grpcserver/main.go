// Command grpcserver is the test program for the grpc-go layout table: a
// grpc-go server with the health service. It must compile with every
// grpc-go version the table covers, so it uses only long-stable API.
package main

import (
	"flag"
	"log"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	log.Println("listening on", ln.Addr())
	log.Fatal(srv.Serve(ln))
}
