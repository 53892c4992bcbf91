package ptyproto

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// FuzzDirect reads what crosses the web terminal's direct path from less
// trusted ends: a browser's data channel header (the session is the one
// the server bound, whatever the line says), the agent's answer line, and
// signalling lines. Whatever they hold, the bound session wins, an
// accepted answer names an instance within the limits, and a hello
// accepted names STUN servers only.
func FuzzDirect(f *testing.F) {
	f.Add([]byte(`{"id":"","height":24,"width":80,"resume":{"instance":"0123456789abcdef01234567","offset":1234}}` + "\n" + "d\x00\x02ls"))
	f.Add([]byte(`{"id":"someone-else/theirs","command":"rm -rf ~"}` + "\n"))
	f.Add([]byte(`{"instance":"0123456789abcdef01234567","offset":18446744073709551615,"replay":true}` + "\n"))
	f.Add([]byte(`{"session":"u/s","ice_servers":["stun:127.0.0.1:3478","turn:evil.example:3478"]}` + "\n" + `{"type":"offer","sdp":"v=0"}` + "\n"))
	f.Add([]byte(`{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 10.0.0.1 5000 typ host","sdp_mid":"0","sdp_mline_index":0}}` + "\n"))

	f.Fuzz(func(t *testing.T, stream []byte) {
		const bound = "user/bound-session"
		h, err := ReadBoundHeader(bufio.NewReaderSize(bytes.NewReader(stream), MaxHeaderLen), bound)
		if err == nil {
			if h.ID != bound || h.Command != "" {
				t.Fatalf("a bound header came out as session %q, command %q", h.ID, h.Command)
			}
			if h.Resume != nil && len(h.Resume.Instance) > MaxInstanceLen {
				t.Fatalf("accepted a resume instance of %d bytes", len(h.Resume.Instance))
			}
		}

		a, err := ReadAttached(bufio.NewReaderSize(bytes.NewReader(stream), MaxHeaderLen))
		if err == nil {
			if a.Instance == "" || len(a.Instance) > MaxInstanceLen {
				t.Fatalf("accepted an answer with instance %q", a.Instance)
			}
			b, err2 := ReadAttached(bufio.NewReaderSize(bytes.NewReader(AttachedLine(a)), MaxHeaderLen))
			if err2 != nil || b != a {
				t.Fatalf("answer %+v read back as %+v, %v", a, b, err2)
			}
		}

		r := NewSignalReader(bytes.NewReader(stream))
		if hello, err := r.ReadHello(); err == nil {
			for _, u := range hello.ICEServers {
				if !strings.HasPrefix(u, "stun:") {
					t.Fatalf("accepted ICE server %q", u)
				}
			}
			if len(hello.ICEServers) > MaxICEServers {
				t.Fatalf("accepted %d ICE servers", len(hello.ICEServers))
			}
		}
		for range 16 {
			if _, err := r.Read(); err != nil {
				break
			}
		}
	})
}
