package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Agent binaries, for /install.sh and anyone who wants one, at
//
//	/bin/tether-OS-ARCH            the binary (tether-windows-ARCH.exe on Windows)
//	/bin/tether-OS-ARCH.sha256     its SHA-256, as `sha256sum` prints it:
//	                               "HEX  tether-OS-ARCH\n"
//
// The server serves its own binary for its own OS and architecture, and
// those of other platforms from the agent binaries directory
// (--agent-binaries-dir), where files are named the same way (as
// `go run ./internal/release -o DIR` writes them). Its own binary comes
// first: it is the build that matches the server. The checksums are the
// server's own, computed from the bytes it serves; a .sha256 file beside a
// binary in the directory must agree with it, else the binary is refused
// as damaged (a half-finished copy, say) rather than served.

// binaryName is the file name of the agent binary for goos/goarch.
func binaryName(goos, goarch string) string {
	name := "tether-" + goos + "-" + goarch
	if goos == "windows" {
		name += ".exe"
	}
	return name
}

// binaryNameRE matches what may be asked for under /bin/: a binary's name
// (or its checksum file's, once ".sha256" is cut).
var binaryNameRE = regexp.MustCompile(`^tether-([a-z0-9]+)-([a-z0-9]+)(\.exe)?$`)

// agentBinaries serves agent binaries and their checksums.
type agentBinaries struct {
	logger *slog.Logger

	// own is the server's own binary, opened once at start so that it
	// serves the build that runs even after the file is replaced on disk
	// (an upgrade renames a new file over it). nil when unknown.
	own     *os.File
	ownName string
	ownSum  func() (string, error) // computed on first use, then kept

	// dir holds other platforms' binaries; nil without one.
	dir     *os.Root
	dirPath string

	mu   sync.Mutex
	sums map[string]fileSum // by file name in dir; guarded by mu
}

// fileSum is a binary's checksum, valid while the file keeps its size and
// modification time.
type fileSum struct {
	size    int64
	modTime time.Time
	sum     string
}

// newAgentBinaries opens the server's own binary at ownPath (if not empty)
// and the directory dirPath (if not empty).
func newAgentBinaries(logger *slog.Logger, ownPath, dirPath string) (*agentBinaries, error) {
	b := &agentBinaries{logger: logger, dirPath: dirPath, sums: map[string]fileSum{}}
	if ownPath != "" {
		f, err := os.Open(ownPath)
		if err != nil {
			return nil, fmt.Errorf("open the server's own binary: %w", err)
		}
		b.own, b.ownName = f, binaryName(runtime.GOOS, runtime.GOARCH)
		b.ownSum = sync.OnceValues(func() (string, error) { return hashReader(io.NewSectionReader(f, 0, 1<<62)) })
	}
	if dirPath != "" {
		root, err := os.OpenRoot(dirPath)
		if err != nil {
			if b.own != nil {
				b.own.Close()
			}
			return nil, fmt.Errorf("open the agent binaries directory: %w", err)
		}
		b.dir = root
	}
	return b, nil
}

func (b *agentBinaries) Close() {
	if b == nil {
		return // a proxy's Server serves no binaries
	}
	if b.own != nil {
		b.own.Close()
	}
	if b.dir != nil {
		b.dir.Close()
	}
}

func hashReader(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// errNoBinary: the server has no binary of that name.
var errNoBinary = errors.New("no such agent binary")

// open returns the binary called name, its modification time and checksum,
// and a function that closes it.
func (b *agentBinaries) open(name string) (f io.ReadSeeker, modTime time.Time, sum string, closeFn func(), err error) {
	if b.own != nil && name == b.ownName {
		st, err := b.own.Stat()
		if err != nil {
			return nil, time.Time{}, "", nil, err
		}
		sum, err := b.ownSum()
		if err != nil {
			return nil, time.Time{}, "", nil, fmt.Errorf("hash the server's own binary: %w", err)
		}
		// A section reader of its own per request: the file is shared.
		return io.NewSectionReader(b.own, 0, st.Size()), st.ModTime(), sum, func() {}, nil
	}
	if b.dir == nil {
		return nil, time.Time{}, "", nil, errNoBinary
	}
	file, err := b.dir.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, time.Time{}, "", nil, errNoBinary
	} else if err != nil {
		return nil, time.Time{}, "", nil, err
	}
	st, err := file.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = errNoBinary
	}
	if err == nil {
		sum, err = b.dirSum(name, file, st)
	}
	if err != nil {
		file.Close()
		return nil, time.Time{}, "", nil, err
	}
	return file, st.ModTime(), sum, func() { file.Close() }, nil
}

