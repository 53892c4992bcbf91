// Package tether holds the domain and wire types shared by every part of
// Tether: the server, the agent, the CLI and the tunnel. It is a leaf: it
// imports nothing of the project's own and only small, stable packages from
// elsewhere, so that a client never links server code by accident.
//
// Three groups of types live here:
//
//   - the REST API's requests and responses (api.go),
//   - the coordination protocol that introduces peers to one another
//     (coordinate.go), with its version history,
//   - the errors that callers must tell apart (error.go).
package tether
