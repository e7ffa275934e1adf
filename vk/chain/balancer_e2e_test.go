//go:build e2e

package chain_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

// balancer is a TCP balancer in front of interlink replicas, as a site puts
// one (haproxy in TCP mode, a cloud load balancer): each connection goes to
// the next backend in turn, and to the one after when a backend refuses it.
type balancer struct {
	ln       net.Listener
	backends []string
	next     atomic.Uint64
	conns    []atomic.Int64 // connections made, by backend
	wg       sync.WaitGroup
	mu       sync.Mutex
	open     map[net.Conn]struct{} // both sides of the relays running
}

func startBalancer(t testing.TB, backends ...string) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, backends: backends, conns: make([]atomic.Int64, len(backends)), open: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.serve()
	// Run before the stack's processes stop (cleanups run last first):
	// the relays' connections are closed, not waited for.
	t.Cleanup(func() {
		_ = ln.Close()
		b.mu.Lock()
		for c := range b.open {
			_ = c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *balancer) port() string {
	_, p, _ := net.SplitHostPort(b.ln.Addr().String())
	return p
}

func (b *balancer) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.relay(c)
		}()
	}
}

// track adds c to the open connections; the func it returns closes c and
// removes it.
func (b *balancer) track(c net.Conn) func() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.open[c] = struct{}{}
	return func() {
		b.mu.Lock()
		delete(b.open, c)
		b.mu.Unlock()
		_ = c.Close()
	}
}

// relay joins the client to the first backend, in turn, that accepts it.
func (b *balancer) relay(c net.Conn) {
	untrack := b.track(c)
	defer untrack()
	start := int(b.next.Add(1)) //nolint:gosec // a counter
	for i := range b.backends {
		k := (start + i) % len(b.backends)
		up, err := net.DialTimeout("tcp", b.backends[k], 2*time.Second)
		if err != nil {
			continue
		}
		b.conns[k].Add(1)
		b.join(c, up)
		return
	}
}

// join copies between the client c and the backend up until either ends.
func (b *balancer) join(c, up net.Conn) {
	untrack := b.track(up)
	defer untrack()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		close(done)
	}()
	_, _ = io.Copy(c, up)
	_ = up.Close()
	_ = c.Close()
	<-done
}

// TestTwoReplicas runs the fault suite's burst against two interlink
// replicas behind one balancer, and kills one of them mid-burst: the burst
// is split across both, and no pod is lost, duplicated or stuck. interlink
// keeps no state of its own, so either replica serves any pod.
func TestTwoReplicas(t *testing.T) {
	s := startStack(t, options{
		hydraTTL: tokenTTL.String(),
		simEnv: []string{"INTERLINK_SIM_PENDING_DELAY=" + faultPending.String(), "INTERLINK_SIM_RUN_DURATION=" + faultRun.String(),
			"INTERLINK_SIM_ORIGINAL_PLUGIN=true", "INTERLINK_SIM_ORIGINAL_PING=null"},
	})
	// A second replica: the same config on another port.
	second := &proc{e2eenv.StartProcess(t, s.dir+"/interlink-2.log", append(append([]string{}, s.il.Env...), "INTERLINKPORT="+e2eenv.FreePort(t)), s.il.Argv...)}
	port2 := second.Env[len(second.Env)-1][len("INTERLINKPORT="):]
	lb := startBalancer(t, "127.0.0.1:"+s.ilPort, "127.0.0.1:"+port2)
	// The VK now calls the balancer.
	s.vk.Stop(syscall.SIGTERM)
	s.vk.Env = append(s.vk.Env, "INTERLINKPORT="+lb.port())
	s.vk.Run(t)
	e2eenv.Eventually(t, "node Ready behind the balancer", 60*time.Second, func() error { return s.nodeReady("True") })

	var atKill [2]int64
	s.faultCase(t, "two-replicas", 0, func(t *testing.T, _ *tracker) {
		atKill = [2]int64{lb.conns[0].Load(), lb.conns[1].Load()}
		s.il.Stop(syscall.SIGKILL)
		select {
		case <-s.il.Exited():
		case <-time.After(10 * time.Second):
			t.Fatal(errors.New("the killed replica did not exit"))
		}
	})
	t.Logf("connections by replica when the first was killed: %v; at the end: [%d %d]", atKill, lb.conns[0].Load(), lb.conns[1].Load())
	if atKill[0] == 0 || atKill[1] == 0 {
		t.Errorf("the burst was not split: connections by replica %v before the kill", atKill)
	}
}
