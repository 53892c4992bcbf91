package usershell

import (
	"fmt"
	"syscall"
)

// rfcSignals are the signal names of RFC 4254 section 6.10, the only ones
// that travel in SSH's "signal" and "exit-signal" messages without a
// domain. The exec protocol (package execproto) names signals the same way,
// since a signal's number differs between systems.
// A function rather than a map so that no package state is mutable.
func rfcSignals() []struct {
	name string
	sig  syscall.Signal
} {
	return []struct {
		name string
		sig  syscall.Signal
	}{
		{"ABRT", syscall.SIGABRT}, {"ALRM", syscall.SIGALRM}, {"FPE", syscall.SIGFPE},
		{"HUP", syscall.SIGHUP}, {"ILL", syscall.SIGILL}, {"INT", syscall.SIGINT},
		{"KILL", syscall.SIGKILL}, {"PIPE", syscall.SIGPIPE}, {"QUIT", syscall.SIGQUIT},
		{"SEGV", syscall.SIGSEGV}, {"TERM", syscall.SIGTERM}, {"USR1", syscall.SIGUSR1},
		{"USR2", syscall.SIGUSR2},
	}
}

// SignalByName returns the signal an RFC 4254 name stands for.
func SignalByName(name string) (syscall.Signal, bool) {
	for _, s := range rfcSignals() {
		if s.name == name {
			return s.sig, true
		}
	}
	return 0, false
}

// SignalName names sig for an exit-signal message. Signals that RFC 4254
// does not name are sent in the "name@domain" form it asks for, which
// clients show as is.
func SignalName(sig syscall.Signal) string {
	for _, s := range rfcSignals() {
		if s.sig == sig {
			return s.name
		}
	}
	return fmt.Sprintf("SIG%d@tether", int(sig))
}
