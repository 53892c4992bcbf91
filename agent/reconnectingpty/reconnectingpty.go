// Package reconnectingpty is the backend of the web terminal: terminal
// sessions that outlive their connections, so that a browser that reloads
// or loses its network gets its shell and its recent output back.
//
// Clients speak the protocol of package ptyproto: a header line names the
// session (and the command of a new one), then the client sends frames of
// input and resizes while the server streams the terminal's output: first
// the session's scrollback (its last 64 KiB of output by default), then
// live output.
//
// # Sessions
//
// Any number of clients may attach to a session at once; all see its
// output and any may type. A client that cannot keep up with the output is
// disconnected rather than allowed to stall the others; it can reconnect
// and gets the scrollback. A session with no client attached for
// Options.IdleTimeout (an hour by default) is hung up. A session whose
// process exits is removed, and its id may be used again for a new one.
//
// Sessions run as the agent's user, in the home directory, with TERM set
// to xterm-256color and TETHER=true in their environment, as in agent/sshd.
package reconnectingpty
