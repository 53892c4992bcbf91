package natlab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/var/run/netns"

// inNamespace runs fn on an OS thread that has joined the namespace ns.
// Sockets fn creates belong to ns for their whole life, whichever thread
// uses them later; anything fn starts on other goroutines runs in the
// machine's own namespace.
func inNamespace(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it is in another namespace now, and
		// a goroutine that exits locked takes its thread with it, so no
		// other goroutine can ever run there.
		runtime.LockOSThread()
		fd, err := unix.Open(filepath.Join(netnsDir, ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", ns, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// setupNamespace brings up loopback and sets the sysctls every lab
// namespace wants; forward makes it a router.
func setupNamespace(ns string, forward bool) error {
	if _, err := run(nil, "ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
		return err
	}
	return inNamespace(ns, func() error {
		// Interfaces created from now on get no IPv6 (loopback keeps ::1):
		// the lab is IPv4 only, and link-local addresses would only add
		// candidate paths nobody asked for.
		if err := writeSysctl("net/ipv6/conf/default/disable_ipv6", "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if !forward {
			return nil
		}
		if err := writeSysctl("net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
		// With br_netfilter loaded on the machine (Docker loads it),
		// traffic between two hosts on a LAN bridge would cross the
		// router's forward chain; on a real LAN it never reaches the
		// router at all.
		if err := writeSysctl("net/bridge/bridge-nf-call-iptables", "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	})
}

// writeSysctl writes a sysctl of the calling thread's network namespace.
func writeSysctl(name, value string) error {
	if err := os.WriteFile("/proc/sys/"+name, []byte(value), 0); err != nil {
		return fmt.Errorf("sysctl %s: %w", name, err)
	}
	return nil
}

// removeNamespaces kills the processes in the namespaces and deletes them,
// returning every error met on the way.
func removeNamespaces(nss []string) []error {
	var errs []error
	// Kill first, everywhere, so that no process keeps a namespace (and
	// its interfaces) alive after its name is gone.
	for _, ns := range nss {
		out, err := run(nil, "ip", "netns", "pids", ns)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range strings.Fields(out) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid == os.Getpid() {
				continue
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("kill %d in %s: %w", pid, ns, err))
			}
		}
	}
	for i := len(nss) - 1; i >= 0; i-- {
		if _, err := run(nil, "ip", "netns", "del", nss[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
