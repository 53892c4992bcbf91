// Command release builds the tether binary for the platforms whose agents
// a server hands out, into a directory that `tether server
// --agent-binaries-dir` serves:
//
//	go run ./internal/release -o DIR [-platforms linux/amd64,linux/arm64,darwin/arm64] [-version V]
//
// DIR gets tether-OS-ARCH (tether-windows-ARCH.exe for Windows) and
// tether-OS-ARCH.sha256 beside each, in `sha256sum` format, so that
// `sha256sum -c` checks them too. Builds are static (CGO_ENABLED=0) and
// reproducible (-trimpath, no build ID). Each file is written under a
// temporary name and renamed, so a server never serves half a binary.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
)

// defaultPlatforms are those the release ships agents for. Windows
// builds (windows/amd64) may be added with -platforms.
var defaultPlatforms = []string{"linux/amd64", "linux/arm64", "darwin/arm64"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, goBuild)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

// builder builds the tether command for goos/goarch into out.
type builder func(ctx context.Context, goos, goarch, version, out string) error

func run(ctx context.Context, args []string, stdout io.Writer, build builder) error {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	out := fs.String("o", "", "directory to write the binaries and their checksums to (created if missing)")
	platforms := fs.String("platforms", strings.Join(defaultPlatforms, ","), "comma-separated OS/ARCH pairs to build")
	version := fs.String("version", "", "version to stamp into the binaries (cli.Version); empty leaves the default")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		return errors.New("usage: go run ./internal/release -o DIR [-platforms OS/ARCH,...] [-version V]")
	}
	list, err := parsePlatforms(*platforms)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, p := range list {
		name := binaryName(p[0], p[1])
		dst := filepath.Join(*out, name)
		tmp := filepath.Join(*out, "."+name+".tmp")
		if err := build(ctx, p[0], p[1], *version, tmp); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("build %s/%s: %w", p[0], p[1], err)
		}
		sum, err := fileSHA256(tmp)
		if err != nil {
			os.Remove(tmp)
			return err
		}
		// The binary first, then its checksum: a server that sees a new
		// binary beside the old checksum refuses it for the moment
		// rather than serving a mismatch.
		if err := os.Rename(tmp, dst); err != nil {
			return err
		}
		if err := writeFileAtomic(dst+".sha256", []byte(sum+"  "+name+"\n")); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s  %s\n", sum, dst)
	}
	return nil
}

var platformRE = regexp.MustCompile(`^([a-z0-9]+)/([a-z0-9]+)$`)

func parsePlatforms(s string) ([][2]string, error) {
	var list [][2]string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		m := platformRE.FindStringSubmatch(p)
		if m == nil {
			return nil, fmt.Errorf("-platforms: %q is not OS/ARCH, such as linux/amd64", p)
		}
		list = append(list, [2]string{m[1], m[2]})
	}
	return list, nil
}

// binaryName is the file name the server looks for (server/binaries.go).
func binaryName(goos, goarch string) string {
	name := "tether-" + goos + "-" + goarch
	if goos == "windows" {
		name += ".exe"
	}
	return name
}

func goBuild(ctx context.Context, goos, goarch, version, out string) error {
	ldflags := "-s -w -buildid="
	if version != "" {
		ldflags += " -X github.com/tetherdev/tether/cli.Version=" + version
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, "github.com/tetherdev/tether/cmd/tether")
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
