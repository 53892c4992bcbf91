// Package rtcterm is the agent's side of the web terminal's direct path:
// it answers the browser's WebRTC offers, which the server forwards over
// the tunnel (ptyproto's signalling, at tether.AgentRTCPort), and attaches
// the data channel that comes up to the reconnecting PTY session the
// server bound to the offer (reconnectingpty.Server.ServeBound), speaking
// the same protocol as the relay, with positions.
//
// The peer connection contacts nothing the deployment did not name: its
// ICE servers are the STUN servers the server sends (never a default),
// multicast DNS is off (no .local candidates, no queries), and only UDP is
// used. Host candidates come first, as ICE orders them, so that a browser
// on the workspace's network connects locally.
//
// A peer connection lives no longer than its signalling connection: the
// server closes that when the browser's WebSocket ends or its user loses
// access, and the data channel closes with it.
package rtcterm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/servegroup"
	"github.com/tetherdev/tether/ptyproto"
)

// ChannelLabel is the label of the browser's data channel; channels with
// other labels are refused.
const ChannelLabel = "pty"

const (
	// helloTimeout bounds the server's first line.
	helloTimeout = 30 * time.Second
	// connectTimeout bounds how long an offer may take to become an open
	// data channel before the agent gives it up.
	connectTimeout = 30 * time.Second
	// ICE's consent checks: a path that answers none for
	// iceDisconnected is disconnected, for iceFailed failed. The agent
	// gives a path up once it is disconnected: the relay takes over from
	// the browser's last byte at once, so waiting for a path that may come
	// back only keeps the terminal frozen (with 4 s and 10 s, a path cut
	// in TestBrowserTerminalDirect took 14 s to fall back).
	iceDisconnected = 3 * time.Second
	iceFailed       = 6 * time.Second
	iceKeepalive    = time.Second
)

// Attacher attaches a connection to a terminal session: the agent's
// reconnectingpty.Server.
type Attacher interface {
	ServeBound(c net.Conn, id string)
}

// Options configure a Server.
type Options struct {
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// PTY serves the sessions the data channels attach to. Required.
	PTY Attacher
}

// Server answers WebRTC offers. Its methods are safe for concurrent use.
type Server struct {
	logger *slog.Logger
	// loopback gathers loopback candidates too: tests set it
	// (export_test.go) for machines whose only interface is loopback.
	loopback bool
	pty      Attacher
	// ctx is canceled by Close; every peer connection watches it.
	ctx    context.Context
	cancel context.CancelFunc
	// group holds the listeners and the signalling connections.
	group servegroup.Group
}

