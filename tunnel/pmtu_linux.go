package tunnel

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// ignorePathMTU makes this process's IPv4 UDP sockets bound to port send
// without the don't-fragment bit, sized by the interface's MTU
// (IP_PMTUDISC_INTERFACE), so that routers fragment what does not fit.
//
// Why: on a path whose MTU is below WireGuard's packet size (1280-byte links
// exist), one full-size packet draws an ICMP "fragmentation needed"; the
// kernel then lowers the socket's path MTU and refuses every GSO batch
// larger than it (EMSGSIZE), and the library (v1.102.5) falls back to
// single sends only on EIO, so bulk transfers stall for good. magicsock
// offers no hook on its sockets, so they are found by port among this
// process's descriptors; it runs on every port update, which magicsock
// publishes after each (re)bind. IPv6 is left alone: IPv6 routers do not
// fragment, so ignoring the path MTU there would lose the packets instead.
func ignorePathMTU(network string, port uint16) {
	if network != "udp4" || port == 0 {
		return
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_DGRAM {
			continue
		}
		if sa, err := unix.Getsockname(fd); err == nil {
			if sa4, ok := sa.(*unix.SockaddrInet4); ok && sa4.Port == int(port) {
				unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_INTERFACE)
			}
		}
	}
}
