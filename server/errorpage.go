package server

import (
	"html/template"
	"net/http"

	"github.com/tetherdev/tether"
)

// A browser that navigates to something the server refuses (an app the
// user may not open, an app whose agent is away, an expired app sign-in
// link) gets the error as a small page that people can read, rather than
// the API's JSON. API clients, the dashboard's own fetches and WebSockets
// do not ask for HTML and keep getting JSON.

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{{.Title}} — Tether</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; margin: 0; display: grid; place-items: center; min-height: 100vh; background: Canvas; color: CanvasText; }
main { max-width: 36rem; padding: 2rem; }
h1 { font-size: 1.4rem; margin: 0 0 .5rem; }
.detail { opacity: .75; font-size: .9rem; }
</style>
</head>
<body>
<main class="error-page" data-status="{{.Status}}" data-code="{{.Code}}">
<h1>{{.Title}}</h1>
<p class="message">{{.Message}}</p>
{{if .Detail}}<p class="detail">{{.Detail}}</p>{{end}}
<p><a href="{{.Home}}">Go to your workspaces</a></p>
</main>
</body>
</html>
`))

// writeErrorPage writes resp as an HTML page with the given status.
func (s *Server) writeErrorPage(w http.ResponseWriter, status int, resp tether.ErrorResponse) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	// The page runs no script and loads nothing; its one style is inline.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_ = errorPage.Execute(w, struct {
		Title, Message, Detail, Code, Home string
		Status                             int
	}{
		Title:   http.StatusText(status),
		Message: capitalize(resp.Message),
		Detail:  resp.Detail,
		Code:    resp.Code,
		Home:    s.accessURL.String() + "/",
		Status:  status,
	})
}

// capitalize starts a sentence: error messages are written to follow
// other text ("tether: ..."), a page shows them alone.
func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
