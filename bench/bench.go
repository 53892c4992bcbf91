// Command bench measures Tether's data plane and coordinator, each figure
// against a baseline measured in the same run, and prints one table with
// the ratio and whether the goal of issue 6 is met.
//
//	go run ./bench            # everything, a few minutes on 2 cores
//	go run ./bench -quick     # shorter windows and fewer runs
//	go run ./bench -parts speedtest,portforward -duration 5s
//
// It starts a real `tether server`, agent and CLI on loopback through the
// end-to-end tests' harness, internal/harness (the binary is built from
// this checkout unless -tether names one); two bare tunnel.Conn peers with
// a DERP relay for the library ceiling, in this process and again in two
// processes of their own; as root, a NAT lab of network namespaces
// (internal/natlab) for the upgrade and loss figures; and a coordinator
// (coordinator.Coordinator behind its WebSocket adapter) in a child
// process, with N simulated agents and clients over real WebSockets. The
// NAT part is a benchmark of this package's tests (BenchmarkNAT), because
// natlab is a test library and no binary imports testing; the command
// builds the test binary and runs it. Without root that part is skipped,
// and the table says so.
//
// Results go to bench/results/<time>.json (every figure, the table, the
// commit, the load average) and <time>.txt in Go's benchmark format. Two
// runs compare with `go run ./bench -compare old.json,new.json`, or with
// `benchstat old.txt new.txt` (concatenate several runs' .txt files per
// side for confidence intervals).
//
// Other processes on the machine change every figure: the table ends with
// the load average before and after, and the JSON keeps it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tetherdev/tether/internal/harness"
)

// config is what the flags chose.
type config struct {
	quick    bool
	parts    map[string]bool
	duration time.Duration // one throughput window
	warm     time.Duration // traffic before a measured window
	rttWarm  time.Duration
	rttCount int
	sshRuns  int
	// The latency part (latency.go): timed runs per figure.
	latencyRuns int
	// The sshbulk part (sshbulk.go): bytes per transfer.
	sshBulkBytes int64
	// The ssh load test (sshload.go).
	sshLoadAgents      int
	sshLoadConcurrency int
	sshLoadSessions    int
	sshLoadLines       int
	sshLoadFreeze      time.Duration
	// The workspace proxy part (wsproxy.go).
	wsproxyPrimaryDelay time.Duration
	wsproxyProxyDelay   time.Duration
	wsproxySessions     int
	wsproxyKeys         int
	wsproxyProfile      string // directory for CPU profiles of the proxy and agent; "" for none
	runs                int    // throughput windows per figure; the median counts
	firstByteRuns       int
	natRuns             int
	coordSizes          []int
	coordFanout         int
	coordUpdates        int
	coordRate           int
	coordProfile        string
	tether              string // the binary; built when empty
	resultsDir          string
	verbose             bool
	compare             string // two saved runs to compare instead of measuring
	timeout             time.Duration

	// The web terminal part (webterm.go).
	webtermDelay time.Duration
	webtermKeys  int

	log *slog.Logger // the library's and the tunnels' logs (Debug with -v)
}

// logf reports progress on stderr; stdout has the table only.
func (c *config) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// allParts, in the order they run.
var allParts = []string{"tcp", "library", "firstbyte", "speedtest", "portforward", "ssh", "latency", "sshbulk", "sshload", "wsproxy", "webterm", "nat", "coord"}

func main() {
	if code, ok := childMode(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:], os.Stdout))
}

// childMode runs the bench binary as one of its child processes when the
// first argument names one; ok is false otherwise.
func childMode(args []string) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case coordServerArg:
		return coordServerMain(), true
	case peerProcArg:
		return peerProcMain(), true
	case forwardProcArg:
		return forwardProcMain(args[1:]), true
	}
	return 0, false
}

