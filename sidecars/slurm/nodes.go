package slurm

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/seed-3f807049/interlink/functions/api"
)

// A running pod's IP is the address of the node running its job's batch
// script: its NodeAddr as sinfo tells it, resolved to an IP. A node whose
// address is a loopback one is this host, reported by its own address.

// nodeIPTTL is how long a node's IP is kept before sinfo is asked again.
const nodeIPTTL = 5 * time.Minute

// nodeIPs caches the IPs of nodes, by node name.
type nodeIPs struct {
	mu sync.Mutex
	m  map[string]nodeIP
}

type nodeIP struct {
	ip string // "" when it could not be found
	at time.Time
}

// podIPs fills in the IP of every node in states that runs a job, asking
// sinfo once for the nodes not cached. A failure leaves those pods without
// an IP this poll: an IP is never guessed.
func (s *Sidecar) podIPs(ctx context.Context, states map[string]jobState) map[string]string {
	now := time.Now()
	want := map[string]bool{}
	for _, js := range states {
		if js.Node != "" {
			want[js.Node] = true
		}
	}
	out := make(map[string]string, len(want))
	var missing []string
	s.nodes.mu.Lock()
	for n := range want {
		if c, ok := s.nodes.m[n]; ok && now.Sub(c.at) < nodeIPTTL {
			out[n] = c.ip
		} else {
			missing = append(missing, n)
		}
	}
	s.nodes.mu.Unlock()
	if len(missing) == 0 {
		return out
	}
	addrs, err := s.nodeAddresses(ctx, missing)
	if err != nil {
		s.log.Warn("node addresses: pods on those nodes have no IP this poll", "nodes", len(missing), "err", err)
		return out
	}
	s.nodes.mu.Lock()
	defer s.nodes.mu.Unlock()
	if s.nodes.m == nil {
		s.nodes.m = map[string]nodeIP{}
	}
	for _, n := range missing {
		ip := resolveIP(ctx, addrs[n])
		s.nodes.m[n] = nodeIP{ip: ip, at: now}
		out[n] = ip
	}
	return out
}

// nodeAddresses asks sinfo the NodeAddr of nodes (their name when sinfo
// gives none).
func (s *Sidecar) nodeAddresses(ctx context.Context, nodes []string) (map[string]string, error) {
	info, err := s.cmd.runCapped(ctx, 8<<20, s.cfg.SinfoPath, "--json", "--nodes="+strings.Join(nodes, ","))
	if err != nil {
		return nil, api.Unavailable("sinfo of nodes %s: %w", strings.Join(nodes, ","), err)
	}
	var reply struct {
		Nodes []struct {
			Name    string `json:"name"`
			Address string `json:"address"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(info, &reply); err != nil {
		return nil, api.Unavailable("sinfo --json of nodes %s: %w", strings.Join(nodes, ","), err)
	}
	out := make(map[string]string, len(nodes))
	for _, n := range nodes {
		out[n] = n
	}
	for _, n := range reply.Nodes {
		if _, ok := out[n.Name]; ok && n.Address != "" {
			out[n.Name] = n.Address
		}
	}
	return out, nil
}

// resolveIP turns a node address into an IP: as is when it is one, else
// its first IPv4 address (else first) in DNS, within 2 s. A loopback
// address means this host: its own address stands for it.
func resolveIP(ctx context.Context, addr string) string {
	ip := net.ParseIP(addr)
	if ip == nil && addr != "" {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		ips, err := net.DefaultResolver.LookupIPAddr(ctx, addr)
		if err != nil || len(ips) == 0 {
			return ""
		}
		ip = ips[0].IP
		for _, a := range ips {
			if a.IP.To4() != nil {
				ip = a.IP
				break
			}
		}
	}
	if ip == nil {
		return ""
	}
	if ip.IsLoopback() {
		ip = hostIP()
	}
	if ip == nil || ip.IsUnspecified() {
		return ""
	}
	return ip.String()
}

// hostIP is this host's first global unicast address (IPv4 first), or nil.
func hostIP() net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var v6 net.IP
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || !n.IP.IsGlobalUnicast() {
			continue
		}
		if n.IP.To4() != nil {
			return n.IP
		}
		if v6 == nil {
			v6 = n.IP
		}
	}
	return v6
}
