// Package execproto is the wire protocol with which `tether ssh` runs a
// command or a shell in a workspace without SSH: what the CLI (the client)
// and the agent's exec server (agent/execd) must agree on. It is kept apart
// from both so that the CLI links no agent code.
//
// # Why not SSH
//
// The tunnel has already done what SSH's handshake is for: the agent is the
// peer whose WireGuard key the coordinator introduced, only after it
// authorized this user for this workspace, and every byte is encrypted end
// to end. SSH's own key exchange, authentication, channel open and exec
// request cost four to five round trips more on top, which far from the
// server (400 ms) is two seconds. This protocol costs one: the client sends
// its request and its first input at once, and the answer comes with the
// first output. SSH stays for OpenSSH (`tether ssh --stdio`), agent
// forwarding, and agents that do not serve this port.
//
// # Protocol
//
// One TCP connection over the tunnel to tether.AgentExecPort carries one
// session. Both directions are a sequence of frames: a type byte, a
// big-endian uint32 payload length, and the payload, at most MaxPayload
// bytes. A reader skips frames of types it does not know, so that new
// ones can be added without breaking the other side; a frame longer than
// MaxPayload ends the connection.
//
// The client's first frame is FrameRequest (a Request as JSON). It may send
// its input (FrameStdin) and the rest right after, without waiting:
//
//	'R' Request         what to run (first frame, exactly once)
//	'i' data            input for the program
//	'c' (empty)         end of input: the program reads EOF (without a PTY)
//	'w' rows cols       the terminal's new size, each a big-endian uint16
//	's' name            a signal for the program's process group ("INT")
//	'p' any             a keepalive; answered with FramePong
//
// The agent answers FrameAccepted as soon as it has a well-formed request,
// before it starts anything; then FrameStarted once the program runs, or
// FrameError with a message (the request was malformed, with no
// FrameAccepted before it, or the program could not start) and closes.
// Then the output, and at the end, once all of it is sent, FrameExit,
// after which it closes its side:
//
//	'A' (empty)         the request is taken: nothing may run it elsewhere
//	'S' Started         the program runs (JSON)
//	'E' message         the request failed; nothing ran
//	'o' data            the program's stdout (all of its output with a PTY)
//	'e' data            the program's stderr
//	'a' n               n more bytes of input were taken by the program (uint32)
//	'x' Exit            how the program ended (JSON)
//	'P' payload         the answer to FrameKeepalive, with its payload
//
// FrameAccepted is what lets a client fall back to SSH safely: a
// connection that closes before it says nothing ran (an agent without this
// server), one that closes after it may have run the program, which the
// client must then not run again. FrameStarted alone comes too late for
// that, after the program started.
//
// Input is flow controlled, so that a program that does not read its input
// cannot stop the agent from reading the frames behind it (a signal, a
// resize, a keepalive): the client sends at most InputWindow bytes of
// input that the agent has not acknowledged with FrameAck, and the agent
// holds at most that much for the program.
//
// Signals travel by name, as in SSH (RFC 4254 section 6.10: "INT", "TERM",
// …), since a signal's number differs between systems; Exit also carries
// the number on the agent's system, for the shell's 128+N convention.
package execproto

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Version is the protocol's version, sent in every Request. History:
//
//	1 (2026-12-04): the first.
const Version = 1

// Limits of the protocol.
const (
	// MaxPayload bounds every frame's payload.
	MaxPayload = 256 << 10
	// InputWindow is how many bytes of input may be on their way to the
	// program, sent but not acknowledged.
	InputWindow = 1 << 20
	// MaxEnv bounds the variables a Request sets.
	MaxEnv = 256
	// MaxMessage bounds a FrameError's message and a signal's name.
	MaxMessage = 1 << 10
	// MaxKeepalive bounds a keepalive's payload.
	MaxKeepalive = 64
)

// Frame types from the client.
const (
	FrameRequest   byte = 'R'
	FrameStdin     byte = 'i'
	FrameCloseIn   byte = 'c'
	FrameResize    byte = 'w'
	FrameSignal    byte = 's'
	FrameKeepalive byte = 'p'
)

// Frame types from the agent.
const (
	FrameAccepted byte = 'A'
	FrameStarted  byte = 'S'
	FrameError    byte = 'E'
	FrameStdout   byte = 'o'
	FrameStderr   byte = 'e'
	FrameAck      byte = 'a'
	FrameExit     byte = 'x'
	FramePong     byte = 'P'
)

// headerLen is a frame's type and length.
const headerLen = 5

// Request is what a client asks to run.
type Request struct {
	// Version is the client's protocol version (Version).
	Version int `json:"version"`
	// Command is run by the user's shell ("SHELL -c COMMAND"); empty
	// starts a login shell.
	Command string `json:"command,omitempty"`
	// Env are variables to set ("KEY=value"), such as LANG; the agent
	// sets its own over them (see usershell.SessionEnviron).
	Env []string `json:"env,omitempty"`
	// TTY, when set, runs the program on a pseudo-terminal.
	TTY *TTY `json:"tty,omitempty"`
}

