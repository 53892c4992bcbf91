package tether

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"
)

// Header and cookie names that carry credentials. Users authenticate with a
// session token, agents with their workspace's agent token; both are bearer
// secrets that the server stores only hashed. "Authorization: Bearer TOKEN"
// works for either.
//
// Browsers carry the session in a cookie: SessionCookieSecure on https
// access URLs (the __Host- prefix makes browsers keep it host-only, Secure
// and on Path=/, so that no other host of the site can set or replace it),
// SessionCookie on plain http.
const (
	SessionTokenHeader  = "Tether-Session-Token"
	SessionCookie       = "tether_session"
	SessionCookieSecure = "__Host-tether_session"
	AgentTokenHeader    = "Tether-Agent-Token"
)

// CSRFHeader must accompany every state-changing request (any method but
// GET, HEAD and OPTIONS, and WebSocket upgrades) that the session cookie
// authenticates and that carries no Origin header of the access URL. A
// cross-site page cannot send it: browsers send custom headers across
// origins only after a CORS preflight, which the server never grants. The
// dashboard sends it with every request; requests with a session or agent
// token header need it not.
const CSRFHeader = "Tether-CSRF"

// Role is what a user may do. Admins manage users and see every workspace;
// members see only their own.
type Role string

const (
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleAdmin || r == RoleMember }

// UserStatus is whether a user may use Tether.
type UserStatus string

const (
	UserActive UserStatus = "active"
	// UserSuspended: an admin took the user's access away. Their sessions
	// were ended, their open connections closed, and they cannot sign in
	// until an admin makes them active again. Their workspaces stay.
	UserSuspended UserStatus = "suspended"
)

// Valid reports whether s is a known status.
func (s UserStatus) Valid() bool { return s == UserActive || s == UserSuspended }

// User is a person who signs in.
type User struct {
	ID        uuid.UUID  `json:"id"`
	Username  string     `json:"username"`
	Email     string     `json:"email"`
	Role      Role       `json:"role"`
	Status    UserStatus `json:"status"`
	CreatedAt time.Time  `json:"created_at"`
}

// FirstUserResponse is GET /api/v2/users/first: whether the deployment has
// been set up (a first admin exists).
type FirstUserResponse struct {
	Exists bool `json:"exists"`
}

// CreateFirstUserRequest creates the first admin of a new deployment. It is
// accepted only while there are no users.
type CreateFirstUserRequest struct {
	Username string `json:"username"`
	Email    string `json:"email"`
	Password string `json:"password"`
}

// CreateUserRequest is an admin adding a user.
type CreateUserRequest struct {
	Username string `json:"username"`
	Email    string `json:"email"`
	Password string `json:"password"`
	Role     Role   `json:"role"`
}

// UpdateUserStatusRequest suspends a user or makes them active again
// (PUT /api/v2/users/{user}/status, admins).
type UpdateUserStatusRequest struct {
	Status UserStatus `json:"status"`
}

// UpdateUserRoleRequest changes a user's role (PUT
// /api/v2/users/{user}/role, admins).
type UpdateUserRoleRequest struct {
	Role Role `json:"role"`
}

// UpdateUserPasswordRequest sets a user's password (PUT
// /api/v2/users/{user}/password). Users changing their own password (user
// "me") must give the current one in OldPassword; admins resetting another
// user's leave it empty. Every other session of the user ends.
type UpdateUserPasswordRequest struct {
	OldPassword string `json:"old_password,omitempty"`
	Password    string `json:"password"`
}

// EndSessionsResponse is DELETE /api/v2/users/{user}/sessions: how many
// sessions were signed out.
type EndSessionsResponse struct {
	Ended int `json:"ended"`
}

// DeleteUserResponse is DELETE /api/v2/users/{user}: the workspaces deleted
// with the user (only with ?delete_workspaces=true).
type DeleteUserResponse struct {
	DeletedWorkspaces []string `json:"deleted_workspaces"`
}

