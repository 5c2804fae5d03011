// webfan: N gRPC-Web SubscribeMessages readers over HTTP/1.1, counting the
// data frames they receive in a measured window. Used by bench/edge_procs.ts
// to load the edge with readers cheaper than the edge itself (a Deno fetch
// reader costs about what the edge does per message). Go standard library
// only, so Debian's Go builds it offline:
//
//	GO111MODULE=off go build -o /tmp/webfan ./bench/webfan
//
// It prints "ready" on stderr once every reader has its first message (the
// welcome), then one JSON line on stdout after the measured seconds.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func varint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func str(b []byte, field int, s string) []byte {
	b = append(b, byte(field<<3|2))
	b = varint(b, uint64(len(s)))
	return append(b, s...)
}

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "edge base URL")
	subs := flag.Int("subs", 100, "subscribers")
	room := flag.String("room", "webfan", "room")
	warm := flag.Float64("warmup", 1, "seconds before measuring")
	dur := flag.Float64("d", 5, "measured seconds")
	flag.Parse()
	msg := str(str(nil, 1, *room), 2, "reader")
	body := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:5], uint32(len(msg)))
	copy(body[5:], msg)
	tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: *subs, DisableCompression: true}
	client := &http.Client{Transport: tr}
	var measuring int32
	var counted, all, failed int64
	var ready sync.WaitGroup
	ready.Add(*subs)
	for i := 0; i < *subs; i++ {
		go func() {
			req, _ := http.NewRequest("POST", *url+"/chat.ChatService/SubscribeMessages", bytes.NewReader(body))
			req.Header.Set("content-type", "application/grpc-web+proto")
			req.Header.Set("x-grpc-web", "1")
			resp, err := client.Do(req)
			if err != nil || resp.StatusCode != 200 {
				atomic.AddInt64(&failed, 1)
				ready.Done()
				return
			}
			r := bufio.NewReaderSize(resp.Body, 64<<10)
			head := make([]byte, 5)
			first := true
			for {
				if _, err := io.ReadFull(r, head); err != nil {
					return
				}
				n := binary.BigEndian.Uint32(head[1:])
				if _, err := r.Discard(int(n)); err != nil {
					return
				}
				if head[0]&0x80 != 0 {
					return
				}
				if first {
					first = false
					ready.Done()
					continue
				}
				atomic.AddInt64(&all, 1)
				if atomic.LoadInt32(&measuring) == 1 {
					atomic.AddInt64(&counted, 1)
				}
			}
		}()
	}
	ready.Wait()
	fmt.Fprintln(os.Stderr, "ready")
	time.Sleep(time.Duration(*warm * float64(time.Second)))
	atomic.StoreInt32(&measuring, 1)
	t0 := time.Now()
	time.Sleep(time.Duration(*dur * float64(time.Second)))
	atomic.StoreInt32(&measuring, 0)
	el := time.Since(t0).Seconds()
	out, _ := json.Marshal(map[string]any{"subs": *subs, "failed": failed, "delivered": counted, "delivered_per_s": float64(counted) / el, "all": all})
	fmt.Println(string(out))
	os.Exit(0)
}
