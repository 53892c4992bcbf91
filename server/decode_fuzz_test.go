package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// apiBodies are the request types the API decodes with decodeJSON, each
// with a valid example.
var apiBodies = []struct {
	new     func() any
	example string
}{
	{func() any { return new(tether.CreateFirstUserRequest) }, `{"username":"alice","email":"alice@example.com","password":"correct horse battery"}`},
	{func() any { return new(tether.CreateUserRequest) }, `{"username":"dave","email":"dave@example.com","password":"correct horse battery","role":"member"}`},
	{func() any { return new(tether.LoginRequest) }, `{"login":"alice","password":"alice-password"}`},
	{func() any { return new(tether.PushTemplateRequest) }, `{"name":"python-dev","agent_url":"https://tether.internal.example.com","apps":[{"name":"web","url":"http://127.0.0.1:8080","subdomain":false,"share":"owner","healthcheck":{"url":"http://127.0.0.1:8080/healthz","interval":"5s"}}]}`},
	{func() any { return new(tether.CreateWorkspaceRequest) }, `{"name":"dev","template":"python-dev"}`},
	{func() any { return new(tether.AppHealthReport) }, `{"apps":{"web":"healthy","api":"unhealthy"}}`},
	{func() any { return new(tether.AgentConnectionsReport) }, `{"connection":{"path":"derp","derp_region":"tether","peers":2}}`},
}

// FuzzDecodeJSON decodes request bodies as every API handler does. A body
// that is accepted must have been JSON, and one JSON object with nothing
// after it; its value must survive an encode/decode round trip; and every
// refusal must be an API error that says in one line what was wrong.
func FuzzDecodeJSON(f *testing.F) {
	for i, b := range apiBodies {
		f.Add(uint8(i), "application/json", []byte(b.example))
		f.Add(uint8(i), "", []byte(b.example))
	}
	f.Add(uint8(3), "text/plain", []byte(`{"name":"x"}`))
	f.Add(uint8(3), "application/json; charset=utf-8", []byte(`{"name":"x","extra":1}`))
	f.Add(uint8(4), "", []byte(`{"name":"x"}}`))
	f.Add(uint8(4), "", []byte(`{"name":"x"} {"name":"y"}`))
	f.Add(uint8(4), "", []byte(`null`))
	f.Add(uint8(4), "", []byte(`{"name":1}`))
	f.Add(uint8(4), "", []byte(`{"name":"x"`))
	f.Add(uint8(4), "", []byte(``))

	f.Fuzz(func(t *testing.T, kind uint8, contentType string, body []byte) {
		typ := apiBodies[int(kind)%len(apiBodies)]
		v := typ.new()
		err := decodeBody(contentType, body, v)
		if err != nil {
			var te *tether.Error
			if !errors.As(err, &te) || (te.Code != tether.EINVALID && te.Code != tether.ETOOLARGE) {
				t.Fatalf("refusal is not an API error of the client's: %#v", err)
			}
			if te.Message == "" || strings.ContainsAny(te.Message, "\r\n") {
				t.Fatalf("refusal message %q is not one line", te.Message)
			}
			return
		}
		if contentType != "" && !strings.HasPrefix(contentType, "application/json") {
			t.Fatalf("accepted a body of Content-Type %q", contentType)
		}
		if !json.Valid(body) {
			t.Fatalf("accepted a body that is not one JSON value: %q", body)
		}
		if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
			t.Fatalf("accepted a body that is not a JSON object: %q", body)
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("accepted %T does not encode: %v", v, err)
		}
		again := typ.new()
		if err := decodeBody("application/json", out, again); err != nil {
			t.Fatalf("accepted %T, encoded again as %s, is refused: %v", v, out, err)
		}
		if !reflect.DeepEqual(v, again) {
			t.Fatalf("round trip changed the request:\n%#v\n%#v", v, again)
		}
		if tr, ok := v.(*tether.PushTemplateRequest); ok {
			if err := tr.Validate(); err == nil {
				checkValidTemplate(t, *tr)
			}
		}
	})
}