// APIToken is an API token for scripts and CI, as listed: never its
// secret, which only CreateAPITokenResponse carries, once. Tokens work in
// the Tether-Session-Token header or as "Authorization: Bearer", never as
// the dashboard's cookie, and only while their user is active.
type APIToken struct {
	ID        uuid.UUID `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// LastUsedAt is when the token last authenticated a request, to the
	// minute; nil if never.
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
}

// APITokenPrefix starts every API token, so that people (and secret
// scanners) can tell one from a session token at a glance.
const APITokenPrefix = "tether_token_"

// CreateAPITokenRequest creates an API token of the caller's (POST
// /api/v2/users/me/tokens). An empty Name gets one made up; a zero
// Lifetime gets the default (30 days, or the server's maximum if shorter).
type CreateAPITokenRequest struct {
	Name     string   `json:"name,omitempty"`
	Lifetime Duration `json:"lifetime,omitempty"`
}

// CreateAPITokenResponse carries the new token's secret, shown only this
// once.
type CreateAPITokenResponse struct {
	APIToken
	Token string `json:"token"`
}

// List endpoints (GET /api/v2/users, GET /api/v2/workspaces) answer one page
// at a time: at most ?limit= items (DefaultPageSize when absent, at most
// MaxPageSize), in a stable order. When more follow, the response has a
// header `Link: <?after=CURSOR&limit=N>; rel="next"`: a reference relative
// to the request's URL, whose after parameter continues the list. The
// cursor is opaque to clients.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// LoginRequest signs in with a username or an email address.
type LoginRequest struct {
	Login    string `json:"login"`
	Password string `json:"password"`
}

// LoginResponse carries a new session token. It is shown only once.
type LoginResponse struct {
	SessionToken string `json:"session_token"`
	User         User   `json:"user"`
}

// AppShare is who may open an app.
type AppShare string

const (
	ShareOwner         AppShare = "owner"         // the workspace's owner (and admins)
	ShareAuthenticated AppShare = "authenticated" // any signed-in user
	SharePublic        AppShare = "public"        // anyone, without signing in
)

// Valid reports whether s is a known sharing level.
func (s AppShare) Valid() bool {
	return s == ShareOwner || s == ShareAuthenticated || s == SharePublic
}

// Duration is a time.Duration written as a string such as "5s".
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 5s or 1m", b)
	}
	*d = Duration(v)
	return nil
}

// Healthcheck is how the agent checks that an app is up.
type Healthcheck struct {
	URL      string   `json:"url" yaml:"url"`
	Interval Duration `json:"interval,omitempty" yaml:"interval"`
	// Threshold is how many failures in a row make the app unhealthy.
	Threshold int `json:"threshold,omitempty" yaml:"threshold"`
}

// App is a web application that runs inside workspaces and that the server
// proxies for browsers.
type App struct {
	Name        string       `json:"name" yaml:"name"`
	URL         string       `json:"url" yaml:"url"`
	Subdomain   bool         `json:"subdomain" yaml:"subdomain"`
	Share       AppShare     `json:"share" yaml:"share"`
	Healthcheck *Healthcheck `json:"healthcheck,omitempty" yaml:"healthcheck"`
}

// Template describes a kind of workspace.
type Template struct {
	ID   uuid.UUID `json:"id"`
	Name string    `json:"name" yaml:"name"`
	// AgentURL, when set, is the URL that agents of this template's
	// workspaces use to reach the server instead of the access URL.
	AgentURL string `json:"agent_url,omitempty" yaml:"agent_url"`
	Apps     []App  `json:"apps" yaml:"apps"`
	// StartupScript, when set, is run by each workspace's agent once it
	// has connected, as the workspace's user in their home directory, and
	// killed after StartupScriptTimeout.
	StartupScript        string    `json:"startup_script,omitempty" yaml:"startup_script"`
	StartupScriptTimeout Duration  `json:"startup_script_timeout,omitempty" yaml:"startup_script_timeout"`
	CreatedAt            time.Time `json:"created_at"`
	UpdatedAt            time.Time `json:"updated_at"`
}

// PushTemplateRequest creates a template or replaces the one of that name.
type PushTemplateRequest struct {
	Name                 string   `json:"name" yaml:"name"`
	AgentURL             string   `json:"agent_url,omitempty" yaml:"agent_url"`
	Apps                 []App    `json:"apps" yaml:"apps"`
	StartupScript        string   `json:"startup_script,omitempty" yaml:"startup_script"`
	StartupScriptTimeout Duration `json:"startup_script_timeout,omitempty" yaml:"startup_script_timeout"`
}

// Limits of a template's startup script, and the timeout it gets when it
// names none.
const (
	MaxStartupScriptSize        = 64 << 10
	DefaultStartupScriptTimeout = Duration(30 * time.Minute)
	MaxStartupScriptTimeout     = Duration(24 * time.Hour)
	// MaxStartupScriptOutput is how much of a startup script's output,
	// its end, the agent reports and the server keeps; the agent's log
	// file in the workspace has all of it.
	MaxStartupScriptOutput = 16 << 10
)

// Startup script statuses.
const (
	StartupScriptRunning   = "running"
	StartupScriptSucceeded = "succeeded" // exited with status 0
	StartupScriptFailed    = "failed"    // exited otherwise, or could not start
	StartupScriptTimedOut  = "timed_out" // killed after its timeout
)

// StartupScriptStatus is how the last run of a workspace's startup script
// went, or goes: it is part of every Workspace whose agent ran one.
type StartupScriptStatus struct {
	Status string `json:"status"`
	// ExitCode is the script's exit status once it has exited; -1 when a
	// signal ended it or it could not start.
	ExitCode   *int       `json:"exit_code"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

// Valid reports whether the status is consistent: a known status, with an
// exit code and finish time once finished and none while running.
func (s StartupScriptStatus) Valid() bool {
	switch s.Status {
	case StartupScriptRunning:
		return s.ExitCode == nil && s.FinishedAt == nil
	case StartupScriptSucceeded:
		return s.ExitCode != nil && *s.ExitCode == 0 && s.FinishedAt != nil
	case StartupScriptFailed, StartupScriptTimedOut:
		return s.ExitCode != nil && s.FinishedAt != nil
	}
	return false
}

// StartupScriptResult is a startup script's status with the end of its
// output: what the agent reports (POST /api/v2/agent/startup-script) and
// what its owner reads (GET /api/v2/workspaces/{owner}/{name}/startup-script).
type StartupScriptResult struct {
	StartupScriptStatus
	// Output is the end of what the script wrote to stdout and stderr, at
	// most MaxStartupScriptOutput bytes; OutputTruncated says whether
	// earlier output was left out.
	Output          string `json:"output"`
	OutputTruncated bool   `json:"output_truncated"`
	// LogPath is the file in the workspace that holds all of the output.
	LogPath string `json:"log_path"`
}

// Agent statuses, as `tether list` shows them.
const (
	AgentConnected    = "connected"
	AgentDisconnected = "disconnected"
)

// Workspace is a place where a user works, reached through its agent.
type Workspace struct {
	ID       uuid.UUID `json:"id"`
	Name     string    `json:"name"`
	Owner    string    `json:"owner"`
	OwnerID  uuid.UUID `json:"owner_id"`
	Template string    `json:"template,omitempty"`
	// AgentStatus is AgentConnected while the agent holds its WebSocket.
	AgentStatus string `json:"agent_status"`
	// LastSeen is when the agent was last connected; nil if never.
	LastSeen *time.Time `json:"last_seen"`
	// AgentVersion and AgentIP describe the connected agent.
	AgentVersion string         `json:"agent_version,omitempty"`
	AgentIP      string         `json:"agent_ip"`
	Apps         []WorkspaceApp `json:"apps"`
	CreatedAt    time.Time      `json:"created_at"`
	// Connection is how the agent's active tunnels go; nil when it has
	// none (or is disconnected).
	Connection *WorkspaceConnection `json:"connection,omitempty"`
	// StartupScript is how the template's startup script went when the
	// agent last ran it; nil if it never did.
	StartupScript *StartupScriptStatus `json:"startup_script,omitempty"`
	// WebTerminals are the web terminals open on the workspace through
	// the server that answers, by path; nil when there are none.
	WebTerminals *WebTerminals `json:"web_terminals,omitempty"`
}

// WebTerminals counts a workspace's open web terminals by path: Direct
// (browser to agent over WebRTC) and Relayed (through the server).
type WebTerminals struct {
	Direct  int `json:"direct"`
	Relayed int `json:"relayed"`
}

// App health, as the agent's health checks find it.
const (
	AppHealthDisabled     = "disabled"     // the app has no health check
	AppHealthInitializing = "initializing" // no check has passed yet
	AppHealthHealthy      = "healthy"
	AppHealthUnhealthy    = "unhealthy" // Threshold checks in a row failed
)

// WorkspaceApp is an app of a workspace with its current health.
type WorkspaceApp struct {
	App
	Health string `json:"health"`
}

// AppHealthReport is an agent telling the server its apps' health, by name.
type AppHealthReport struct {
	Apps map[string]string `json:"apps"`
}

// CreateWorkspaceRequest asks for a new workspace of the caller's.
type CreateWorkspaceRequest struct {
	Name     string `json:"name"`
	Template string `json:"template,omitempty"`
}

// CreateWorkspaceResponse carries the agent token, shown only once, and the
// URL the agent must use (the template's agent URL, else the access URL).
type CreateWorkspaceResponse struct {
	Workspace  Workspace `json:"workspace"`
	AgentToken string    `json:"agent_token"`
	AgentURL   string    `json:"agent_url"`
	// InstallCommand is the one-liner that installs the agent in the
	// workspace and starts it: it fetches /install.sh from AgentURL and
	// runs it with the token in its environment. It holds the token.
	InstallCommand string `json:"install_command"`
}

// ConnectionInfo is what a peer needs before it joins the tunnel network.
type ConnectionInfo struct {
	DERPMap *tailcfg.DERPMap `json:"derp_map"`
	// DisableDirect means the deployment blocks direct connections: peers
	// must not publish endpoints, and all traffic goes through the
	// server's relays (its UDP relay, or DERP).
	DisableDirect bool `json:"disable_direct"`
	// DERPForceWebSockets means relays must be reached over WebSocket.
	DERPForceWebSockets bool `json:"derp_force_websockets"`
	// BrowserOnly means the server refuses CLI tunnels.
	BrowserOnly bool `json:"browser_only"`
}

// AgentManifest is what an agent learns about its workspace when it connects.
type AgentManifest struct {
	WorkspaceID   uuid.UUID      `json:"workspace_id"`
	WorkspaceName string         `json:"workspace_name"`
	Owner         string         `json:"owner"`
	Apps          []App          `json:"apps"`
	Connection    ConnectionInfo `json:"connection"`
	// StartupScript is the template's startup script ("" for none), to
	// run once connected, for at most StartupScriptTimeout.
	StartupScript        string   `json:"startup_script,omitempty"`
	StartupScriptTimeout Duration `json:"startup_script_timeout,omitempty"`
}

// ErrorResponse is the body of every API error.
type ErrorResponse struct {
	Message string `json:"message"`
	Detail  string `json:"detail,omitempty"`
	Code    string `json:"code,omitempty"`
}

// BuildInfo describes the server.
type BuildInfo struct {
	Version   string `json:"version"`
	AccessURL string `json:"access_url"`
	// WildcardAccessURL is the pattern of subdomain app hosts, such as
	// "*.apps.example.com"; empty when subdomain apps are off.
	WildcardAccessURL string `json:"wildcard_access_url,omitempty"`
	// PrimaryURL is set only by workspace proxies: the primary's access
	// URL, where users sign in and where the dashboard lives.
	PrimaryURL string `json:"primary_url,omitempty"`
}

var nameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]*[a-z0-9])?$`)

// MaxNameLength keeps names usable as DNS labels once combined into
// subdomain app hosts (APP--WS--USER).
const MaxNameLength = 20

// ReservedUsernames are words that the API gives a meaning in the place of
// a username (/api/v2/users/me, /api/v2/users/first, /api/v2/workspaces/me/…),
// so a user of that name could not be named. Nobody may take them.
var ReservedUsernames = []string{"me", "first", "login", "logout"}

// ValidateUsername checks a new username: a valid name (ValidateName) that
// is not reserved.
func ValidateUsername(name string) error {
	if err := ValidateName("user", name); err != nil {
		return err
	}
	for _, r := range ReservedUsernames {
		if name == r {
			return Errorf(EINVALID, "username %q is reserved: the API uses %q as a keyword (as in /api/v2/users/%s), so choose another", name, name, name)
		}
	}
	return nil
}

// ValidateName checks a user, workspace, template or app name: lowercase
// letters, digits and single hyphens, starting with a letter, so that it is
// safe in URLs, SSH host names and DNS labels. "--" is reserved as the
// separator of subdomain app hosts.
func ValidateName(kind, name string) error {
	switch {
	case name == "":
		return Errorf(EINVALID, "%s name is empty", kind)
	case len(name) > MaxNameLength:
		return Errorf(EINVALID, "%s name %q is longer than %d characters", kind, name, MaxNameLength)
	case !nameRE.MatchString(name):
		return Errorf(EINVALID, "%s name %q may use only lowercase letters, digits and hyphens, and must start with a letter and not end with a hyphen", kind, name)
	case strings.Contains(name, "--"):
		return Errorf(EINVALID, "%s name %q must not contain \"--\"", kind, name)
	}
	return nil
}

// Validate checks a template as pushed and fills in defaults: apps are
// shared with their owner unless said otherwise, health checks run every 5s
// and three failures make an app unhealthy.
func (t *PushTemplateRequest) Validate() error {
	if err := ValidateName("template", t.Name); err != nil {
		return err
	}
	if t.AgentURL != "" {
		if err := validateHTTPURL(t.AgentURL); err != nil {
			return Errorf(EINVALID, "template %s: agent_url: %v", t.Name, err)
		}
	}
	if err := t.validateStartupScript(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i := range t.Apps {
		a := &t.Apps[i]
		if err := ValidateName("app", a.Name); err != nil {
			return Errorf(EINVALID, "template %s: apps[%d]: %v", t.Name, i, err)
		}
		if seen[a.Name] {
			return Errorf(EINVALID, "template %s: app %q is listed twice", t.Name, a.Name)
		}
		seen[a.Name] = true
		if err := validateHTTPURL(a.URL); err != nil {
			return Errorf(EINVALID, "template %s: app %s: url: %v", t.Name, a.Name, err)
		}
		if a.Share == "" {
			a.Share = ShareOwner
		}
		if !a.Share.Valid() {
			return Errorf(EINVALID, "template %s: app %s: share %q must be owner, authenticated or public", t.Name, a.Name, a.Share)
		}
		if h := a.Healthcheck; h != nil {
			if err := validateHTTPURL(h.URL); err != nil {
				return Errorf(EINVALID, "template %s: app %s: healthcheck url: %v", t.Name, a.Name, err)
			}
			if h.Interval == 0 {
				h.Interval = Duration(5 * time.Second)
			}
			if h.Interval < Duration(time.Second) {
				return Errorf(EINVALID, "template %s: app %s: healthcheck interval %s is under 1s", t.Name, a.Name, time.Duration(h.Interval))
			}
			if h.Threshold == 0 {
				h.Threshold = 3
			}
			if h.Threshold < 0 {
				return Errorf(EINVALID, "template %s: app %s: healthcheck threshold must be positive", t.Name, a.Name)
			}
		}
	}
	return nil
}

// validateStartupScript checks the startup script and its timeout, which
// defaults to DefaultStartupScriptTimeout.
func (t *PushTemplateRequest) validateStartupScript() error {
	sc := t.StartupScript
	switch {
	case sc == "" && t.StartupScriptTimeout != 0:
		return Errorf(EINVALID, "template %s: startup_script_timeout without a startup_script", t.Name)
	case sc == "":
		return nil
	case len(sc) > MaxStartupScriptSize:
		return Errorf(EINVALID, "template %s: startup_script is %d bytes, more than the %d allowed: install a script in the workspace's image and call it", t.Name, len(sc), MaxStartupScriptSize)
	case !utf8.ValidString(sc) || strings.ContainsRune(sc, 0):
		return Errorf(EINVALID, "template %s: startup_script must be text (UTF-8, without NUL bytes)", t.Name)
	case strings.TrimSpace(sc) == "":
		return Errorf(EINVALID, "template %s: startup_script is blank: leave it out for none", t.Name)
	}
	if t.StartupScriptTimeout == 0 {
		t.StartupScriptTimeout = DefaultStartupScriptTimeout
	}
	if t.StartupScriptTimeout < Duration(time.Second) || t.StartupScriptTimeout > MaxStartupScriptTimeout {
		return Errorf(EINVALID, "template %s: startup_script_timeout %s must be from 1s to %s", t.Name, time.Duration(t.StartupScriptTimeout), time.Duration(MaxStartupScriptTimeout))
	}
	return nil
}

// validateHTTPURL checks an absolute http(s) URL with a host and, if it
// names one, a port from 1 to 65535 (an app on port 0 or 99999 could never
// be reached).
func validateHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL", s)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return fmt.Errorf("%q must be an http:// or https:// URL with a host", s)
	}
	if u.User != nil {
		return fmt.Errorf("%q must not carry a user name or password", s)
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("%q has port %q: a port must be a number from 1 to 65535", s, p)
		}
	}
	return nil
}

// Health severities, from best to worst.
const (
	SeverityOK      = "ok"
	SeverityWarning = "warning"
	SeverityError   = "error"
)

// HealthCheck is one part of the deployment's health. Message says what
// was found and, when it is not ok, what to do about it.
type HealthCheck struct {
	Name     string `json:"name"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
	Details  any    `json:"details,omitempty"`
}

