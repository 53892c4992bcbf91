package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tetherdev/tether/internal/harness"
	"golang.org/x/crypto/ssh"
)

// The sshbulk part (issue 16): bulk data through SSH, each figure against
// a baseline of the same run. OpenSSH moves data down and up through
// `tether config-ssh` (its ProxyCommand `tether ssh --stdio`, the tunnel,
// the agent's SSH server) and again to a plain OpenSSH sshd that the bench
// starts on 127.0.0.1 with a throwaway host key: the same client, cipher
// and remote commands, without Tether. The built-in `tether ssh` downloads
// against `tether speedtest` through the same tunnel, which is what SSH
// adds to the tunnel.
//
// Every transfer runs a program in the workspace, as users' transfers do:
// `head -c` (which writes 8 KiB at a time) down, `cat >/dev/null` up.

// sshBulkCipher is the cipher both OpenSSH paths use: the one of the
// issue's figures, fast on both sides (AES-NI).
const sshBulkCipher = "aes128-gcm@openssh.com"

// proxyExitWait bounds how long a ProxyCommand may hold the output of
// OpenSSH's client open after the client exits.
const proxyExitWait = 10 * time.Second

// sshArgv is a command line that runs a remote command: ssh with its
// options and host, or tether ssh.
type sshArgv func(remote string) (bin string, args, env []string)

// sshBulk measures the sshbulk part on e's deployment.
func (e *e2e) sshBulk(ctx context.Context) error {
	cfg := e.cfg
	// The built-in client against the bare tunnel, back to back.
	if err := e.speedtest(ctx, "sshbulk/speedtest-direct", cfg.runs); err != nil {
		return err
	}
	builtin := func(remote string) (string, []string, []string) {
		return cfg.tether, []string{"ssh", e.dep.Workspace, "--", remote}, e.dep.User.Env
	}
	if err := e.sshTransfer(ctx, "sshbulk/tether-ssh-down", "down", builtin, "`tether ssh WS -- head -c …`"); err != nil {
		return err
	}

	if _, err := exec.LookPath("ssh"); err != nil {
		e.res.skipped["sshbulk"] = "OpenSSH's client is not installed (apt-get install openssh-client): no OpenSSH rows"
		return nil
	}
	// Through config-ssh, as users' ssh, scp and editors reach workspaces.
	sshConfig := filepath.Join(e.p.TempDir(), "ssh_config")
	if _, _, err := cli(ctx, e.dep.User, "config-ssh", "--ssh-config-file", sshConfig); err != nil {
		return err
	}
	viaTether := func(remote string) (string, []string, []string) {
		return "ssh", []string{"-F", sshConfig, "-o", "BatchMode=yes", "-c", sshBulkCipher, "tether." + e.dep.Workspace, remote}, e.dep.User.Env
	}
	sd, err := startPlainSSHD(e.p)
	switch {
	case errors.Is(err, errNoSSHD):
		e.res.skipped["sshbulk"] = "no plain sshd rows: " + err.Error()
		cfg.logf("sshbulk: %v", err)
	case err != nil:
		return err
	}
	if sd != nil {
		if err := e.plainTrue(ctx, sd); err != nil {
			return err
		}
	}
	// Keystroke echo, through each client (see sshecho.go).
	builtinTTY := func(remote string) (string, []string, []string) {
		return cfg.tether, []string{"ssh", "-t", e.dep.Workspace, "--", remote}, e.dep.User.Env
	}
	viaTetherTTY := func(remote string) (string, []string, []string) {
		bin, args, env := viaTether(remote)
		return bin, append([]string{"-tt"}, args...), env
	}
	if err := e.sshEcho(ctx, "sshbulk/echo-tether-ssh", builtinTTY, "`tether ssh -t WS -- cat`"); err != nil {
		return err
	}
	if err := e.sshEcho(ctx, "sshbulk/echo-openssh-tether", viaTetherTTY, "`ssh -tt tether.WS cat` through config-ssh"); err != nil {
		return err
	}
	if sd != nil {
		plainTTY := func(remote string) (string, []string, []string) {
			bin, args, env := sd.argv(remote)
			return bin, append([]string{"-tt"}, args...), env
		}
		if err := e.sshEcho(ctx, "sshbulk/echo-openssh-plain", plainTTY, "`ssh -tt 127.0.0.1 cat` to the plain sshd"); err != nil {
			return err
		}
	}

	for _, dir := range []string{"down", "up"} {
		if err := e.sshTransfer(ctx, "sshbulk/openssh-tether-"+dir, dir, viaTether, "OpenSSH through config-ssh, "+sshBulkCipher); err != nil {
			return err
		}
		if sd == nil {
			continue
		}
		if err := e.sshTransfer(ctx, "sshbulk/openssh-plain-"+dir, dir, sd.argv, "OpenSSH to a plain sshd on 127.0.0.1, "+sshBulkCipher); err != nil {
			return err
		}
	}

	// scp and sftp: the agent's SFTP server against the plain sshd's.
	src, err := bulkSource(e.p, "bulk", cfg.sshBulkBytes)
	if err != nil {
		return err
	}
	warm, err := bulkSource(e.p, "warm", cfg.sshBulkBytes/10)
	if err != nil {
		return err
	}
	viaTetherFiles := fileTarget{host: "tether." + e.dep.Workspace, options: []string{"-F", sshConfig, "-o", "BatchMode=yes", "-c", sshBulkCipher}, env: e.dep.User.Env}
	for _, tool := range []string{"scp", "sftp"} {
		if _, err := exec.LookPath(tool); err != nil {
			why := tool + " is not installed (apt-get install openssh-client): no " + tool + " rows"
			if prev := e.res.skipped["sshbulk"]; prev != "" {
				why = prev + "; " + why
			}
			e.res.skipped["sshbulk"] = why
			continue
		}
		for _, dir := range []string{"down", "up"} {
			if err := e.fileTransfer(ctx, "sshbulk/"+tool+"-tether-"+dir, tool, dir, src, warm, viaTetherFiles, "OpenSSH's "+tool+" through config-ssh, "+sshBulkCipher); err != nil {
				return err
			}
			if sd == nil {
				continue
			}
			if err := e.fileTransfer(ctx, "sshbulk/"+tool+"-plain-"+dir, tool, dir, src, warm, sd.target(), "OpenSSH's "+tool+" to a plain sshd on 127.0.0.1, "+sshBulkCipher); err != nil {
				return err
			}
		}
	}
	return nil
}

