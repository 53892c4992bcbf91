// Package e2e holds Tether's end-to-end tests: the real tether binary,
// built once per run, as a server, agents and CLIs in processes of their
// own, driven the way users and operators drive them through
// internal/harness. It has no code outside its tests.
//
// The files are grouped by what they cover:
//
//   - controlplane_*: signing in, users, templates, workspaces and their
//     agents (installed with the one-liner, and their startup scripts),
//     the health report, the server's doors against bad input, what
//     operators watch (metrics, pprof, /healthz, JSON logs)
//   - tunnel_*: ssh, port-forward, ping, speedtest, and what sessions do
//     when an agent or the server goes away
//   - lab_*: the same across NATs, in network namespaces (root and
//     TETHER_NATLAB=1, which .ci/run sets) (lab_browser_test.go: the web
//     terminal direct from Chromium behind one NAT to an agent behind
//     another, and relayed when UDP between them is blocked or the agent
//     is behind a hard NAT)
//   - relay_*: DERP maps and external relays, nginx in front, STUN, who
//     the relay serves
//   - browser_*: the dashboard, the web terminal, apps and cross-site
//     requests in headless Chromium (browser_direct_test.go: the terminal
//     direct over WebRTC, its fallback to the relay when a UDP port is
//     cut with nft as root, and who may signal)
//   - replicas_*: the server on PostgreSQL, alone and as replicas
//     (TETHER_TEST_POSTGRES_URL)
//   - wsproxy_*: workspace proxies: the admin commands, the hand-off from
//     the primary, the terminal and apps through a proxy, its token
//     refused a tunnel without a grant, its region and health, a CLI and
//     an agent on different home regions (wsproxy_mesh_test.go)
//     (browser_wsproxy_test.go: the dashboard's choice by latency, and the
//     fallback to the primary when the proxy dies)
//
// Helpers only these tests need live in *_harness_test.go: Chromium
// (browser), natlab hosts (lab), derper and nginx (relay), and the
// build of the binary (harness_test.go).
package e2e