// DERPRegionHealth is a round trip through one relay region.
type DERPRegionHealth struct {
	RegionID  int      `json:"region_id"`
	Code      string   `json:"code"`
	Name      string   `json:"name"`
	Severity  string   `json:"severity"`
	Message   string   `json:"message"`
	LatencyMS *float64 `json:"latency_ms,omitempty"`
}

// HealthReport is GET /api/v2/debug/health.
type HealthReport struct {
	Healthy     bool               `json:"healthy"`
	Severity    string             `json:"severity"`
	Checks      []HealthCheck      `json:"checks"`
	DERPRegions []DERPRegionHealth `json:"derp_regions"`
	CheckedAt   time.Time          `json:"checked_at"`
}

// Connection paths, as `tether list` and the dashboard show them, best
// first: straight between the peers; through the server's UDP relay; through
// a DERP relay.
const (
	PathDirect = "direct"
	PathRelay  = "relay"
	PathDERP   = "derp"
)

// WorkspaceConnection summarizes the tunnels the agent has with its
// clients right now: the best path any of them takes.
type WorkspaceConnection struct {
	Path       string `json:"path"`                  // PathDirect, PathRelay or PathDERP
	DERPRegion string `json:"derp_region,omitempty"` // the DERP relay's region code, with PathDERP
	// Endpoint is the peer's address ("IP:port") with PathDirect, the UDP
	// relay's with PathRelay.
	Endpoint string `json:"endpoint,omitempty"`
	Peers    int    `json:"peers"` // active tunnels
}