// fileTarget is where scp and sftp copy files: a host and the options
// every OpenSSH client takes to reach it (-P for the port, which scp and
// sftp spell alike).
type fileTarget struct {
	host    string
	options []string
	env     []string
}

// bulkSource makes a file that scp and sftp copy: n bytes of a sparse
// file in a directory of p, read from memory on both paths alike. Uploads
// go to the far side's /dev/null, downloads to this side's: both tools
// complain that /dev/null cannot be truncated or have its mode set, and
// succeed.
func bulkSource(p *part, name string, n int64) (string, error) {
	path := filepath.Join(p.TempDir(), name)
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := f.Truncate(n); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// fileCommand is the command that copies src (n bytes, local and remote
// alike: the workspace runs on this machine) in direction dir with tool.
func fileCommand(ctx context.Context, tool, dir, src string, t fileTarget) *exec.Cmd {
	var cmd *exec.Cmd
	switch tool {
	case "scp":
		from, to := t.host+":"+src, os.DevNull
		if dir == "up" {
			from, to = src, t.host+":"+os.DevNull
		}
		cmd = exec.CommandContext(ctx, "scp", append(append([]string(nil), t.options...), "-q", from, to)...)
	default: // sftp, its batch on stdin
		batch := "get " + src + " " + os.DevNull + "\n"
		if dir == "up" {
			batch = "put " + src + " " + os.DevNull + "\n"
		}
		cmd = exec.CommandContext(ctx, "sftp", append(append([]string(nil), t.options...), "-q", "-b", "-", t.host)...)
		cmd.Stdin = strings.NewReader(batch)
	}
	cmd.Env = append(harness.CleanEnv(), t.env...)
	return cmd
}

// fileTransfer measures cfg.runs copies of src (cfg.sshBulkBytes) in one
// direction, after one of warm that is not counted, and records the
// median rate in MB/s, as sshTransfer does.
func (e *e2e) fileTransfer(ctx context.Context, name, tool, dir, src, warm string, t fileTarget, what string) error {
	cfg := e.cfg
	var rates []float64
	for i := range max(cfg.runs, 1) + 1 {
		file := src
		if i == 0 {
			// The first connection sets up the tunnel, and data makes
			// the path go direct.
			file = warm
		}
		cctx, cancel := context.WithTimeout(ctx, harness.CommandTimeout)
		cmd := fileCommand(cctx, tool, dir, file, t)
		var stderr lockedBuffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		cmd.WaitDelay = proxyExitWait
		t0 := time.Now()
		err := cmd.Run()
		d := time.Since(t0)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", name, err, harness.Tail(strings.TrimSpace(stderr.String()), tailLines))
		}
		if i > 0 {
			rates = append(rates, float64(cfg.sshBulkBytes)/d.Seconds()/1e6)
		}
	}
	e.res.higher(name, median(rates), "MB/s", fmt.Sprintf("%s%s %d MB, connection setup included; %s",
		ratesNote(rates), dir, cfg.sshBulkBytes/1e6, what))
	return nil
}

