package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// The dashboard lists every workspace, however many pages the API takes
// (100 a page by default).
func TestBrowserListsEveryPage(t *testing.T) {
	b := newBrowser(t)
	srv := startServer(t, "--max-workspaces-per-user", "0")
	u := admin(t, srv)
	const n = 105
	for i := range n {
		body := strings.NewReader(fmt.Sprintf(`{"name":"w%03d"}`, i))
		if code, b := api(t, "POST", srv.url+"/api/v2/workspaces", u.token(), body, "Content-Type", "application/json"); code != http.StatusCreated {
			t.Fatalf("create w%03d: %d %s", i, code, b)
		}
	}
	p := b.tab("alice")
	p.signIn(srv.url, "alice", "correct-horse")
	p.waitText("every workspace's row", `String(document.querySelectorAll("tr.ws-row").length)`,
		func(s string) bool { return s == strconv.Itoa(n) })
	p.waitText("the last workspace's row", statusBadge(fmt.Sprintf("alice/w%03d", n-1)), func(s string) bool { return s != "" })
}