// TTY describes the client's terminal.
type TTY struct {
	// Term is the terminal type (TERM); empty means xterm-256color.
	Term string `json:"term,omitempty"`
	// Rows and Cols are its size; 0 means unknown.
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// Started is the agent's answer when the program runs.
type Started struct {
	Version int `json:"version"`
}

// Exit is how the program ended: Status, or killed by Signal (its name,
// as in SSH's exit-signal, and its number on the agent's system).
type Exit struct {
	Status       int    `json:"status"`
	Signal       string `json:"signal,omitempty"`
	SignalNumber int    `json:"signal_number,omitempty"`
	CoreDumped   bool   `json:"core_dumped,omitempty"`
}

// Validate reports whether r can be run, and says what is wrong if not.
func (r *Request) Validate() error {
	if r.Version != Version {
		return fmt.Errorf("protocol version %d is not supported (this agent speaks %d)", r.Version, Version)
	}
	if strings.IndexByte(r.Command, 0) >= 0 {
		return errors.New("the command contains a NUL byte")
	}
	if len(r.Env) > MaxEnv {
		return fmt.Errorf("%d environment variables, more than %d", len(r.Env), MaxEnv)
	}
	for _, kv := range r.Env {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || name == "" || strings.IndexByte(kv, 0) >= 0 {
			return fmt.Errorf("environment variable %.40q is not NAME=value", kv)
		}
	}
	if r.TTY != nil && (strings.IndexByte(r.TTY.Term, 0) >= 0 || strings.Contains(r.TTY.Term, "=")) {
		return fmt.Errorf("terminal type %.40q is not valid", r.TTY.Term)
	}
	return nil
}

// ParseRequest reads a FrameRequest's payload.
func ParseRequest(p []byte) (Request, error) {
	var r Request
	if err := json.Unmarshal(p, &r); err != nil {
		return Request{}, fmt.Errorf("parse request: %w", err)
	}
	if err := r.Validate(); err != nil {
		return Request{}, err
	}
	return r, nil
}

// ParseExit reads a FrameExit's payload.
func ParseExit(p []byte) (Exit, error) {
	var e Exit
	if err := json.Unmarshal(p, &e); err != nil {
		return Exit{}, fmt.Errorf("parse exit: %w", err)
	}
	if e.Status < 0 || e.Status > 255 || e.SignalNumber < 0 || e.SignalNumber > 127 || len(e.Signal) > MaxMessage {
		return Exit{}, fmt.Errorf("exit status %d, signal %d out of range", e.Status, e.SignalNumber)
	}
	return e, nil
}

// ParseStarted reads a FrameStarted's payload.
func ParseStarted(p []byte) (Started, error) {
	var s Started
	if err := json.Unmarshal(p, &s); err != nil {
		return Started{}, fmt.Errorf("parse answer: %w", err)
	}
	if s.Version < 1 {
		return Started{}, fmt.Errorf("answer names protocol version %d", s.Version)
	}
	return s, nil
}

// JSON encodes v, a Request, Started or Exit, as a frame's payload.
func JSON(v any) []byte {
	b, _ := json.Marshal(v) // cannot fail: strings, numbers and booleans
	return b
}

// ResizePayload is the payload of a FrameResize.
func ResizePayload(rows, cols uint16) []byte {
	var p [4]byte
	binary.BigEndian.PutUint16(p[0:2], rows)
	binary.BigEndian.PutUint16(p[2:4], cols)
	return p[:]
}

// ParseResize reads a FrameResize's payload; ok is false if it is
// malformed.
func ParseResize(p []byte) (rows, cols uint16, ok bool) {
	if len(p) != 4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(p[0:2]), binary.BigEndian.Uint16(p[2:4]), true
}

// AckPayload is the payload of a FrameAck.
func AckPayload(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

// ParseAck reads a FrameAck's payload; ok is false if it is malformed.
func ParseAck(p []byte) (n uint32, ok bool) {
	if len(p) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(p), true
}

// AppendFrame appends one frame to b. The payload must be at most
// MaxPayload bytes.
func AppendFrame(b []byte, typ byte, payload []byte) []byte {
	b = append(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// WriteFrame writes one frame in one write.
func WriteFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("frame payload of %d bytes is longer than %d", len(payload), MaxPayload)
	}
	_, err := w.Write(AppendFrame(make([]byte, 0, headerLen+len(payload)), typ, payload))
	return err
}

// ErrFrameTooLong is returned by Reader.Next for a frame longer than
// MaxPayload.
var ErrFrameTooLong = fmt.Errorf("frame is longer than %d bytes", MaxPayload)

// Reader reads frames, reusing one buffer that grows to the largest
// payload read.
type Reader struct {
	r   io.Reader
	hdr [headerLen]byte
	buf []byte
}

// NewReader returns a Reader of r; give it a buffered r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Next reads one frame. Its payload is valid until the next call. It
// returns io.EOF at a clean end between frames, io.ErrUnexpectedEOF inside
// one, and ErrFrameTooLong for a length over MaxPayload.
func (r *Reader) Next() (typ byte, payload []byte, err error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(r.hdr[1:])
	if n > MaxPayload {
		return 0, nil, ErrFrameTooLong
	}
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n)
	}
	p := r.buf[:n]
	if _, err := io.ReadFull(r.r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return r.hdr[0], p, nil
}