// plainTrue times `ssh 127.0.0.1 true` to the plain sshd, start to exit,
// cfg.sshRuns times after one warm-up: the outside figure that `tether ssh
// WS -- true` (the ssh part) should stay below.
func (e *e2e) plainTrue(ctx context.Context, sd *plainSSHD) error {
	var ds []time.Duration
	for i := range e.cfg.sshRuns + 1 {
		bin, args, _ := sd.argv("true")
		cctx, cancel := context.WithTimeout(ctx, harness.CommandTimeout)
		t0 := time.Now()
		out, err := exec.CommandContext(cctx, bin, args...).CombinedOutput()
		d := time.Since(t0)
		cancel()
		if err != nil {
			return fmt.Errorf("ssh to the plain sshd: %v: %s", err, strings.TrimSpace(string(out)))
		}
		if i > 0 {
			ds = append(ds, d)
		}
	}
	s := summarize(ds)
	e.res.lower("sshbulk/openssh-plain-true-p50", millis(s.P50), "ms",
		fmt.Sprintf("%d runs after 1 warm-up; max %.0f ms; `ssh 127.0.0.1 true` to the plain sshd", s.N, millis(s.Max)))
	return nil
}

// sshTransfer measures cfg.runs transfers of cfg.sshBulkBytes in one
// direction and records the median rate in MB/s.
func (e *e2e) sshTransfer(ctx context.Context, name, dir string, argv sshArgv, what string) error {
	cfg := e.cfg
	// A small one first, not counted: the first connection sets up the
	// tunnel, and data makes the path go direct.
	if _, err := sshOnce(ctx, dir, argv, cfg.sshBulkBytes/10); err != nil {
		return fmt.Errorf("%s warm-up: %w", name, err)
	}
	var rates []float64
	for range max(cfg.runs, 1) {
		r, err := sshOnce(ctx, dir, argv, cfg.sshBulkBytes)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rates = append(rates, r/1e6)
	}
	e.res.higher(name, median(rates), "MB/s", fmt.Sprintf("%s%s %d MB, connection setup included; %s",
		ratesNote(rates), dir, cfg.sshBulkBytes/1e6, what))
	return nil
}

// sshOnce moves n bytes through one connection and returns the rate in
// bytes per second, from the start of the client to its exit (connection
// setup included, a few hundred milliseconds at most). Down, the remote
// `head -c` writes 8 KiB at a time, as most programs do; up, the local one
// feeds ssh through a pipe and the remote `cat` takes it. The client's
// stdio are ordinary blocking files and pipes, as in a shell.
func sshOnce(ctx context.Context, dir string, argv sshArgv, n int64) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, harness.CommandTimeout)
	defer cancel()
	var cmd *exec.Cmd
	switch dir {
	case "down":
		bin, args, env := argv(fmt.Sprintf("head -c %d /dev/zero", n))
		cmd = exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(harness.CleanEnv(), env...)
		null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return 0, err
		}
		defer null.Close()
		cmd.Stdout = null
	default:
		bin, args, env := argv("cat >/dev/null")
		script := fmt.Sprintf(`head -c %d /dev/zero | exec "$@"`, n)
		cmd = exec.CommandContext(ctx, "sh", append([]string{"-c", script, "sh", bin}, args...)...)
		cmd.Env = append(harness.CleanEnv(), env...)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	// A ProxyCommand may hold stderr open a moment after ssh exits: on
	// a machine with a load average in the hundreds, over a second.
	cmd.WaitDelay = proxyExitWait
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, harness.Tail(strings.TrimSpace(stderr.String()), tailLines))
	}
	return float64(n) / d.Seconds(), nil
}