// AgentConnectionsReport is an agent telling the server about its active
// tunnels; nil Connection means none.
type AgentConnectionsReport struct {
	Connection *WorkspaceConnection `json:"connection"`
}

// TerminalInput is one message from a browser to the web terminal's
// WebSocket (/api/v2/workspaces/{owner}/{workspace}/pty?reconnect=SESSION),
// sent as a text message: Data is input as typed or pasted; a non-zero
// Height and Width resize the terminal, in rows and columns. The server
// answers with binary messages of the terminal's raw output, and closes
// with CloseAccessRevoked when the user loses access.
type TerminalInput struct {
	Data   *string `json:"data,omitempty"`
	Height uint16  `json:"height,omitempty"`
	Width  uint16  `json:"width,omitempty"`
	// Signal is WebRTC signalling for the direct path, which the server
	// forwards to the workspace's agent (after a TerminalEvent.Direct).
	Signal *TerminalSignal `json:"signal,omitempty"`
	// Relay stops the server's relay of the terminal (the browser has a
	// direct channel on the same session) or starts it again.
	Relay *TerminalRelay `json:"relay,omitempty"`
}

// TerminalEvent is a text message from the web terminal's WebSocket to the
// browser, between the binary messages of output. Exactly one field is
// set.
//
// The web terminal starts on the server's relay and moves to a direct
// WebRTC data channel to the agent when one comes up: the server offers
// it (Direct), the browser sends an offer and its ICE candidates (Signal),
// the agent answers through the server (Signal), and once the channel
// carries the session's output the browser asks the server to stop
// relaying (TerminalInput.Relay, answered by Relay "paused"). When the
// channel dies the browser asks for the relay again from the last byte it
// has. Output carries positions on both paths (Attached), so that the
// browser writes every byte once.
type TerminalEvent struct {
	// Attached says where the relayed output that follows starts.
	Attached *TerminalAttached `json:"attached,omitempty"`
	// Direct offers a direct path, with the ICE servers to use.
	Direct *TerminalDirect `json:"direct,omitempty"`
	// Signal is the agent's WebRTC signalling.
	Signal *TerminalSignal `json:"signal,omitempty"`
	// Relay is "paused" once the server relays no more output, and
	// "resumed" when it does again.
	Relay string `json:"relay,omitempty"`
}

