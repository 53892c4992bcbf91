package sshd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// OpenSSH's sftp and scp (which speaks SFTP since OpenSSH 9) ask a server
// for its limits (the limits@openssh.com extension, OpenSSH's PROTOCOL
// file) and then read and write in pieces of up to 255 KiB, 64 requests
// at a time. Without the extension they use 32 KiB pieces: each a round
// trip through the tunnel, and each reply two SSH packets (pkg/sftp writes
// a reply's header and its data separately). Downloads through the agent
// moved half of what OpenSSH's own server managed in the same run.
// pkg/sftp's server knows neither the extension nor replies over 32 KiB
// unless told (sftp.WithMaxTxPacket), so sftpLimits stands between it and
// the channel: it announces the extension in the server's VERSION packet,
// answers the limits request itself, and hands the client's other packets
// on unchanged; each reply of the server goes to the channel in one write.
const (
	sftpMaxPacket = 256 << 10 // what pkg/sftp's server reads at most (its maxMsgLength)
	// sftpMaxData is the most one read reply or write request carries:
	// OpenSSH's own server's figure, so that a packet with its header
	// fits in sftpMaxPacket.
	sftpMaxData = sftpMaxPacket - 1024

	sftpVersion       = 2   // SSH_FXP_VERSION
	sftpExtended      = 200 // SSH_FXP_EXTENDED
	sftpExtendedReply = 201 // SSH_FXP_EXTENDED_REPLY
	sftpLimitsExt     = "limits@openssh.com"
)

// errSFTPPacketTooLarge ends a session whose client sent a packet larger
// than the server takes.
var errSFTPPacketTooLarge = errors.New("sftp packet too large")

// sftpLimits wraps a session's channel for pkg/sftp's server; see above.
type sftpLimits struct {
	ch io.ReadWriteCloser

	// Read side: the client's packets, read by one goroutine (the server's).
	hdr     [5]byte // a packet's length and type
	hdrOff  int     // hdr[hdrOff:hdrLen] is still to be handed on
	hdrLen  int
	body    []byte // an extended request read whole, still to be handed on
	bodyOff int
	rest    int // bytes of the current packet still in the channel, handed on as they come

	// Write side: the server's replies, written by its workers.
	mu      sync.Mutex
	out     []byte   // guarded by mu; the reply being assembled
	later   [][]byte // guarded by mu; limits replies, written once out is empty
	version bool     // guarded by mu; the VERSION packet has gone out
}

func newSFTPLimits(ch io.ReadWriteCloser) *sftpLimits { return &sftpLimits{ch: ch} }

func (s *sftpLimits) Close() error { return s.ch.Close() }

// Read hands the client's packets on, but for limits requests, which it
// answers.
func (s *sftpLimits) Read(p []byte) (int, error) {
	for {
		switch {
		case s.hdrOff < s.hdrLen:
			n := copy(p, s.hdr[s.hdrOff:s.hdrLen])
			s.hdrOff += n
			return n, nil
		case s.bodyOff < len(s.body):
			n := copy(p, s.body[s.bodyOff:])
			s.bodyOff += n
			return n, nil
		case s.rest > 0:
			n, err := s.ch.Read(p[:min(len(p), s.rest)])
			s.rest -= n
			if err == io.EOF && s.rest > 0 {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		if err := s.nextPacket(); err != nil {
			return 0, err
		}
	}
}

// nextPacket reads the next packet's length and type, and the whole of an
// extended request, answering it if it asks for the limits.
func (s *sftpLimits) nextPacket() error {
	if _, err := io.ReadFull(s.ch, s.hdr[:]); err != nil {
		return err // io.EOF between packets: the client is done
	}
	length := int(binary.BigEndian.Uint32(s.hdr[:4]))
	if length < 1 || length > sftpMaxPacket {
		return fmt.Errorf("%w: %d bytes", errSFTPPacketTooLarge, length)
	}
	s.hdrOff, s.hdrLen = 0, len(s.hdr)
	s.body, s.bodyOff, s.rest = nil, 0, length-1
	if s.hdr[4] != sftpExtended {
		return nil
	}
	body := make([]byte, length-1)
	if _, err := io.ReadFull(s.ch, body); err != nil {
		return io.ErrUnexpectedEOF
	}
	s.rest = 0
	id, name, ok := parseExtended(body)
	if !ok || name != sftpLimitsExt {
		s.body = body
		return nil
	}
	s.hdrOff = s.hdrLen // answered here: the server never sees it
	return s.reply(limitsReply(id))
}

// parseExtended reads an extended request's id and name.
func parseExtended(body []byte) (id uint32, name string, ok bool) {
	if len(body) < 8 {
		return 0, "", false
	}
	id = binary.BigEndian.Uint32(body)
	n := int(binary.BigEndian.Uint32(body[4:]))
	if n > len(body)-8 {
		return 0, "", false
	}
	return id, string(body[8 : 8+n]), true
}

// limitsReply answers limits request id: the largest packet the server
// reads, the most a read returns and a write may carry, and no stated
// limit on open files (the client then keeps its own).
func limitsReply(id uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, 1+4+4*8)
	b = append(b, sftpExtendedReply)
	b = binary.BigEndian.AppendUint32(b, id)
	for _, v := range []uint64{sftpMaxPacket, sftpMaxData, sftpMaxData, 0} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

// reply writes an answer of our own between the server's replies.
func (s *sftpLimits) reply(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.out) > 0 {
		s.later = append(s.later, b)
		return nil
	}
	_, err := s.ch.Write(b)
	return err
}

// Write gathers the server's replies, written in pieces, and writes each
// whole one to the channel at once: the VERSION packet with the limits
// extension added.
func (s *sftpLimits) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out = append(s.out, p...)
	for len(s.out) >= 4 {
		end := 4 + int(binary.BigEndian.Uint32(s.out))
		if len(s.out) < end {
			break
		}
		pkt := s.out[:end]
		if !s.version && len(pkt) >= 5 && pkt[4] == sftpVersion {
			s.version = true
			pkt = withLimitsExt(pkt)
		}
		if _, err := s.ch.Write(pkt); err != nil {
			return 0, err
		}
		s.out = s.out[:copy(s.out, s.out[end:])]
	}
	if len(s.out) == 0 {
		for _, b := range s.later {
			if _, err := s.ch.Write(b); err != nil {
				return 0, err
			}
		}
		s.later = nil
	}
	return len(p), nil
}

// withLimitsExt adds the limits extension to a VERSION packet.
func withLimitsExt(pkt []byte) []byte {
	b := append([]byte(nil), pkt...)
	for _, s := range []string{sftpLimitsExt, "1"} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}
