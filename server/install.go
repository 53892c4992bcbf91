package server

import (
	"bytes"
	_ "embed"
	"net"
	"net/http"
	"net/url"
	"strings"
	"text/template"
)

// The install script (install.sh) installs and starts an agent from the
// server it came from. That server's URL is written into the script as it
// is served, since a script piped into sh does not know where it came
// from. Which URL: workspaces reach the server at the access URL, or at
// their template's agent_url, an internal name say, which may be all they
// can reach. The one-liner for a workspace fetches the script from the URL
// its agent uses (InstallCommand), so the script is written for the known
// URL whose host the request came to: the access URL's, else a template's
// agent_url's, else the access URL. A URL from the request itself (its
// Host, a query parameter) is never written in: a link to this server
// could otherwise hand out a script that installs someone else's binary.

//go:embed install.sh
var installScriptText string

var installScript = template.Must(template.New("install.sh").Parse(installScriptText))

// InstallCommand is the one-liner that installs and starts the agent of a
// workspace whose agent uses agentURL, with its token in the environment
// of the shell that runs the script (not on any command line ps shows).
func InstallCommand(agentURL, token string) string {
	return "curl -fsSL " + shellQuote(strings.TrimSuffix(agentURL, "/")+"/install.sh") +
		" | TETHER_AGENT_TOKEN=" + shellQuote(token) + " sh"
}

// shellQuote returns s as one word of POSIX sh: as it is when it holds
// nothing special, else in single quotes.
func shellQuote(s string) string {
	safe := s != ""
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_./:@%+=,", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// getInstallScript serves GET /install.sh.
func (s *Server) getInstallScript(w http.ResponseWriter, r *http.Request) error {
	base, err := s.installURL(r)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	// The URL goes inside single quotes in the script.
	if err := installScript.Execute(&buf, struct{ URL string }{strings.ReplaceAll(base, "'", `'\''`)}); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/x-shellscript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(buf.Bytes())
	return nil
}

// installURL picks the known URL (see above) that the request came to,
// without a trailing slash.
func (s *Server) installURL(r *http.Request) (string, error) {
	known := []string{s.accessURL.String()}
	if !sameHost(s.accessURL, r.Host) {
		ts, err := s.store.ListTemplates(r.Context())
		if err != nil {
			return "", err
		}
		for _, t := range ts {
			if u, err := url.Parse(t.AgentURL); err == nil && t.AgentURL != "" && sameHost(u, r.Host) {
				known = []string{t.AgentURL}
				break
			}
		}
	}
	return strings.TrimSuffix(known[0], "/"), nil
}

// sameHost reports whether host (a request's Host: name and perhaps port)
// is u's, taking a missing port for the default one of u's scheme.
func sameHost(u *url.URL, host string) bool {
	defaultPort := "80"
	if u.Scheme == "https" {
		defaultPort = "443"
	}
	split := func(h string) (string, string) {
		name, port, err := net.SplitHostPort(h)
		if err != nil {
			return strings.Trim(h, "[]"), defaultPort
		}
		return name, port
	}
	un, up := split(u.Host)
	hn, hp := split(host)
	return strings.EqualFold(un, hn) && up == hp
}