// TerminalPosition is a point in a terminal session's output: the
// session's instance (a new one each time a session starts) and a byte
// offset from its first output.
type TerminalPosition struct {
	Instance string `json:"instance"`
	Offset   uint64 `json:"offset"`
}

// TerminalAttached says where the output that follows starts; Replay
// means it is the session's scrollback rather than a continuation (the
// browser resets its screen first).
type TerminalAttached struct {
	TerminalPosition
	Replay bool `json:"replay"`
}

// TerminalDirect offers the browser a direct path: ICEServers are the
// deployment's STUN servers as WebRTC URLs ("stun:HOST:PORT"), and none
// other.
type TerminalDirect struct {
	ICEServers []string `json:"ice_servers"`
}

// TerminalRelay asks the server to stop relaying (On false) or to relay
// again (On true) from Resume, the last byte the browser has.
type TerminalRelay struct {
	On     bool              `json:"on"`
	Resume *TerminalPosition `json:"resume,omitempty"`
}

// TerminalSignal is one WebRTC signalling message between the browser and
// the agent. Type is one of the SignalXxx constants.
type TerminalSignal struct {
	Type string `json:"type"`
	// SDP is an offer's or an answer's session description.
	SDP string `json:"sdp,omitempty"`
	// Candidate is an ICE candidate (RTCIceCandidateInit's fields).
	Candidate *ICECandidate `json:"candidate,omitempty"`
	// Message says why, for SignalError.
	Message string `json:"message,omitempty"`
}