// New returns a server that is not yet serving; call Serve.
func New(opts Options) *Server {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{logger: logger, pty: opts.PTY, ctx: ctx, cancel: cancel, group: servegroup.Group{ClosedErr: ErrServerClosed}}
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("rtcterm: server closed")

// Serve takes signalling connections on l until Close or until l fails.
func (s *Server) Serve(l net.Listener) error {
	return s.group.Serve(l, func(c net.Conn) {
		if err := s.signal(c); err != nil {
			s.logger.Debug("direct terminal ended", slog.Any("err", err))
		}
	})
}

// Close stops serving, ends every peer connection, and waits for them.
func (s *Server) Close() error {
	s.group.Close()
	s.cancel()
	s.group.Wait()
	return nil
}

// newAPI is a WebRTC API configured as the package comment says.
func newAPI(logger *slog.Logger, loopback bool) *webrtc.API {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(loopback)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	se.SetICETimeouts(iceDisconnected, iceFailed, iceKeepalive)
	se.DetachDataChannels()
	// A browser that cannot keep up blocks the writer, whose queue then
	// fills, and the session lets that client go, as it does a slow relay.
	se.EnableDataChannelBlockWrite(true)
	se.LoggerFactory = slogFactory{logger}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

// signal runs one signalling connection: one peer connection, one data
// channel.
func (s *Server) signal(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(helloTimeout))
	r := ptyproto.NewSignalReader(c)
	hello, err := r.ReadHello()
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	c.SetReadDeadline(time.Time{})
	logger := s.logger.With(slog.String("session", hello.Session))

	var wmu sync.Mutex
	send := func(m tether.TerminalSignal) {
		wmu.Lock()
		defer wmu.Unlock()
		c.SetWriteDeadline(time.Now().Add(helloTimeout))
		if err := ptyproto.WriteSignal(c, m); err != nil {
			c.Close()
		}
	}
	cfg := webrtc.Configuration{}
	if len(hello.ICEServers) > 0 {
		cfg.ICEServers = []webrtc.ICEServer{{URLs: hello.ICEServers}}
	}
	pc, err := newAPI(logger, s.loopback).NewPeerConnection(cfg)
	if err != nil {
		send(tether.TerminalSignal{Type: tether.SignalError, Message: "the agent cannot start WebRTC: " + err.Error()})
		return fmt.Errorf("new peer connection: %w", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer pc.Close()

	opened := make(chan struct{})
	var once sync.Once
	sig := &signaller{send: send}
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil {
			return
		}
		init := cand.ToJSON()
		sig.candidate(tether.TerminalSignal{Type: tether.SignalCandidate, Candidate: &tether.ICECandidate{
			Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex, UsernameFragment: init.UsernameFragment,
		}})
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		logger.Debug("peer connection", slog.String("state", st.String()))
		switch st {
		case webrtc.PeerConnectionStateDisconnected, webrtc.PeerConnectionStateFailed:
			// The signalling connection ends with this: the server tells
			// the browser, which goes back to the relay.
			c.Close()
		}
	})
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		if dc.Label() != ChannelLabel {
			dc.Close()
			return
		}
		dc.OnOpen(func() {
			first := false
			once.Do(func() { first = true; close(opened) })
			if !first {
				dc.Close() // one channel per offer
				return
			}
			raw, err := dc.DetachWithDeadline()
			if err != nil {
				logger.Warn("detach data channel", slog.Any("err", err))
				dc.Close()
				return
			}
			logger.Debug("direct terminal open")
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.pty.ServeBound(newChannelConn(raw), hello.Session)
				// The session let the channel go (its process ended, or
				// the browser was too slow): so does the peer connection.
				c.Close()
			}()
		})
	})

	timer := time.AfterFunc(connectTimeout, func() {
		select {
		case <-opened:
		default:
			logger.Debug("no data channel in time; giving the offer up")
			c.Close()
		}
	})
	defer timer.Stop()
	stop := context.AfterFunc(s.ctx, func() { c.Close() })
	defer stop()

	for {
		m, err := r.Read()
		if err != nil {
			return err
		}
		switch m.Type {
		case tether.SignalOffer:
			if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
				send(tether.TerminalSignal{Type: tether.SignalError, Message: "the agent refused the offer: " + err.Error()})
				return fmt.Errorf("offer: %w", err)
			}
			answer, err := pc.CreateAnswer(nil)
			if err == nil {
				err = pc.SetLocalDescription(answer)
			}
			if err != nil {
				send(tether.TerminalSignal{Type: tether.SignalError, Message: "the agent cannot answer: " + err.Error()})
				return fmt.Errorf("answer: %w", err)
			}
			sig.answer(tether.TerminalSignal{Type: tether.SignalAnswer, SDP: answer.SDP})
		case tether.SignalCandidate:
			if m.Candidate == nil || m.Candidate.Candidate == "" {
				continue // the end of the browser's candidates
			}
			err := pc.AddICECandidate(webrtc.ICECandidateInit{
				Candidate: m.Candidate.Candidate, SDPMid: m.Candidate.SDPMid,
				SDPMLineIndex: m.Candidate.SDPMLineIndex, UsernameFragment: m.Candidate.UsernameFragment,
			})
			if err != nil {
				// A candidate the agent cannot use (an mDNS name, say) is
				// no reason to give the others up.
				logger.Debug("browser candidate", slog.String("candidate", m.Candidate.Candidate), slog.Any("err", err))
			}
		case tether.SignalClose:
			return nil
		}
	}
}

// slogFactory sends pion's logs to the agent's logger, at debug: they are
// for diagnosing a path that does not come up.
type slogFactory struct{ logger *slog.Logger }

func (f slogFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.logger.With(slog.String("component", "webrtc."+scope))}
}

type pionLogger struct{ l *slog.Logger }

func (p pionLogger) Trace(string)                 {}
func (p pionLogger) Tracef(string, ...any)        {}
func (p pionLogger) Debug(msg string)             { p.l.Debug(msg) }
func (p pionLogger) Debugf(f string, args ...any) { p.l.Debug(fmt.Sprintf(f, args...)) }
func (p pionLogger) Info(msg string)              { p.l.Debug(msg) }
func (p pionLogger) Infof(f string, args ...any)  { p.l.Debug(fmt.Sprintf(f, args...)) }
func (p pionLogger) Warn(msg string)              { p.l.Debug(msg) }
func (p pionLogger) Warnf(f string, args ...any)  { p.l.Debug(fmt.Sprintf(f, args...)) }
func (p pionLogger) Error(msg string)             { p.l.Debug(msg) }
func (p pionLogger) Errorf(f string, args ...any) { p.l.Debug(fmt.Sprintf(f, args...)) }

// signaller sends the agent's answer before any of its candidates. pion
// starts gathering inside SetLocalDescription and reports candidates from
// its own goroutine, often before the answer is sent; a browser refuses a
// candidate that comes before the answer ("the remote description was
// null"), which ended the attempt and left the terminal relayed until the
// page's next one.
type signaller struct {
	send func(tether.TerminalSignal)

	mu       sync.Mutex
	answered bool                    // guarded by mu
	held     []tether.TerminalSignal // guarded by mu: candidates before the answer
}

// candidate sends a candidate, or holds it until the answer is sent.
func (s *signaller) candidate(m tether.TerminalSignal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.answered {
		s.held = append(s.held, m)
		return
	}
	s.send(m)
}

// answer sends the answer, then the candidates held for it.
func (s *signaller) answer(m tether.TerminalSignal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.send(m)
	s.answered = true
	for _, c := range s.held {
		s.send(c)
	}
	s.held = nil
}