// lockedBuffer is a process's stderr, written by exec's goroutine and read
// by the bench.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// plainSSHD is an OpenSSH sshd on 127.0.0.1 that lets in one throwaway
// client key: the "outside Tether" of the sshbulk rows.
type plainSSHD struct {
	options []string // the options of every OpenSSH client to reach it, but the port
	port    string
}

// errNoSSHD says why there are no plain sshd rows.
var errNoSSHD = errors.New("sshd is not installed (apt-get install openssh-server; the bench runs its own, never the service)")

// startPlainSSHD starts sshd as a process of p, with a config and keys of
// its own in a directory of p, and waits until it lets the client key in.
// It needs /usr/sbin/sshd (Debian's openssh-server package).
func startPlainSSHD(p *part) (*plainSSHD, error) {
	bin, err := exec.LookPath("sshd")
	if err != nil {
		bin = "/usr/sbin/sshd"
		if _, err := os.Stat(bin); err != nil {
			return nil, errNoSSHD
		}
	}
	dir := p.TempDir()
	hostKey := filepath.Join(dir, "host_key")
	clientKey := filepath.Join(dir, "client_key")
	authorized := filepath.Join(dir, "authorized_keys")
	var clientPub ssh.PublicKey
	for _, path := range []string{hostKey, clientKey} {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		block, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, err
		}
		if path == clientKey {
			if clientPub, err = ssh.NewPublicKey(pub); err != nil {
				return nil, err
			}
		}
	}
	if err := os.WriteFile(authorized, ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	config := filepath.Join(dir, "sshd_config")
	conf := strings.Join([]string{
		fmt.Sprintf("ListenAddress 127.0.0.1:%d", port),
		"HostKey " + hostKey,
		"AuthorizedKeysFile " + authorized,
		"PidFile none",
		"UsePAM no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"StrictModes no",
		"PermitRootLogin prohibit-password",
		// In-process, as the agent serves SFTP: no sftp-server to find.
		"Subsystem sftp internal-sftp",
		// The agent's sessions inherit its SHLVL, so Debian's bash never
		// reads ~/.bashrc for their commands; sshd's start at SHLVL 1,
		// where it does. The same here, or every plain figure would
		// include what ~/.bashrc runs (pyenv's set-up took seconds on a
		// loaded machine, and a minute once).
		"SetEnv SHLVL=1",
		"",
	}, "\n")
	if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		// As root, sshd wants its privilege separation directory, which
		// only the service's start-up creates.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return nil, err
		}
	}
	proc := harness.Start(p, "sshd", exec.Command(bin, "-D", "-e", "-f", config), nil)
	s := &plainSSHD{port: fmt.Sprint(port), options: []string{"-F", "/dev/null", "-i", clientKey,
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"-c", sshBulkCipher}}
	harness.WaitFor(p, harness.StartTimeout, "the plain sshd to listen", func() bool {
		select {
		case <-proc.Done():
			p.Fatalf("sshd exited: %s", harness.Tail(proc.Output(), tailLines))
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	ctx, cancel := context.WithTimeout(p.Context(), harness.CommandTimeout)
	defer cancel()
	bin, args, _ := s.argv("true")
	if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ssh to the plain sshd: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return s, nil
}

// argv is the command line of `ssh` to the plain sshd running remote.
func (s *plainSSHD) argv(remote string) (string, []string, []string) {
	return "ssh", append(append([]string(nil), s.options...), "-p", s.port, "127.0.0.1", remote), nil
}

// target is the plain sshd for scp and sftp.
func (s *plainSSHD) target() fileTarget {
	return fileTarget{host: "127.0.0.1", options: append(append([]string(nil), s.options...), "-P", s.port)}
}