// Signalling message types.
const (
	SignalOffer     = "offer"
	SignalAnswer    = "answer"
	SignalCandidate = "candidate"
	// SignalClose ends the direct path (the browser gave it up).
	SignalClose = "close"
	// SignalError says the direct path cannot be had (Message says why):
	// the terminal stays relayed.
	SignalError = "error"
)

// ICECandidate is an ICE candidate as WebRTC's RTCIceCandidateInit has it.
type ICECandidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdp_mid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdp_mline_index,omitempty"`
	UsernameFragment *string `json:"username_fragment,omitempty"`
}

// ProxyTokenHeader carries a workspace proxy's token (`tether wsproxy
// create` prints it) on the proxy's calls to the primary. It opens the
// proxy's own endpoints and nothing else: no user API.
const ProxyTokenHeader = "Tether-Proxy-Token"

// ProxyGrantHeader carries, on a workspace proxy's request to coordinate a
// tunnel to an agent, the hand-off tokens the proxy redeemed for that
// workspace (one per header value, at most MaxProxyGrantsShown): the
// primary introduces the proxy to the agent only while one of them still
// grants something (a live session's user may still open it, or a public
// app is still public).
const ProxyGrantHeader = "Tether-Proxy-Grant"

// MaxProxyGrantsShown bounds the grants a proxy shows on one request.
const MaxProxyGrantsShown = 16