// decodeBody runs decodeJSON on a POST with the body and Content-Type.
func decodeBody(contentType string, body []byte, v any) error {
	r := httptest.NewRequest(http.MethodPost, "/api/v2/x", bytes.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return decodeJSON(httptest.NewRecorder(), r, v)
}

// checkValidTemplate checks a template that Validate accepted, by rules
// stated independently of it: what the server stores and agents use.
// Validating it again changes nothing.
func checkValidTemplate(t *testing.T, tr tether.PushTemplateRequest) {
	t.Helper()
	if err := tether.ValidateName("template", tr.Name); err != nil {
		t.Fatalf("accepted template name: %v", err)
	}
	urlOK := func(s string) bool {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil {
			return false
		}
		if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
			n, err := strconv.Atoi(p)
			return err == nil && n >= 1 && n <= 65535
		}
		return true
	}
	if tr.AgentURL != "" && !urlOK(tr.AgentURL) {
		t.Fatalf("accepted agent_url %q", tr.AgentURL)
	}
	names := map[string]bool{}
	for _, a := range tr.Apps {
		if tether.ValidateName("app", a.Name) != nil || names[a.Name] || !urlOK(a.URL) || !a.Share.Valid() {
			t.Fatalf("accepted app %+v", a)
		}
		names[a.Name] = true
		if h := a.Healthcheck; h != nil && (!urlOK(h.URL) || time.Duration(h.Interval) < time.Second || h.Threshold < 1) {
			t.Fatalf("accepted health check %+v", h)
		}
	}
	again := tr
	again.Apps = slices.Clone(tr.Apps)
	for i := range again.Apps {
		if h := again.Apps[i].Healthcheck; h != nil {
			c := *h
			again.Apps[i].Healthcheck = &c
		}
	}
	if err := again.Validate(); err != nil || !reflect.DeepEqual(again, tr) {
		t.Fatalf("validating an accepted template again: %v\n%+v\n%+v", err, tr, again)
	}
}

// apiRoutes are the API's routes that read a body, with who calls them.
var apiRoutes = []struct {
	method, path string
	body         int    // index in apiBodies
	as           string // "admin", "member", "agent" or "" (nobody)
}{
	{"POST", "/api/v2/users/first", 0, ""},
	{"POST", "/api/v2/users", 1, "admin"},
	{"POST", "/api/v2/users/login", 2, ""},
	{"POST", "/api/v2/templates", 3, "admin"},
	{"POST", "/api/v2/workspaces", 4, "member"},
	{"POST", "/api/v2/agent/app-health", 5, "agent"},
	{"POST", "/api/v2/agent/connections", 6, "agent"},
}

// FuzzAPIBodies sends bodies to the real handlers of a server with a real
// store, as their callers would. Whatever the body, the answer is the
// client's error (4xx) in the API's JSON error shape with a one-line
// message, or a success; never a server error. A template the server
// accepts is stored as valid.
func FuzzAPIBodies(f *testing.F) {
	for i, r := range apiRoutes {
		f.Add(uint8(i), "application/json", []byte(apiBodies[r.body].example))
	}
	f.Add(uint8(3), "application/json", []byte(`{"name":"py","apps":[{"name":"web","url":"http://127.0.0.1:0"}]}`))
	f.Add(uint8(4), "", []byte(`{"name":"`+strings.Repeat("a", 30)+`"}`))
	f.Add(uint8(5), "application/json", []byte(`{"apps":{"web":"on fire"}}`))
	f.Add(uint8(6), "application/json", []byte(`{"connection":{"path":"carrier pigeon","peers":-1}}`))

	fx := newFixture(f, fixtureOptions{})
	tokens := map[string]http.Header{
		"admin":  {tether.SessionTokenHeader: {fx.session(fx.admin, time.Hour)}},
		"member": {tether.SessionTokenHeader: {fx.session(fx.owner, time.Hour)}},
		"agent":  {tether.AgentTokenHeader: {fx.agentToken}},
		"":       {},
	}
	handler := fx.s.Handler()

	f.Fuzz(func(t *testing.T, route uint8, contentType string, body []byte) {
		rt := apiRoutes[int(route)%len(apiRoutes)]
		r := httptest.NewRequest(rt.method, rt.path, bytes.NewReader(body))
		r.Host = accessHost
		for k, vs := range tokens[rt.as] {
			r.Header[k] = vs
		}
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		status, resp := w.Code, w.Body.Bytes()
		if status >= 500 {
			t.Fatalf("%s %s %q: %d %s", rt.method, rt.path, body, status, resp)
		}
		if status >= 400 {
			var e tether.ErrorResponse
			if err := json.Unmarshal(resp, &e); err != nil || e.Message == "" || e.Code == "" || strings.ContainsAny(e.Message, "\r\n") {
				t.Fatalf("%s %s: error %d is not one line of the API's JSON error: %s", rt.method, rt.path, status, resp)
			}
			return
		}
		if rt.path == "/api/v2/templates" {
			var st store.Template
			if err := json.Unmarshal(resp, &st); err != nil {
				t.Fatalf("template response %s: %v", resp, err)
			}
			checkValidTemplate(t, tether.PushTemplateRequest{Name: st.Name, AgentURL: st.AgentURL, Apps: st.Apps})
		}
	})
}