// dirSum returns the checksum of the directory's file name, open as f,
// from the cache while the file is unchanged, and checks it against the
// .sha256 file beside it, if there is one.
func (b *agentBinaries) dirSum(name string, f *os.File, st fs.FileInfo) (string, error) {
	b.mu.Lock()
	c, ok := b.sums[name]
	b.mu.Unlock()
	if !ok || c.size != st.Size() || !c.modTime.Equal(st.ModTime()) {
		sum, err := hashReader(f)
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", name, err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return "", err
		}
		c = fileSum{size: st.Size(), modTime: st.ModTime(), sum: sum}
		b.mu.Lock()
		b.sums[name] = c
		b.mu.Unlock()
	}
	want, err := b.dir.ReadFile(name + ".sha256")
	if errors.Is(err, fs.ErrNotExist) {
		return c.sum, nil
	} else if err != nil {
		return "", err
	}
	if fields := strings.Fields(string(want)); len(fields) == 0 || !strings.EqualFold(fields[0], c.sum) {
		b.logger.Error("an agent binary does not match the checksum beside it; it is not served until they agree (copy it again, or rebuild it with `go run ./internal/release`)",
			slog.String("file", b.dirPath+string(os.PathSeparator)+name))
		return "", fmt.Errorf("%w: %s does not match %s.sha256", errDamagedBinary, name, name)
	}
	return c.sum, nil
}

var errDamagedBinary = errors.New("damaged agent binary")

// available lists the binaries the server has, by name, for its 404s.
func (b *agentBinaries) available() []string {
	var names []string
	if b.own != nil {
		names = append(names, b.ownName)
	}
	if b.dir != nil {
		entries, _ := fs.ReadDir(b.dir.FS(), ".")
		for _, e := range entries {
			if e.Type().IsRegular() && binaryNameRE.MatchString(e.Name()) && !slices.Contains(names, e.Name()) {
				names = append(names, e.Name())
			}
		}
	}
	slices.Sort(names)
	return names
}

// serveBinary serves GET /bin/{file}: a binary or its checksum. Errors are
// plain text, for curl, wget and the install script to show as they are.
func (s *Server) serveBinary(w http.ResponseWriter, r *http.Request) {
	file := r.PathValue("file")
	name, isSum := strings.CutSuffix(file, ".sha256")
	m := binaryNameRE.FindStringSubmatch(name)
	if m == nil {
		textError(w, http.StatusNotFound, fmt.Sprintf("no file %s here: agent binaries are at /bin/tether-OS-ARCH, such as /bin/tether-linux-amd64, with their SHA-256 at /bin/tether-OS-ARCH.sha256", file))
		return
	}
	f, modTime, sum, closeFn, err := s.binaries.open(name)
	switch {
	case errors.Is(err, errNoBinary):
		have := s.binaries.available()
		msg := fmt.Sprintf("this server has no agent binary for %s/%s", m[1], m[2])
		if len(have) == 0 {
			msg += ", nor for any other platform"
		} else {
			msg += "; it has " + strings.Join(have, ", ")
		}
		textError(w, http.StatusNotFound, msg+". Its operator can add binaries with --agent-binaries-dir (`go run ./internal/release -o DIR` builds them).")
		return
	case errors.Is(err, errDamagedBinary):
		textError(w, http.StatusInternalServerError, fmt.Sprintf("the server's %s does not match its checksum, so it is not served: tell the server's operator (its log says more)", name))
		return
	case err != nil:
		s.logger.Error("serve agent binary", slog.String("file", name), slog.Any("err", err))
		textError(w, http.StatusInternalServerError, "the server could not read "+name+": tell the server's operator (its log says more)")
		return
	}
	defer closeFn()
	// Binaries change with upgrades: caches must ask again, and get a 304
	// while the checksum holds.
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", `"`+sum+`"`)
	if isSum {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		http.ServeContent(w, r, file, modTime, strings.NewReader(sum+"  "+name+"\n"))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	http.ServeContent(w, r, name, modTime, f)
}

// textError writes msg as a plain-text error.
func textError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}