func parseFlags(args []string) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench [flags]\n\nParts: %s\n\nFlags:\n", strings.Join(allParts, ", "))
		fs.PrintDefaults()
	}
	parts := fs.String("parts", "all", "comma-separated parts to run")
	fs.BoolVar(&cfg.quick, "quick", false, "short windows and few runs (under a minute); explicit flags still win")
	fs.DurationVar(&cfg.duration, "duration", 3*time.Second, "length of each throughput window")
	fs.DurationVar(&cfg.warm, "warm", time.Second, "traffic before each throughput window (the path settles)")
	fs.IntVar(&cfg.rttCount, "rtt-count", 2000, "round trips per latency figure")
	fs.IntVar(&cfg.sshRuns, "ssh-runs", 30, "runs of `tether ssh WS -- true`")
	fs.IntVar(&cfg.latencyRuns, "latency-runs", 5, "timed runs of each command at each delay in the latency part")
	fs.Int64Var(&cfg.sshBulkBytes, "sshbulk-bytes", 300e6, "bytes per ssh transfer in the sshbulk part (each direction, each path, each run)")
	fs.IntVar(&cfg.sshLoadAgents, "sshload-agents", 30, "workspaces (agents) in the ssh load test")
	fs.IntVar(&cfg.sshLoadConcurrency, "sshload-concurrency", 60, "concurrent `tether ssh` per round of the ssh load test")
	fs.IntVar(&cfg.sshLoadSessions, "sshload-sessions", 1000, "sessions per phase of the ssh load test (whole rounds: at least this many)")
	fs.IntVar(&cfg.sshLoadLines, "sshload-lines", 5000, "lines each ssh load session prints (seq 1 N)")
	fs.DurationVar(&cfg.sshLoadFreeze, "sshload-freeze", 1500*time.Millisecond, "how long an agent is stopped (SIGSTOP) at a time in the second phase of the ssh load test")
	fs.DurationVar(&cfg.wsproxyPrimaryDelay, "wsproxy-primary-delay", 100*time.Millisecond, "delay added each way between the browser and the primary in the wsproxy part")
	fs.DurationVar(&cfg.wsproxyProxyDelay, "wsproxy-proxy-delay", 5*time.Millisecond, "delay added each way between the browser and the workspace proxy in the wsproxy part")
	fs.IntVar(&cfg.wsproxySessions, "wsproxy-sessions", 200, "concurrent web terminals on the workspace proxy")
	fs.IntVar(&cfg.wsproxyKeys, "wsproxy-keys", 100, "keystrokes timed per web terminal in the wsproxy part")
	fs.StringVar(&cfg.wsproxyProfile, "wsproxy-profile", "", "write CPU profiles of the workspace proxy and the agent during each load phase of the wsproxy part to this directory (go tool pprof)")
	fs.DurationVar(&cfg.webtermDelay, "webterm-delay", 10*time.Millisecond, "delay added each way between the browser and the server in the webterm part (the relayed terminal's detour; the direct one does not cross it)")
	fs.IntVar(&cfg.webtermKeys, "webterm-keys", 200, "keystrokes timed on each web terminal (relayed and direct) in the webterm part")
	fs.IntVar(&cfg.runs, "runs", 1, "throughput windows (speedtest runs) per figure; the median counts (more for a noisy machine)")
	fs.IntVar(&cfg.firstByteRuns, "first-byte-runs", 10, "fresh tunnel pairs timed to their first byte")
	fs.IntVar(&cfg.natRuns, "nat-runs", 3, "relay-to-direct upgrades timed in the NAT lab")
	sizes := fs.String("coord-sizes", "100,1000,5000", "peers (agents and clients) per coordinator scale test")
	fs.IntVar(&cfg.coordFanout, "coord-fanout", 4, "clients per agent in the coordinator test")
	fs.IntVar(&cfg.coordUpdates, "coord-updates", 2000, "agent node updates per coordinator size")
	fs.IntVar(&cfg.coordRate, "coord-rate", 500, "agent node updates per second")
	fs.StringVar(&cfg.coordProfile, "coord-profile", "", "write a CPU profile of the coordinator's update phase (largest size) to this file")
	fs.StringVar(&cfg.tether, "tether", "", "tether binary to measure (default: build ./cmd/tether of this checkout)")
	fs.StringVar(&cfg.resultsDir, "results", "", "directory for the JSON and benchstat files (default: bench/results)")
	fs.BoolVar(&cfg.verbose, "v", false, "debug logs of the in-process tunnels on stderr")
	fs.DurationVar(&cfg.timeout, "timeout", 0, "give up measuring after this long (0: no limit); the table shows what was measured by then")
	fs.StringVar(&cfg.compare, "compare", "", "OLD.json,NEW.json: print two saved runs side by side and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cfg.quick {
		quick := map[string]func(){
			"duration":            func() { cfg.duration = time.Second },
			"warm":                func() { cfg.warm = 500 * time.Millisecond },
			"rtt-count":           func() { cfg.rttCount = 500 },
			"ssh-runs":            func() { cfg.sshRuns = 10 },
			"latency-runs":        func() { cfg.latencyRuns = 2 },
			"sshbulk-bytes":       func() { cfg.sshBulkBytes = 100e6 },
			"sshload-agents":      func() { cfg.sshLoadAgents = 6 },
			"sshload-concurrency": func() { cfg.sshLoadConcurrency = 12 },
			"sshload-sessions":    func() { cfg.sshLoadSessions = 120 },
			"wsproxy-sessions":    func() { cfg.wsproxySessions = 40 },
			"wsproxy-keys":        func() { cfg.wsproxyKeys = 30 },
			"webterm-keys":        func() { cfg.webtermKeys = 50 },
			"first-byte-runs":     func() { cfg.firstByteRuns = 3 },
			"nat-runs":            func() { cfg.natRuns = 1 },
			"coord-sizes":         func() { *sizes = "100,5000" },
			"coord-updates":       func() { cfg.coordUpdates = 500 },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	cfg.rttWarm = cfg.warm / 2

	cfg.parts = map[string]bool{}
	for _, p := range strings.Split(*parts, ",") {
		p = strings.TrimSpace(p)
		switch {
		case p == "all":
			for _, a := range allParts {
				cfg.parts[a] = true
			}
		case slices.Contains(allParts, p):
			cfg.parts[p] = true
		default:
			return nil, fmt.Errorf("unknown part %q; parts are %s", p, strings.Join(allParts, ", "))
		}
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < cfg.coordFanout+1 {
			return nil, fmt.Errorf("-coord-sizes: %q is not a size of at least %d", s, cfg.coordFanout+1)
		}
		cfg.coordSizes = append(cfg.coordSizes, n)
	}
	switch {
	case cfg.duration < 100*time.Millisecond:
		return nil, fmt.Errorf("-duration %s is too short", cfg.duration)
	case cfg.coordFanout < 1 || cfg.coordRate < 1 || cfg.coordUpdates < 1:
		return nil, fmt.Errorf("-coord-fanout, -coord-rate and -coord-updates must be positive")
	case cfg.sshBulkBytes < 10:
		return nil, fmt.Errorf("-sshbulk-bytes must be at least 10")
	case cfg.rttCount < 1 || cfg.sshRuns < 1 || cfg.latencyRuns < 1 || cfg.runs < 1 || cfg.firstByteRuns < 1 || cfg.natRuns < 1:
		return nil, fmt.Errorf("counts and runs must be positive")
	case cfg.wsproxySessions < 1 || cfg.wsproxyKeys < 1 || cfg.wsproxyPrimaryDelay < 0 || cfg.wsproxyProxyDelay < 0:
		return nil, fmt.Errorf("the -wsproxy- sizes must be positive")
	case cfg.webtermKeys < 1 || cfg.webtermDelay < 0:
		return nil, fmt.Errorf("-webterm-keys must be positive and -webterm-delay not negative")
	case cfg.sshLoadAgents < 1 || cfg.sshLoadConcurrency < 1 || cfg.sshLoadSessions < 1 || cfg.sshLoadLines < 1 || cfg.sshLoadFreeze <= 0:
		return nil, fmt.Errorf("the -sshload- sizes must be positive")
	}
	level := slog.LevelInfo
	if cfg.verbose {
		level = slog.LevelDebug
	}
	cfg.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	return cfg, nil
}

// run measures what args ask and prints the table to stdout; progress goes
// to stderr. It returns the process's exit code.
func run(args []string, stdout io.Writer) int {
	cfg, err := parseFlags(args)
	if err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if cfg.compare != "" {
		return runCompare(cfg.compare, stdout)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.timeout)
		defer cancel()
	}

	root, err := harness.ModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if cfg.resultsDir == "" {
		cfg.resultsDir = filepath.Join(root, "bench", "results")
	}
	tmp, err := os.MkdirTemp("", "tether-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	started := time.Now()
	binary := "built"
	if cfg.tether != "" {
		binary = cfg.tether
	}
	loadBefore := loadAvg()
	res := newResults()
	// Builds first, together, so that no measurement shares the CPUs with
	// a compiler of ours.
	var natTest string
	buildErrs := make(chan error, 2)
	builds := 0
	needBinary := cfg.parts["speedtest"] || cfg.parts["portforward"] || cfg.parts["ssh"] || cfg.parts["latency"] || cfg.parts["sshbulk"] || cfg.parts["sshload"] || cfg.parts["wsproxy"] || cfg.parts["webterm"] || cfg.parts["nat"] && os.Geteuid() == 0
	if needBinary && cfg.tether == "" {
		cfg.logf("building tether from %s", root)
		builds++
		go func() {
			var err error
			cfg.tether, err = harness.Build(ctx, root, tmp)
			buildErrs <- err
		}()
	}
	if cfg.parts["nat"] && os.Geteuid() == 0 {
		cfg.logf("building the NAT benchmark")
		natTest = filepath.Join(tmp, "bench.test")
		builds++
		go func() { buildErrs <- buildNATTest(ctx, root, natTest) }()
	}
	for range builds {
		if err := <-buildErrs; err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	measureStart := time.Now()

	step := func(part string, fn func() error) {
		if !cfg.parts[part] || ctx.Err() != nil {
			return
		}
		t0 := time.Now()
		cfg.logf("%s…", part)
		if err := fn(); err != nil {
			res.failed[part] = err.Error()
			cfg.logf("%s FAILED: %v", part, err)
			return
		}
		cfg.logf("%s done in %.1f s", part, time.Since(t0).Seconds())
	}
	step("tcp", func() error { return runPlainTCP(ctx, cfg, res) })
	step("library", func() error {
		if err := runLibrary(ctx, cfg, res); err != nil {
			return err
		}
		return runLibraryProcs(ctx, cfg, res)
	})
	step("firstbyte", func() error { return runFirstByte(ctx, cfg, res) })

	if cfg.parts["speedtest"] || cfg.parts["portforward"] || cfg.parts["ssh"] || cfg.parts["sshbulk"] {
		cfg.logf("starting server, agent and CLI on loopback")
		e, err := startE2E(ctx, cfg, res, tmp)
		if err != nil {
			for _, p := range []string{"speedtest", "portforward", "ssh", "sshbulk"} {
				if cfg.parts[p] {
					res.failed[p] = "start deployment: " + err.Error()
				}
			}
			cfg.logf("deployment FAILED: %v", err)
		} else {
			step("speedtest", func() error {
				return e.p.run(func() error {
					if err := e.speedtest(ctx, "speedtest/direct", cfg.runs); err != nil {
						return err
					}
					return e.speedtest(ctx, "speedtest/derp", cfg.runs, "--disable-direct")
				})
			})
			step("portforward", func() error {
				return e.p.run(func() error {
					if err := e.portForward(ctx, "port-forward/direct"); err != nil {
						return err
					}
					return e.portForward(ctx, "port-forward/derp", "--disable-direct")
				})
			})
			step("ssh", func() error { return e.p.run(func() error { return e.ssh(ctx, cfg.sshRuns) }) })
			step("sshbulk", func() error { return e.p.run(func() error { return e.sshBulk(ctx) }) })
			e.close()
		}
	}
	step("latency", func() error { return runLatency(ctx, cfg, res, tmp) })
	step("sshload", func() error { return runSSHLoad(ctx, cfg, res, tmp) })
	step("wsproxy", func() error { return runWSProxy(ctx, cfg, res, tmp) })
	step("webterm", func() error { return runWebTerm(ctx, cfg, res, tmp) })
	step("nat", func() error { return runNAT(ctx, cfg, res, root, natTest) })
	step("coord", func() error { return runCoord(ctx, cfg, res) })

	res.deriveRTTOverhead()
	rows := res.rows(comparisons(cfg), cfg.parts)
	printTable(stdout, rows)
	for _, p := range allParts {
		if why, ok := res.skipped[p]; ok {
			fmt.Fprintf(stdout, "skipped %s: %s\n", p, why)
		}
	}
	for _, p := range allParts {
		if why, ok := res.failed[p]; ok {
			fmt.Fprintf(stdout, "FAILED %s: %s\n", p, firstLine(why))
		}
	}
	loadAfter := loadAvg()
	mach := machine()
	fmt.Fprintf(stdout, "load average %s before, %s after; measured in %.0f s (build %.0f s); %s\n",
		loadBefore, loadAfter, time.Since(measureStart).Seconds(), measureStart.Sub(started).Seconds(), mach)

	commit, dirty := gitCommit(root)
	rec := record{
		Time: started, Commit: commit, Dirty: dirty, Binary: binary, Go: runtime.Version(), CPUs: runtime.NumCPU(), Machine: mach,
		Args: args, Measures: res.sortedMeasures(), Rows: rows,
		Skipped: res.skipped, Failed: res.failed,
		LoadAvg: [2]string{loadBefore, loadAfter},
	}
	jsonPath, txtPath, err := save(cfg.resultsDir, rec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	fmt.Fprintf(stdout, "results: %s (benchstat: %s)\n", jsonPath, txtPath)
	if len(res.failed) > 0 || ctx.Err() != nil {
		return 1
	}
	return 0
}

func runCompare(arg string, stdout io.Writer) int {
	oldPath, newPath, ok := strings.Cut(arg, ",")
	if !ok {
		fmt.Fprintln(os.Stderr, "bench: -compare wants OLD.json,NEW.json")
		return 2
	}
	old, err := loadRecord(oldPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	cur, err := loadRecord(newPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	compareRecords(stdout, old, cur)
	return 0
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// loadAvg is the 1-minute load average, to judge how noisy a run was.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func gitCommit(root string) (commit string, dirty bool) {
	out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown", false
	}
	st, _ := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output()
	return strings.TrimSpace(string(out)), len(strings.TrimSpace(string(st))) > 0
}
