package e2e

// Helpers of the relay tests (relay_*_test.go): Tailscale's own relay
// server (derper), DERP map files, a UDP delay proxy in front of STUN, and
// nginx in front of the Tether server. Everything listens on loopback.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/harness"
	"tailscale.com/tailcfg"
)

// derperRegionID is the region of the external relay in the tests' maps;
// the built-in relay keeps its default, 999 ("tether").
const derperRegionID = 900

// derperOnce builds Tailscale's derper (a tool in go.mod) once per run,
// next to the tether binary.
var derperOnce = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(filepath.Dir(here.Bin), "derper")
	out, err := exec.Command("go", "build", "-o", bin, "tailscale.com/cmd/derper").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build derper: %v\n%s", err, out)
	}
	return bin, nil
})

// derper is a running Tailscale relay server.
type derper struct {
	*harness.Proc
	port     int // DERP over plain HTTP
	stunPort int
}

// startDerper runs derper on loopback: plain HTTP on a free port (it serves
// HTTP on any port but 443 unless told otherwise) and STUN on another.
func startDerper(t *testing.T) *derper {
	t.Helper()
	bin, err := derperOnce()
	if err != nil {
		t.Fatal(err)
	}
	d := &derper{port: freePort(t, "tcp"), stunPort: freePort(t, "udp")}
	d.Proc = harness.Start(t, "derper", exec.Command(bin,
		"-a", "127.0.0.1:"+strconv.Itoa(d.port), "-http-port", "-1",
		"-stun-port", strconv.Itoa(d.stunPort), "-c", filepath.Join(t.TempDir(), "derper.json")), nil)
	harness.WaitFor(t, harness.StartTimeout, "derper to answer", func() bool {
		select {
		case <-d.Done():
			t.Fatalf("derper exited: %v\n%s", d.Err(), d.Output())
		default:
		}
		resp, err := http.Get(d.url() + "/derp/probe")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return d
}

func (d *derper) url() string { return "http://127.0.0.1:" + strconv.Itoa(d.port) }

// metric reads one of derper's counters or gauges (its /debug/varz answers
// loopback clients).
func (d *derper) metric(t *testing.T, name string) int {
	t.Helper()
	resp, err := http.Get(d.url() + "/debug/varz")
	if err != nil {
		t.Fatalf("derper varz: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatalf("derper has no metric %s", name)
	return 0
}

// derperRegion is the DERP map region "ext" of relay d, whose STUN is at
// stunPort (d's own, or a proxy's).
func derperRegion(d *derper, stunPort int) *tailcfg.DERPRegion {
	return &tailcfg.DERPRegion{
		RegionID: derperRegionID, RegionCode: "ext", RegionName: "External derper",
		Nodes: []*tailcfg.DERPNode{{
			Name: "900a", RegionID: derperRegionID, HostName: "127.0.0.1",
			IPv4: "127.0.0.1", IPv6: "none", DERPPort: d.port, STUNPort: stunPort,
		}},
	}
}

// writeDERPMap writes a Tailscale-format DERP map file.
func writeDERPMap(t *testing.T, regions ...*tailcfg.DERPRegion) string {
	t.Helper()
	m := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{}}
	for _, r := range regions {
		m.Regions[r.RegionID] = r
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "derpmap.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// connectionInfo fetches the relays that peers get from the server, by
// region code.
func connectionInfo(t *testing.T, srv *harness.Server, u *harness.User) map[string]*tailcfg.DERPRegion {
	t.Helper()
	code, body := api(t, "GET", srv.URL+"/api/v2/connection-info", u.Token(), nil)
	if code != http.StatusOK {
		t.Fatalf("connection-info: %d %s", code, body)
	}
	var info struct {
		DERPMap *tailcfg.DERPMap `json:"derp_map"`
	}
	if err := json.Unmarshal(body, &info); err != nil || info.DERPMap == nil {
		t.Fatalf("connection-info: %v\n%s", err, body)
	}
	byCode := map[string]*tailcfg.DERPRegion{}
	for _, r := range info.DERPMap.Regions {
		byCode[r.RegionCode] = r
	}
	return byCode
}

// udpDelay forwards UDP datagrams to target after a delay, and answers
// back to each sender (through a socket of its own per sender, as a NAT
// would). Sources seen while learning are "tagged", and each kind of source
// has its own delay: the tests use it to make a STUN server look near to
// some peers and far from others.
type udpDelay struct {
	t      *testing.T
	conn   *net.UDPConn
	target *net.UDPAddr

	delayTagged, delayOther atomic.Int64 // nanoseconds
	learning                atomic.Bool

	mu       sync.Mutex
	upstream map[netip.AddrPort]*net.UDPConn
	tagged   map[netip.AddrPort]bool
	closed   bool
	wg       sync.WaitGroup
}

func startUDPDelay(t *testing.T, target int) *udpDelay {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &udpDelay{t: t, conn: c, target: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: target},
		upstream: map[netip.AddrPort]*net.UDPConn{}, tagged: map[netip.AddrPort]bool{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *udpDelay) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

// setDelays sets the one-way delay added to requests from tagged and other
// sources.
func (p *udpDelay) setDelays(tagged, other time.Duration) {
	p.delayTagged.Store(int64(tagged))
	p.delayOther.Store(int64(other))
}

func (p *udpDelay) taggedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tagged)
}

func (p *udpDelay) serve() {
	defer p.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, src, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		pkt := append([]byte(nil), buf[:n]...)
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		up := p.upstream[src]
		if up == nil {
			if up, err = net.DialUDP("udp4", nil, p.target); err != nil {
				p.mu.Unlock()
				continue
			}
			p.upstream[src] = up
			if p.learning.Load() {
				p.tagged[src] = true
			}
			p.wg.Add(1)
			go p.answer(up, src)
		}
		delay := time.Duration(p.delayOther.Load())
		if p.tagged[src] {
			delay = time.Duration(p.delayTagged.Load())
		}
		p.wg.Add(1)
		p.mu.Unlock()
		time.AfterFunc(delay, func() {
			defer p.wg.Done()
			up.Write(pkt)
		})
	}
}

// answer sends what the target says back to src.
func (p *udpDelay) answer(up *net.UDPConn, src netip.AddrPort) {
	defer p.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, err := up.Read(buf)
		if err != nil {
			return
		}
		p.conn.WriteToUDPAddrPort(buf[:n], src)
	}
}

func (p *udpDelay) close() {
	p.mu.Lock()
	p.closed = true
	ups := p.upstream
	p.upstream = nil
	p.mu.Unlock()
	p.conn.Close()
	for _, up := range ups {
		up.Close()
	}
	p.wg.Wait()
}

// requireNginx returns nginx's path, or skips when it is missing, except in
// CI, whose script installs it.
func requireNginx(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err == nil {
		return bin
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("nginx is not installed; .ci/run should have installed it")
	}
	t.Skip("nginx is not installed (apt-get install nginx)")
	return ""
}

// nginxConf is a reverse proxy to the Tether server at backend. The
// location block is what README.md tells operators, or (refuseDERP) one
// that forwards an Upgrade header only when it says "websocket", as
// proxies set up for WebSocket alone do. Every request is logged with its
// Upgrade header and status, so tests can see what the proxy did.
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid {{prefix}}/nginx.pid;
error_log stderr warn;
events { worker_connections 512; }
http {
	client_body_temp_path {{prefix}}/body;
	proxy_temp_path {{prefix}}/proxy;
	fastcgi_temp_path {{prefix}}/fastcgi;
	uwsgi_temp_path {{prefix}}/uwsgi;
	scgi_temp_path {{prefix}}/scgi;
	log_format upgrades '$request_method $uri upgrade=$http_upgrade status=$status';
	access_log {{prefix}}/access.log upgrades;
	map $http_upgrade $ws_upgrade { ~*^websocket$ websocket; default ""; }
	map $ws_upgrade $ws_connection { websocket upgrade; default ""; }
	server {
		listen 127.0.0.1:{{port}}{{ssl}};
		{{tls}}
		location / {
			proxy_pass http://{{backend}};
			proxy_http_version 1.1;
			proxy_set_header Host $http_host;
			{{upgrade}}
			proxy_read_timeout 1h;
			proxy_buffering off;
		}
	}
}
`

// nginx is a running nginx.
type nginx struct {
	*harness.Proc
	port   int
	prefix string
}

type nginxOptions struct {
	refuseDERP        bool
	certFile, keyFile string // serve HTTPS with them
}

// startNginx runs nginx in the foreground with a config of its own, on a
// free loopback port, in front of backend (host:port).
func startNginx(t *testing.T, port int, backend string, o nginxOptions) *nginx {
	t.Helper()
	bin := requireNginx(t)
	prefix := t.TempDir()
	upgrade := "proxy_set_header Upgrade $http_upgrade;\n\t\t\tproxy_set_header Connection \"upgrade\";"
	if o.refuseDERP {
		upgrade = "proxy_set_header Upgrade $ws_upgrade;\n\t\t\tproxy_set_header Connection $ws_connection;"
	}
	ssl, tls := "", ""
	if o.certFile != "" {
		ssl = " ssl"
		tls = fmt.Sprintf("ssl_certificate %s;\n\t\tssl_certificate_key %s;", o.certFile, o.keyFile)
	}
	conf := strings.NewReplacer("{{prefix}}", prefix, "{{port}}", strconv.Itoa(port), "{{backend}}", backend,
		"{{upgrade}}", upgrade, "{{ssl}}", ssl, "{{tls}}", tls).Replace(nginxConf)
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	n := &nginx{port: port, prefix: prefix}
	n.Proc = harness.Start(t, "nginx", exec.Command(bin, "-p", prefix, "-c", confPath, "-e", "stderr"), nil)
	harness.WaitFor(t, harness.StartTimeout, "nginx to listen", func() bool {
		select {
		case <-n.Done():
			t.Fatalf("nginx exited: %v\n%s", n.Err(), n.Output())
		default:
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return n
}

// requests returns the access log's lines for path, as "upgrade=X status=N".
func (n *nginx) requests(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.prefix, "access.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 4 && f[1] == path {
			out = append(out, f[2]+" "+f[3])
		}
	}
	return out
}

// count returns how many of lines equal want.
func count(lines []string, want string) int {
	n := 0
	for _, l := range lines {
		if strings.EqualFold(l, want) {
			n++
		}
	}
	return n
}

// runServerToExit runs `tether server` expecting it to refuse to start, and
// returns its exit code and stderr.
func runServerToExit(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), harness.StartTimeout)
	defer cancel()
	all := append([]string{"server", "--http-address", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--derp-server-stun-addresses", "127.0.0.1:0"}, args...)
	cmd := here.Cmd(ctx, nil, all...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("tether server %s kept running; want it to refuse to start", strings.Join(args, " "))
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stderr.String()
}

// pingWhile runs `tether ping dev` with args in the background, waits for
// its first pong, runs check while it keeps pinging, then stops it and
// returns its pongs.
func pingWhile(t *testing.T, u *harness.User, check func(), args ...string) []pingLine {
	t.Helper()
	p := u.Start("ping", append([]string{"ping", "dev", "--output", "json", "-n", "600", "--interval", "100ms"}, args...)...)
	var lines []pingLine
	deadline := time.After(harness.CommandTimeout)
	for len(lines) == 0 {
		select {
		case l := <-p.Lines():
			var pl pingLine
			if err := json.Unmarshal([]byte(l), &pl); err != nil {
				t.Fatalf("ping line %q: %v", l, err)
			}
			if pl.Path != "timeout" {
				lines = append(lines, pl)
			}
		case <-p.Done():
			t.Fatalf("ping ended before a pong: %v\n%s", p.Err(), p.Output())
		case <-deadline:
			t.Fatalf("no pong within %s:\n%s", harness.CommandTimeout, p.Output())
		}
	}
	check()
	p.Kill()
	for {
		select {
		case l := <-p.Lines():
			var pl pingLine
			if json.Unmarshal([]byte(l), &pl) == nil {
				lines = append(lines, pl)
			}
		default:
			return lines
		}
	}
}
