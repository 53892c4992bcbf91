package tunnel

import (
	"io"
	"net/netip"
	"os"
	"testing"
)

// BenchmarkThroughput moves bulk TCP data between two Conns in one
// process, over a direct path and through the relay. Both peers (and the
// relay) share the machine's cores, so the figures are a floor for two
// machines. With TS_DEBUG_USE_DERP_HTTP=1 in the environment the relay
// speaks plain HTTP instead of TLS.
func BenchmarkThroughput(b *testing.B) {
	for _, bc := range []struct {
		name  string
		block bool
	}{
		{"direct", false},
		{"derp", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			plain := os.Getenv(derpHTTPKnob) != ""
			opts := Options{BlockEndpoints: bc.block, DERPPlainHTTP: plain}
			client, server := pair(b, newDERP(b, derpOptions{plainHTTP: plain}), opts, opts)
			ctx := testContext(b)

			ln, err := server.Listen("tcp", 5201)
			if err != nil {
				b.Fatal(err)
			}
			received := make(chan int64, 1)
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					received <- -1
					return
				}
				defer conn.Close()
				// Large reads: io.Discard would read 8 KiB at a time.
				var n int64
				buf := make([]byte, 1<<20)
				for {
					m, err := conn.Read(buf)
					n += int64(m)
					if err != nil {
						break
					}
				}
				conn.Write([]byte{1}) // done
				received <- n
			}()
			defer ln.Close()

			conn, err := client.DialContext(ctx, "tcp", netip.AddrPortFrom(server.Addr(), 5201))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			chunk := make([]byte, 128<<10)
			// Warm up: let the path settle (direct comes up with traffic)
			// and TCP open its window.
			for range 64 {
				if _, err := conn.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			res := pingUntil(b, ctx, client, server.Addr(), func(PingResult) bool { return true })
			if res.Direct == bc.block {
				b.Fatalf("path = %+v, want direct=%v", res, !bc.block)
			}

			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for range b.N {
				if _, err := conn.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			conn.(interface{ CloseWrite() error }).CloseWrite()
			if _, err := io.ReadFull(conn, make([]byte, 1)); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if n := <-received; n != int64(64+b.N)*int64(len(chunk)) {
				b.Fatalf("server received %d bytes, want %d", n, int64(64+b.N)*int64(len(chunk)))
			}
		})
	}
}