// WorkspaceProxy is a registered workspace proxy as admins see it
// (`tether wsproxy ls`).
type WorkspaceProxy struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	Icon        string `json:"icon,omitempty"`
	// URL and WildcardURL are what the proxy said of itself at its last
	// heartbeat: empty until its first.
	URL         string `json:"url"`
	WildcardURL string `json:"wildcard_url,omitempty"`
	// RegionID is the DERP region of the proxy's relay.
	RegionID      int        `json:"region_id"`
	Healthy       bool       `json:"healthy"`
	Version       string     `json:"version"`
	LastHeartbeat *time.Time `json:"last_heartbeat"`
	CreatedAt     time.Time  `json:"created_at"`
}

// CreateWorkspaceProxyRequest registers a workspace proxy.
type CreateWorkspaceProxyRequest struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name,omitempty"`
	Icon        string `json:"icon,omitempty"`
}

// WorkspaceProxyTokenResponse carries a proxy's token, shown only once
// (at creation and at regenerate-token).
type WorkspaceProxyTokenResponse struct {
	Proxy WorkspaceProxy `json:"proxy"`
	Token string         `json:"proxy_token"`
}

// ProxyHeartbeatRequest is what a running proxy says of itself, at start
// and every few seconds after.
type ProxyHeartbeatRequest struct {
	AccessURL   string `json:"access_url"`
	WildcardURL string `json:"wildcard_url,omitempty"`
	Version     string `json:"version"`
	// STUNPort is its STUN server's UDP port on the access URL's host, 0
	// for none.
	STUNPort int `json:"stun_port"`
	// Sessions are the hashes of the primary's sessions under which the
	// proxy serves users now; the primary answers with those that ended.
	Sessions []string `json:"sessions,omitempty"`
}

