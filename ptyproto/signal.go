package ptyproto

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tetherdev/tether"
)

// Signalling for the web terminal's direct path (tether.AgentRTCPort).
//
// The server forwards a browser's WebRTC signalling to the agent over one
// tunnel connection per offer. It sends a SignalHello line first, which
// binds the connection to the session the server authorized (the browser
// never names one), then both sides send tether.TerminalSignal lines: the
// browser's offer and candidates one way, the agent's answer and
// candidates the other. Each line is JSON and '\n', at most MaxSignalLine
// bytes. When the server closes the connection (the browser's WebSocket
// ended, or its user lost access) the agent closes the peer connection,
// and with it the data channel: a direct terminal lives no longer than the
// WebSocket that authorized it.

// MaxSignalLine bounds one signalling line.
const MaxSignalLine = 64 << 10

// MaxICEServers bounds SignalHello.ICEServers.
const MaxICEServers = 16

// SignalHello is the server's first line on an AgentRTCPort connection.
type SignalHello struct {
	// Session is the reconnecting PTY session id the data channel attaches
	// to.
	Session string `json:"session"`
	// ICEServers are the deployment's STUN servers ("stun:HOST:PORT"):
	// the agent uses these and no others.
	ICEServers []string `json:"ice_servers"`
}

// Validate reports whether h is well-formed: a session id, and STUN
// servers only.
func (h SignalHello) Validate() error {
	if err := (Header{ID: h.Session}).Validate(); err != nil {
		return err
	}
	if len(h.ICEServers) > MaxICEServers {
		return fmt.Errorf("%d ICE servers, more than %d", len(h.ICEServers), MaxICEServers)
	}
	for _, u := range h.ICEServers {
		if !strings.HasPrefix(u, "stun:") || len(u) > 300 {
			return fmt.Errorf("ICE server %.40q is not a STUN URL", u)
		}
	}
	return nil
}

// SignalReader reads signalling lines.
type SignalReader struct{ br *bufio.Reader }

// NewSignalReader reads lines from r.
func NewSignalReader(r io.Reader) *SignalReader {
	return &SignalReader{br: bufio.NewReaderSize(r, MaxSignalLine)}
}

// ReadHello reads and validates the first line.
func (r *SignalReader) ReadHello() (SignalHello, error) {
	var h SignalHello
	if err := r.read(&h); err != nil {
		return h, err
	}
	return h, h.Validate()
}

// Read reads one signalling message.
func (r *SignalReader) Read() (tether.TerminalSignal, error) {
	var m tether.TerminalSignal
	err := r.read(&m)
	return m, err
}

func (r *SignalReader) read(v any) error {
	line, err := r.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return fmt.Errorf("signalling line is longer than %d bytes", MaxSignalLine)
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(line, v); err != nil {
		return fmt.Errorf("parse signalling line: %w", err)
	}
	return nil
}

// WriteSignal writes v (a SignalHello or a tether.TerminalSignal) as one
// line. Callers serialize writes.
func WriteSignal(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b)+1 > MaxSignalLine {
		return fmt.Errorf("signalling line of %d bytes is too long", len(b)+1)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
