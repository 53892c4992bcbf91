package tether

import "net/netip"

// The shapes of `--output json`, one type per command that prints data,
// so that scripts (and the README's table) have one definition to rely
// on. Commands that print API objects print them as the API sends them:
//
//	tether list               []Workspace
//	tether users list         []User
//	tether templates list     []Template
//
// Units are in the field names (latency_ms, duration_s), never implied.
// Paths use the names of WorkspaceConnection: PathDirect with Endpoint, or
// PathDERP with DERPRegion.

// CreateWorkspaceOutput is `tether create NAME --output json`. The agent
// token is shown only this once.
type CreateWorkspaceOutput struct {
	Name       string `json:"name"`
	Owner      string `json:"owner"`
	AgentToken string `json:"agent_token"`
	// AgentURL is the URL the agent must use: the template's agent URL,
	// else the access URL.
	AgentURL string `json:"agent_url"`
	// AgentCommand runs the agent inside the workspace.
	AgentCommand string `json:"agent_command"`
}

// Paths a ping or speed test reports besides PathDirect and PathDERP.
const (
	// PathTimeout: no pong came back within the ping's timeout.
	PathTimeout = "timeout"
	// PathUnknown: the speed test's first ping got no pong, so the path
	// it started on is not known.
	PathUnknown = "unknown"
)

// PingOutput is one line of `tether ping --output json`, one per ping.
type PingOutput struct {
	// Seq counts the pings from 1.
	Seq int `json:"seq"`
	// Path is PathDirect, PathDERP or PathTimeout.
	Path string `json:"path"`
	// Endpoint is the agent's address ("IP:port") when Path is direct.
	Endpoint string `json:"endpoint,omitempty"`
	// DERPRegion is the relay's region code when Path is derp.
	DERPRegion string `json:"derp_region,omitempty"`
	// LatencyMS is the round trip in milliseconds; 0 on a timeout.
	LatencyMS float64 `json:"latency_ms"`
}

// SpeedtestOutput is `tether speedtest WS --output json`. Throughput is in
// bytes per second (divide by 1e6 for MB/s, multiply by 8e-6 for Mbit/s).
type SpeedtestOutput struct {
	// Direction is "down" (workspace to you) or "up".
	Direction string `json:"direction"`
	// Path is the path of a ping just before the test: PathDirect with
	// Endpoint, PathDERP with DERPRegion, or PathUnknown. A test that
	// starts relayed may go direct during the first second.
	Path       string `json:"path"`
	Endpoint   string `json:"endpoint,omitempty"`
	DERPRegion string `json:"derp_region,omitempty"`
	// Bytes arrived within the measured window of DurationS seconds.
	Bytes               int64   `json:"bytes"`
	DurationS           float64 `json:"duration_s"`
	ThroughputBytesPerS float64 `json:"throughput_bytes_per_s"`
	// Intervals divide the window, in order (one a second).
	Intervals []SpeedtestInterval `json:"intervals"`
}

// SpeedtestInterval is part of a speed test's window, from StartS to EndS
// seconds after its start.
type SpeedtestInterval struct {
	StartS              float64 `json:"start_s"`
	EndS                float64 `json:"end_s"`
	Bytes               int64   `json:"bytes"`
	ThroughputBytesPerS float64 `json:"throughput_bytes_per_s"`
}

// NetcheckOutput is `tether netcheck --output json`.
type NetcheckOutput struct {
	// UDP is true when a STUN server answered.
	UDP  bool `json:"udp"`
	IPv4 bool `json:"ipv4"`
	IPv6 bool `json:"ipv6"`
	// GlobalV4 and GlobalV6 are this side's addresses ("IP:port") as STUN
	// saw them; empty when none did.
	GlobalV4 string `json:"global_v4"`
	GlobalV6 string `json:"global_v6"`
	// MappingVariesByDestIP is "true" behind a hard NAT (a new public
	// port per destination), "false" behind an easy one or none, and ""
	// when unknown (it takes two STUN servers at different addresses).
	MappingVariesByDestIP string `json:"mapping_varies_by_dest_ip"`
	// PreferredDERP is the code of the home relay region ("none" while
	// there is none).
	PreferredDERP string `json:"preferred_derp"`
	// DERPLatencyMS is the latency to each region that answered, in
	// milliseconds, by region code.
	DERPLatencyMS map[string]float64 `json:"derp_latency_ms"`
	// Endpoints are the UDP addresses this side would publish to peers.
	Endpoints []netip.AddrPort `json:"endpoints"`
	// DirectBlocked: the server blocks direct connections.
	DirectBlocked bool `json:"direct_blocked"`
	// STUNConfigured: the deployment names STUN servers at all.
	STUNConfigured bool `json:"stun_configured"`
}

// VersionOutput is `tether version --output json`: what the binary was
// built from, as far as its build info tells.
type VersionOutput struct {
	// Version is the release version, or "dev" for a build that is not one.
	Version string `json:"version"`
	// Commit is the VCS revision built, "" when built outside a checkout
	// (or with -buildvcs=false).
	Commit string `json:"commit"`
	// CommitTime is the commit's time (RFC 3339); a reproducible build
	// records no other. "" with no commit.
	CommitTime string `json:"commit_time"`
	// Modified: the checkout had uncommitted changes.
	Modified  bool   `json:"modified"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}
