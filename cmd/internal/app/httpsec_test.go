package app_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
)

func TestHTTPListenerNeedsATokenOffLoopback(t *testing.T) {
	for _, tc := range []struct {
		name string
		http app.HTTPConfig
		want string // "" = valid
	}{
		{"loopback v4", app.HTTPConfig{Listen: "127.0.0.1:8080"}, ""},
		{"loopback v6", app.HTTPConfig{Listen: "[::1]:8080"}, ""},
		{"localhost", app.HTTPConfig{Listen: "localhost:8080"}, ""},
		{"all interfaces", app.HTTPConfig{Listen: "0.0.0.0:8080"}, "not a loopback address"},
		{"empty host", app.HTTPConfig{Listen: ":8080"}, "set http.token"},
		{"a LAN address", app.HTTPConfig{Listen: "10.1.2.3:8080"}, "SHADOWBRIDGE_HTTP_TOKEN"},
		{"token", app.HTTPConfig{Listen: "0.0.0.0:8080", Token: "0123456789abcdef0123"}, ""},
		{"short token", app.HTTPConfig{Listen: "0.0.0.0:8080", Token: "short"}, "at least 16"},
		{"explicitly insecure", app.HTTPConfig{Listen: "0.0.0.0:8080", Insecure: true}, ""},
		{"bad address", app.HTTPConfig{Listen: "8080"}, "want host:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := app.DefaultConfig()
			cfg.HTTP = tc.http
			err := cfg.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
			if err != nil && tc.http.Token != "" && strings.Contains(err.Error(), tc.http.Token) {
				t.Fatal("the error shows the token")
			}
		})
	}
}

func TestHTTPTokenAndSecurityHeaders(t *testing.T) {
	const token = "s3cret-token-0123456789"
	for _, openMetrics := range []bool{false, true} {
		cfg := app.DefaultConfig()
		cfg.HTTP = app.HTTPConfig{Listen: "0.0.0.0:0", Token: token, OpenMetrics: openMetrics}
		e := start(t, cfg, app.Options{NoDispatcher: true})
		id := e.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{"secure"}}})["shadowId"].(string)
		e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.ShadowID == id })
		srv := httptest.NewServer(e.app.Handler())
		noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		do := func(path, auth string, cookie *http.Cookie) *http.Response {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			if cookie != nil {
				req.AddCookie(cookie)
			}
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		}
		metricsOpen := http.StatusUnauthorized
		if openMetrics {
			metricsOpen = http.StatusOK
		}
		for _, c := range []struct {
			path, auth string
			want       int
		}{
			{"/healthz", "", 200},
			{"/readyz", "", 200},
			{"/metrics", "", metricsOpen},
			{"/metrics", "Bearer " + token, 200},
			{"/", "", 401},
			{"/api/dashboard", "", 401},
			{"/api/pending", "Bearer wrong-token-0123456789", 401},
			{"/api/shadow/" + id, "Basic " + token, 401},
			{"/api/shadow/" + id, "Bearer " + token, 200},
			{"/static/dashboard.js", "", 401},
			{"/", "Bearer " + token, 200},
		} {
			resp := do(c.path, c.auth, nil)
			if resp.StatusCode == http.StatusServiceUnavailable && c.path == "/readyz" {
				continue // readiness depends on the projection; the point is that it is not 401
			}
			if resp.StatusCode != c.want {
				t.Errorf("openMetrics=%v GET %s (%q): %d, want %d", openMetrics, c.path, c.auth, resp.StatusCode, c.want)
			}
			h := resp.Header
			if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" {
				t.Errorf("GET %s: security headers missing: %v", c.path, h)
			}
		}
		// The browser's way in: ?token= once sets an HttpOnly cookie and drops the token from the URL.
		if resp := do("/?token=wrong", "", nil); resp.StatusCode != 401 {
			t.Errorf("wrong ?token=: %d", resp.StatusCode)
		}
		resp := do("/shadow/"+id+"?token="+token, "", nil)
		var cookie *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == "shadowbridge_token" {
				cookie = c
			}
		}
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/shadow/"+id || cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
			t.Fatalf("?token=: %d Location %q cookie %+v", resp.StatusCode, resp.Header.Get("Location"), cookie)
		}
		if resp := do("/api/shadow/"+id, "", cookie); resp.StatusCode != 200 {
			t.Errorf("with the cookie: %d", resp.StatusCode)
		}
		// The cookie holds no token: neither the token in a cookie nor the cookie's value as a
		// bearer token opens anything.
		if strings.Contains(cookie.Value, token) || cookie.Secure {
			t.Errorf("cookie %+v holds the token, or is Secure over plain HTTP", cookie)
		}
		if resp := do("/api/shadow/"+id, "", &http.Cookie{Name: "shadowbridge_token", Value: token}); resp.StatusCode != 401 {
			t.Errorf("the raw token as the cookie: %d, want 401", resp.StatusCode)
		}
		if resp := do("/api/shadow/"+id, "Bearer "+cookie.Value, nil); resp.StatusCode != 401 {
			t.Errorf("the cookie's value as a bearer token: %d, want 401", resp.StatusCode)
		}
		srv.Close()
	}
	// Served over TLS, the cookie is Secure.
	cfg := app.DefaultConfig()
	cfg.HTTP = app.HTTPConfig{Listen: "0.0.0.0:0", Token: token}
	e := start(t, cfg, app.Options{NoDispatcher: true})
	srv := httptest.NewTLSServer(e.app.Handler())
	defer srv.Close()
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Get(srv.URL + "/?token=" + token)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cs := resp.Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Fatalf("over TLS: cookies %+v, want one Secure", cs)
	}
}
