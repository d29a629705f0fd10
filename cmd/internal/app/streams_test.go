package app_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
)

// 200 dashboards open at once all get the pushes (one build shared by all), a change reaches
// every one of them, and streams beyond MaxStreams are refused with 503 instead of piling up.
func TestManyDashboardStreams(t *testing.T) {
	e := start(t, app.DefaultConfig(), app.Options{})
	hs := httptest.NewServer(e.app.Handler())
	defer func() { hs.CloseClientConnections(); hs.Close() }()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	const n = 200
	var mu sync.Mutex
	sawAdd := 0
	var wg sync.WaitGroup
	open := make(chan struct{}, n)
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", hs.URL+"/api/stream", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("stream: %v %v", err, resp)
				return
			}
			defer resp.Body.Close()
			open <- struct{}{}
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 1<<20), 1<<22)
			for sc.Scan() {
				if strings.Contains(sc.Text(), `"shadows":1`) {
					mu.Lock()
					sawAdd++
					mu.Unlock()
					return
				}
			}
		})
	}
	for range n {
		select {
		case <-open:
		case <-time.After(20 * time.Second):
			t.Fatal("not every stream opened")
		}
	}
	id := e.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{"many"}}})["shadowId"].(string)
	e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.LifecycleState == domain.LifecycleLive })
	waitFor(t, "every stream sees the add", 20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return sawAdd == n })

	// Fill every slot, then one more is refused.
	var held []*http.Response
	for range app.MaxStreams + 1 {
		req, _ := http.NewRequestWithContext(ctx, "GET", hs.URL+"/api/stream", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, resp)
		if resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
	}
	last := held[len(held)-1]
	if last.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("%d streams open and the last one got %d, want 503", len(held), last.StatusCode)
	}
	for _, r := range held {
		r.Body.Close()
	}
	wg.Wait()
}