// ProxyHeartbeatResponse is what the primary tells a proxy at each
// heartbeat: who it is, the relay map and mesh it joins, and the key that
// checks hand-off tokens.
type ProxyHeartbeatResponse struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	RegionID   int    `json:"region_id"`
	PrimaryURL string `json:"primary_url"`
	// HandoffKey is the Ed25519 public key that signs hand-off tokens.
	HandoffKey []byte `json:"handoff_key"`
	// MeshKey is the deployment's relay mesh key (64 hex characters).
	MeshKey string `json:"mesh_key"`
	// MeshPeers are the other relays of the deployment, which the
	// proxy's relay meshes with.
	MeshPeers []RelayPeer      `json:"mesh_peers"`
	DERPMap   *tailcfg.DERPMap `json:"derp_map"`
	// DisableDirect and DERPForceWebSockets are the deployment's network
	// policy, for the proxy's own tunnels.
	DisableDirect       bool `json:"disable_direct"`
	DERPForceWebSockets bool `json:"derp_force_websockets"`
	// BrowserDirect lets the proxy's web terminals go direct
	// (`tether server --browser-direct`).
	BrowserDirect bool `json:"browser_direct"`
	// EndedSessions are those of the request's Sessions that ended.
	EndedSessions []string `json:"ended_sessions,omitempty"`
}

// RelayPeer is another relay of the deployment.
type RelayPeer struct {
	ID  string `json:"id"`
	URL string `json:"url"`
}

// Region is a place that serves the web terminal and apps: the primary,
// or a healthy workspace proxy. The dashboard measures its latency to each
// (LatencyPath) and opens terminals and apps on the one chosen.
type Region struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	Icon        string `json:"icon,omitempty"`
	URL         string `json:"url"`
	// WildcardURL is the pattern of its subdomain app hosts, "" for none.
	WildcardURL string `json:"wildcard_url,omitempty"`
	Primary     bool   `json:"primary"`
	Healthy     bool   `json:"healthy"`
}

// LatencyPath answers at once, to any origin (CORS), on the primary and on
// every proxy: what the dashboard times.
const LatencyPath = "/api/v2/latency"

// NodeKeyKnown is a proxy's question to the primary whether a relay client's
// key belongs to a peer of the deployment.
type NodeKeyKnown struct {
	Known bool `json:"known"`
}

// WorkspaceProxyHealth is one workspace proxy in the health report's
// workspace_proxies check (its Details).
type WorkspaceProxyHealth struct {
	Name    string `json:"name"`
	URL     string `json:"url"`
	Version string `json:"version"`
	// Healthy: it heartbeat recently. Reachable: the primary reached it.
	Healthy   bool `json:"healthy"`
	Reachable bool `json:"reachable"`
	// MeshRTTMS is a packet's trip from the primary's relay to the
	// proxy's, through their mesh; null if it did not arrive.
	MeshRTTMS     *float64   `json:"mesh_rtt_ms"`
	LastHeartbeat *time.Time `json:"last_heartbeat"`
	Message       string     `json:"message"`
}
