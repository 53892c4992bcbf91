//go:build !linux

package natlab

import "errors"

// Labs need Linux; canHostLab skips the test before any of these runs.

var errNotLinux = errors.New("network namespaces need Linux")

const netnsDir = "/var/run/netns"

func inNamespace(string, func() error) error { return errNotLinux }

func setupNamespace(string, bool) error { return errNotLinux }

func removeNamespaces([]string) []error { return nil }

func processExists(int) bool { return true }
