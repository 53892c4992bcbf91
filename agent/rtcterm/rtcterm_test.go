package rtcterm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/agent/reconnectingpty"
	"github.com/tetherdev/tether/agent/rtcterm"
	"github.com/tetherdev/tether/ptyproto"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 30 * time.Second

// agentSide serves sessions and signalling as the agent does, on loopback.
type agentSide struct {
	pty  *reconnectingpty.Server
	addr string // signalling
}

func startAgent(t *testing.T) *agentSide {
	t.Helper()
	pty := reconnectingpty.New(reconnectingpty.Options{})
	rtc := rtcterm.New(rtcterm.Options{PTY: pty})
	rtcterm.SetLoopback(rtc)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- rtc.Serve(l) }()
	t.Cleanup(func() {
		rtc.Close()
		pty.Close()
		if err := <-served; !errors.Is(err, rtcterm.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return &agentSide{pty: pty, addr: l.Addr().String()}
}

// browserSide is a peer connection that plays the browser, signalling
// through a connection to the agent as the server would.
type browserSide struct {
	t      *testing.T
	pc     *webrtc.PeerConnection
	sig    net.Conn
	dc     *webrtc.DataChannel
	opened chan struct{}
	closed chan struct{}

	mu  sync.Mutex
	out bytes.Buffer
}

func dialBrowser(t *testing.T, a *agentSide, hello ptyproto.SignalHello, label string) *browserSide {
	t.Helper()
	sig, err := net.DialTimeout("tcp", a.addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sig.Close() })
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	b := &browserSide{t: t, pc: pc, sig: sig, opened: make(chan struct{}), closed: make(chan struct{})}
	var wmu sync.Mutex
	send := func(v any) {
		wmu.Lock()
		defer wmu.Unlock()
		ptyproto.WriteSignal(sig, v)
	}
	send(hello)
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		init := c.ToJSON()
		send(tether.TerminalSignal{Type: tether.SignalCandidate, Candidate: &tether.ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex}})
	})
	dc, err := pc.CreateDataChannel(label, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.dc = dc
	dc.OnOpen(func() { close(b.opened) })
	dc.OnClose(func() { close(b.closed) })
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		b.mu.Lock()
		b.out.Write(m.Data)
		b.mu.Unlock()
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	send(tether.TerminalSignal{Type: tether.SignalOffer, SDP: offer.SDP})
	go func() {
		r := ptyproto.NewSignalReader(sig)
		for {
			m, err := r.Read()
			if err != nil {
				return
			}
			switch m.Type {
			case tether.SignalAnswer:
				pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP})
			case tether.SignalCandidate:
				pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: m.Candidate.Candidate, SDPMid: m.Candidate.SDPMid, SDPMLineIndex: m.Candidate.SDPMLineIndex})
			}
		}
	}()
	return b
}

func (b *browserSide) waitOpen() {
	b.t.Helper()
	select {
	case <-b.opened:
	case <-time.After(testTimeout):
		b.t.Fatalf("the data channel did not open; peer connection %s", b.pc.ConnectionState())
	}
}

func (b *browserSide) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.String()
}

func (b *browserSide) waitFor(re string) string {
	b.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(testTimeout)
	for {
		if m := rx.FindStringSubmatch(b.output()); m != nil {
			return m[len(m)-1]
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("the channel's output never matched %q: %q", re, b.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *browserSide) waitClosed(what string) {
	b.t.Helper()
	select {
	case <-b.closed:
	case <-time.After(testTimeout):
		b.t.Fatalf("the data channel stayed open after %s", what)
	}
}

// typeFrame sends input as the browser does: a ptyproto frame per message.
func (b *browserSide) typeFrame(s string) {
	b.t.Helper()
	var buf bytes.Buffer
	ptyproto.WriteFrame(&buf, ptyproto.FrameData, []byte(s))
	if err := b.dc.Send(buf.Bytes()); err != nil {
		b.t.Fatal(err)
	}
}

// TestDirectTerminal: a data channel attaches to the session the server
// bound, whatever the browser's header names, and carries the terminal
// both ways with positions.
func TestDirectTerminal(t *testing.T) {
	a := startAgent(t)
	b := dialBrowser(t, a, ptyproto.SignalHello{Session: "user-1/tab"}, rtcterm.ChannelLabel)
	b.waitOpen()
	// The header names another session and a command: both are ignored.
	hdr, _ := json.Marshal(ptyproto.Header{ID: "user-2/theirs", Command: "echo \"hij\"\"acked\"", Height: 30, Width: 90})
	b.dc.Send(append(hdr, '\n'))
	b.waitFor(`"replay":true`)
	b.typeFrame("echo \"dir\"\"ect-$(stty size)\"\n")
	if got := b.waitFor(`direct-(\d+ \d+)`); got != "30 90" {
		t.Errorf("the terminal's size is %q, want the header's 30 90", got)
	}
	if regexp.MustCompile(`hijacked`).MatchString(b.output()) {
		t.Errorf("the browser's header ran its command")
	}

	// The relay's protocol, on the session the server bound, sees what the
	// channel did: one session, whichever path.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go a.pty.ServePositions(l)
	nc, err := net.DialTimeout("tcp", l.Addr().String(), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	relay, att, err := ptyproto.AttachAt(ctx, nc, ptyproto.Header{ID: "user-1/tab"})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	var seen []byte
	relay.SetDeadline(time.Now().Add(testTimeout))
	for !bytes.Contains(seen, []byte("direct-30 90")) {
		buf := make([]byte, 4096)
		n, err := relay.Read(buf)
		seen = append(seen, buf[:n]...)
		if err != nil {
			t.Fatalf("the relay's view of the session ended (%v) without the channel's output: %q", err, seen)
		}
	}
	if !att.Replay || att.Offset != 0 {
		t.Errorf("the relay attached at %+v, want a replay from 0", att)
	}

	// The server ending the signalling connection (the WebSocket ended, or
	// access was revoked) closes the channel.
	b.sig.Close()
	b.waitClosed("the signalling connection ended")
}

// TestRefused: a channel of another label, or a hello naming anything but
// STUN servers, gets no terminal.
func TestRefused(t *testing.T) {
	a := startAgent(t)
	t.Run("label", func(t *testing.T) {
		b := dialBrowser(t, a, ptyproto.SignalHello{Session: "s"}, "not-pty")
		select {
		case <-b.closed:
		case <-b.opened:
			b.waitClosed("a channel of another label opened")
		case <-time.After(testTimeout):
			t.Fatal("a channel of another label neither opened nor closed")
		}
	})
	t.Run("turn server", func(t *testing.T) {
		sig, err := net.DialTimeout("tcp", a.addr, testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer sig.Close()
		ptyproto.WriteSignal(sig, ptyproto.SignalHello{Session: "s", ICEServers: []string{"turn:203.0.113.1:3478"}})
		sig.SetReadDeadline(time.Now().Add(testTimeout))
		var one [1]byte
		if _, err := sig.Read(one[:]); err == nil {
			t.Errorf("the agent went on after a hello naming a TURN server")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("the agent kept the connection of a hello naming a TURN server open")
		}
	})
}
