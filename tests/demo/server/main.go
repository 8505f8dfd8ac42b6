// Command server is tracerd's demo workload: an HTTP service whose
// routes spend their time in different places (the app sleeping, the
// CPU, JSON encoding, a slow client), and a load generator for it.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "listen address")
	load := flag.String("load", "", "instead of serving, send load to this base URL")
	duration := flag.Duration("duration", 8*time.Second, "load duration")
	flag.Parse()
	if *load != "" {
		runLoad(*load, *duration)
		return
	}
	http.HandleFunc("/fast", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	http.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // a downstream call
		io.WriteString(w, "slow\n")
	})
	http.HandleFunc("/cpu", func(w http.ResponseWriter, r *http.Request) {
		end := time.Now().Add(3 * time.Millisecond)
		n := 0
		for time.Now().Before(end) {
			n++
		}
		fmt.Fprintf(w, "%d\n", n)
	})
	http.HandleFunc("/json", func(w http.ResponseWriter, r *http.Request) {
		items := make([]map[string]any, 2000)
		for i := range items {
			items[i] = map[string]any{"id": i, "name": strings.Repeat("x", 32), "tags": []string{"a", "b"}}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(items)
	})
	http.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 4<<20))
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "demo server on http://%s (routes /fast /slow /cpu /json /big)\n", ln.Addr())
	log.Fatal(http.Serve(ln, nil))
}

// runLoad sends a mix of requests from a few keep-alive clients, and one
// client that reads a big answer slowly (send queue, zero window).
func runLoad(base string, d time.Duration) {
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			routes := []string{"/fast", "/fast", "/slow", "/cpu", "/json"}
			for i := c; time.Now().Before(deadline); i++ {
				resp, err := client.Get(base + routes[i%len(routes)])
				if err != nil {
					log.Printf("load: %v", err)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				total++
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}(c)
	}
	wg.Add(1)
	go func() { // a slow reader
		defer wg.Done()
		for time.Now().Before(deadline) {
			resp, err := http.Get(base + "/big")
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			buf := make([]byte, 64<<10)
			for {
				if _, err := resp.Body.Read(buf); err != nil {
					break
				}
				time.Sleep(2 * time.Millisecond)
			}
			resp.Body.Close()
		}
	}()
	wg.Wait()
	fmt.Fprintf(os.Stderr, "load: %d requests sent\n", total)
}
