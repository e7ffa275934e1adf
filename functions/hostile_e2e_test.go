//go:build e2e

package functions_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-3f807049/interlink/functions/api"

	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

// hostileMaxBody is interlink's body cap in this test.
const hostileMaxBody = 1 << 20

// rssMB reads a process's resident memory from /proc.
func rssMB(t *testing.T, pid int) float64 {
	t.Helper()
	mb, err := readRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return mb
}

// readRSS is rssMB for goroutines other than the test's.
func readRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// TestE2EHostileInput attacks interlink (its embedded proxy on, a static
// token) over loopback: oversized bodies, deeply nested JSON, slow clients
// (slowloris), and 1,000 concurrent clients for 30 s mixing good and bad
// requests. Every bad request must get a 4xx, nothing a 5xx, and interlink's
// memory must stay bounded.
func TestE2EHostileInput(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "sim.sock")
	start(t, "interlink-sim", []string{"INTERLINK_SIM_LISTEN=unix://" + sock, "INTERLINK_LOG_LEVEL=error"})
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(e2eToken+",vk-e2e\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := e2eenv.FreePort(t)
	il := start(t, "interlink", []string{"SIDECARURL=unix://" + sock, "INTERLINKPORT=" + port, "ERRORSONLYLOGGING=true",
		"INTERLINK_AUTH_STATIC_TOKENS_FILE=" + tokens, "INTERLINK_MAX_BODY_BYTES=" + strconv.Itoa(hostileMaxBody)})
	url := "http://127.0.0.1:" + port
	waitFor(t, "interlink up", func() error {
		if code, body := call(t, http.MethodPost, url+api.PathPing, nil, false); code != 200 {
			return fmt.Errorf("ping: %d %s", code, body)
		}
		return nil
	})
	pid := il.PID()
	idle := rssMB(t, pid)

	validPod := `{"metadata":{"name":"p","namespace":"ns","uid":"5f0c4b3e-2a1d-4c8e-9b7a-1e2f3a4b5c6d"},"spec":{"containers":[{"name":"m","image":"busybox"}]}}`
	bad := []struct {
		name, method, path string
		body               []byte
		token              string
		want               int
	}{
		{"oversized create", http.MethodPost, api.PathCreate, append([]byte(`{"pod":`+validPod+`,"jobscriptURL":"`), bytes.Repeat([]byte("x"), 2*hostileMaxBody)...), e2eToken, 413},
		{"oversized status", http.MethodPost, api.PathStatus, append([]byte("["), bytes.Repeat([]byte(validPod+","), 2*hostileMaxBody/len(validPod))...), e2eToken, 413},
		{"deeply nested array", http.MethodPost, api.PathStatus, append(bytes.Repeat([]byte("["), 200000), bytes.Repeat([]byte("]"), 200000)...), e2eToken, 400},
		{"deeply nested object", http.MethodPost, api.PathCreate, []byte(`{"pod":` + strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000) + "}"), e2eToken, 400},
		{"truncated JSON", http.MethodPost, api.PathCreate, []byte(`{"pod":{"metadata":`), e2eToken, 400},
		{"wrong types", http.MethodPost, api.PathStatus, []byte(`{"not":"a list"}`), e2eToken, 400},
		{"pod without uid", http.MethodPost, api.PathStatus, []byte(`[{"metadata":{"name":"a"}}]`), e2eToken, 400},
		{"no token", http.MethodPost, api.PathStatus, []byte(`[]`), "", 401},
		{"wrong token", http.MethodPost, api.PathStatus, []byte(`[]`), "not-the-token-0123456789", 401},
		{"oversized without a token", http.MethodPost, api.PathCreate, bytes.Repeat([]byte("x"), 2*hostileMaxBody), "", 401},
		{"wrong method", http.MethodPut, api.PathStatus, []byte(`[]`), e2eToken, 405},
		{"unknown path", http.MethodPost, "/nope", []byte(`[]`), e2eToken, 404},
	}
	send := func(c *http.Client, method, path string, body []byte, token string) (int, error) {
		req, _ := http.NewRequest(method, url+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	t.Run("BadRequestsAre4xx", func(t *testing.T) {
		for _, b := range bad {
			send := send
			if strings.HasPrefix(b.name, "oversized") {
				// The server refuses an oversized body before reading it
				// all and closes: an HTTP client still writing can see
				// the reset instead of the reply. This one stops writing
				// past the limit and reads the reply.
				send = func(_ *http.Client, method, path string, body []byte, token string) (int, error) {
					return sendOversized(url, method, path, body, token)
				}
			}
			code, err := send(http.DefaultClient, b.method, b.path, b.body, b.token)
			if err != nil || code != b.want {
				t.Errorf("%s: %d %v, want %d", b.name, code, err, b.want)
			}
		}
	})

	t.Run("Slowloris", func(t *testing.T) {
		// 200 connections that send their headers one byte a second.
		const slow = 200
		var conns []net.Conn
		for range slow {
			c, err := net.Dial("tcp", "127.0.0.1:"+port)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			_, _ = io.WriteString(c, "POST /status HTTP/1.1\r\nHost: x\r\n")
		}
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		closed := make(chan time.Duration, slow)
		start := time.Now()
		for _, c := range conns {
			go func(c net.Conn) {
				// Trickle header bytes until the server hangs up.
				r := bufio.NewReader(c)
				go func() { _, _ = r.ReadByte(); closed <- time.Since(start); _ = c.Close() }()
				for range 60 {
					if _, err := io.WriteString(c, "X"); err != nil {
						return
					}
					time.Sleep(time.Second)
				}
			}(c)
		}
		// Meanwhile good clients are served at once.
		for range 20 {
			t0 := time.Now()
			code, err := send(http.DefaultClient, http.MethodPost, api.PathPing, nil, e2eToken)
			if err != nil || code != 200 || time.Since(t0) > time.Second {
				t.Errorf("a good request during the slowloris: %d %v in %s", code, err, time.Since(t0))
			}
			time.Sleep(200 * time.Millisecond)
		}
		// The server cuts each slow client once its header timeout (10 s) passes.
		var last time.Duration
		for range slow {
			select {
			case d := <-closed:
				last = max(last, d)
			case <-time.After(30 * time.Second):
				t.Fatalf("slow clients still connected after %s", time.Since(start))
			}
		}
		t.Logf("%d slow clients all cut by the server within %s", slow, last.Round(100*time.Millisecond))
	})

	t.Run("Concurrent1000For30s", func(t *testing.T) {
		const clients, duration = 1000, 30 * time.Second
		tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: 0, IdleConnTimeout: time.Minute}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 60 * time.Second}
		type req struct {
			name, method, path string
			body               []byte
			token              string
			want               int
		}
		mix := []req{
			{"ping", http.MethodPost, api.PathPing, nil, e2eToken, 200},
			{"status", http.MethodPost, api.PathStatus, []byte("[" + validPod + "]"), e2eToken, 200},
			{"empty status", http.MethodPost, api.PathStatus, []byte("[]"), e2eToken, 200},
		}
		for _, b := range bad {
			if !strings.HasPrefix(b.name, "oversized") && !strings.HasPrefix(b.name, "deeply") {
				mix = append(mix, req{b.name, b.method, b.path, b.body, b.token, b.want})
			}
		}
		var ok, refused, wrong, fiveXX, transport atomic.Int64
		var mu sync.Mutex
		wrongSeen := map[string]int{}
		stop := time.Now().Add(duration)
		// The sampler hands its peak over when done closes (it must not
		// share peak with this goroutine while it runs, nor fail the test
		// from its own goroutine: a process that died shows as a 0 MB peak
		// and the ping below).
		done, peakc := make(chan struct{}), make(chan float64)
		go func() {
			var peak float64
			for {
				select {
				case <-done:
					peakc <- peak
					return
				case <-time.After(500 * time.Millisecond):
					if r, err := readRSS(pid); err == nil && r > peak {
						peak = r
					}
				}
			}
		}()
		var wg sync.WaitGroup
		for i := range clients {
			wg.Go(func() {
				for j := i; time.Now().Before(stop); j++ {
					r := mix[j%len(mix)]
					code, err := send(c, r.method, r.path, r.body, r.token)
					switch {
					case err != nil:
						transport.Add(1)
					case code >= 500:
						fiveXX.Add(1)
					case code == r.want && code < 300:
						ok.Add(1)
					case code == r.want:
						refused.Add(1)
					default:
						wrong.Add(1)
						mu.Lock()
						wrongSeen[fmt.Sprintf("%s: %d", r.name, code)]++
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		close(done)
		peak := <-peakc
		total := ok.Load() + refused.Load() + wrong.Load() + fiveXX.Load() + transport.Load()
		t.Logf("%d clients for %s: %d requests (%.0f/s), %d good answered 2xx, %d bad answered their 4xx, %d wrong, %d 5xx, %d transport errors; interlink RSS %.0f MB idle, peak %.0f MB",
			clients, duration, total, float64(total)/duration.Seconds(), ok.Load(), refused.Load(), wrong.Load(), fiveXX.Load(), transport.Load(), idle, peak)
		if fiveXX.Load() != 0 || wrong.Load() != 0 || transport.Load() != 0 {
			t.Errorf("%d 5xx, %d wrong codes %v, %d transport errors: want none", fiveXX.Load(), wrong.Load(), wrongSeen, transport.Load())
		}
		if ok.Load() == 0 || refused.Load() == 0 {
			t.Error("no request was answered")
		}
		// Bounded: no more than 512 MB for 1,000 connections (a few
		// hundred KB each at most), and back near idle afterwards.
		if peak > 512 {
			t.Errorf("interlink peaked at %.0f MB with %d clients", peak, clients)
		}
		if code, _ := send(http.DefaultClient, http.MethodPost, api.PathPing, nil, e2eToken); code != 200 {
			t.Errorf("after the load: ping %d", code)
		}
	})
}

// sendOversized sends a request whose body is larger than interlink takes:
// it declares the whole length, writes a little more than hostileMaxBody,
// then reads the reply (which comes before the rest of the body).
func sendOversized(base, method, path string, body []byte, token string) (int, error) {
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	host := strings.TrimPrefix(base, "http://")
	var head bytes.Buffer
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", method, path, host, len(body))
	if token != "" {
		fmt.Fprintf(&head, "Authorization: Bearer %s\r\n", token)
	}
	head.WriteString("\r\n")
	if _, err := c.Write(head.Bytes()); err != nil {
		return 0, err
	}
	// A server that refuses without reading (401) may close while this
	// writes: the reply is read all the same.
	part := body[:min(len(body), hostileMaxBody+64<<10)]
	_, werr := c.Write(part)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, errors.Join(err, werr)
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
