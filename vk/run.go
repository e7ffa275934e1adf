package vk

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/certificate"
	"k8s.io/client-go/util/workqueue"

	"github.com/seed-3f807049/interlink/functions/client"
	"github.com/seed-3f807049/interlink/observability/metrics"
	"github.com/seed-3f807049/interlink/observability/server"
	"github.com/seed-3f807049/interlink/vk/services"
)

// Run registers the virtual node and serves it until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	rc, err := restConfig(cfg.Kubeconfig)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = cfg.KubeAPIQPS, cfg.KubeAPIBurst
	rc.UserAgent = "interlink-vk/" + cfg.NodeName
	// Every request is counted (interlink_vk_apiserver_requests_total).
	apiRequests := newAPIRequests()
	rc.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return &countingTransport{next: next, count: func(method, resource string) { apiRequests.WithLabelValues(method, resource).Inc() }}
	})
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	cc, cleanup, err := interlinkClientConfig(&cfg)
	if err != nil {
		return err
	}
	defer cleanup()
	il, err := client.New(cc)
	if err != nil {
		return err
	}
	tlsCfg, err := servingTLS(ctx, cs, &cfg, log)
	if err != nil {
		return err
	}
	auth, err := kubeletAuth(ctx, cs, &cfg, log)
	if err != nil {
		return err
	}
	taints, err := cfg.Taints()
	if err != nil {
		return err
	}
	events, eb := warningEvents(cs, cfg.NodeName, log.With("component", "events"))
	defer eb.Shutdown()
	reg := metrics.New("interlink-vk")
	m := newVKMetrics(reg, cfg.VKTokenFile, apiRequests)
	var prov *Provider
	var podInf, svcInf cache.SharedIndexInformer
	np := &nodeProvider{il: il, client: cs, interval: cfg.PingInterval.Duration, log: log.With("component", "node"), baseTaints: taints}
	mux := http.NewServeMux()
	n, err := nodeutil.NewNode(cfg.NodeName,
		func(pc nodeutil.ProviderConfig) (nodeutil.Provider, node.NodeProvider, error) {
			if err := nodeSpec(&cfg, pc.Node); err != nil {
				return nil, nil, err
			}
			np.node = pc.Node.DeepCopy()
			var podNet *net.IPNet
			if cfg.PodCIDR.Subnet != "" {
				_, podNet, _ = net.ParseCIDR(cfg.PodCIDR.Subnet) // validated with the config
			}
			prov = newProvider(providerConfig{podNet: podNet, maxStreams: cfg.StreamMaxConcurrent,
				il: il, client: cs, nodeName: cfg.NodeName, hostIP: cfg.NodeAddress, interval: cfg.StatusInterval.Duration,
				log: log.With("component", "pods"),
				data: &dataSource{client: cs, configMaps: pc.ConfigMaps, secrets: pc.Secrets, wait: cfg.DataWait.Duration,
					kubeconfig: &kubeconfigSource{client: cs, rest: podsRestConfig(rc, &cfg), serviceAccount: cfg.ServiceAccount, namespace: cfg.Namespace,
						customPath: cfg.CustomKubeconfig, ttlSeconds: int64(cfg.KubeconfigTokenTTL.Seconds())},
					pods: pc.Pods, kubeAPIHost: cfg.KubernetesAPIAddr, kubeAPIPort: cfg.KubernetesAPIPort, kubeRootCA: cfg.KubernetesAPICaCrt,
					noProjected: cfg.DisableProjectedVolumes, jobScriptURL: cfg.JobScriptBuilderURL},
				podLister: pc.Pods, exposeServices: cfg.Services.Enabled,
			}, m)
			return prov, np, nil
		},
		nodeutil.WithClient(cs),
		nodeutil.AttachProviderRoutes(mux),
		// The pod controller's queues default to client-go's controller rate
		// limiter: 10 items/s overall (burst 100), so a node took at most 10
		// new pods a second. Only failures back off here; the API client's
		// QPS bounds the writes.
		nodeutil.WithPodControllerConfigOverrides(func(pc *node.PodControllerConfig) error {
			// The informers keep no managed fields (about a third of a pod
			// object, never read here): at 10,000 pods that is tens of MB.
			// A status update without them leaves the server's as they are.
			pods := pc.PodInformer.Informer()
			if err := pods.SetTransform(podTransform(pods.GetStore())); err != nil {
				return fmt.Errorf("informer transform: %w", err)
			}
			for _, inf := range []cache.SharedIndexInformer{pc.SecretInformer.Informer(),
				pc.ConfigMapInformer.Informer(), pc.ServiceInformer.Informer()} {
				if err := inf.SetTransform(stripManagedFields); err != nil {
					return fmt.Errorf("informer transform: %w", err)
				}
			}
			podInf, svcInf = pc.PodInformer.Informer(), pc.ServiceInformer.Informer()
			pc.SyncPodsFromKubernetesRateLimiter = queueLimiter(cfg)
			pc.SyncPodStatusFromProviderRateLimiter = queueLimiter(cfg)
			pc.DeletePodsFromKubernetesRateLimiter = queueLimiter(cfg)
			return nil
		}),
		func(nc *nodeutil.NodeConfig) error {
			nc.HTTPListenAddr = net.JoinHostPort(cfg.KubeletAddress, cfg.KubeletPort)
			nc.TLSConfig = tlsCfg
			nc.Handler = nodeutil.WithAuth(auth, mux)
			nc.NumWorkers = cfg.Workers
			nc.InformerResyncPeriod = 10 * time.Minute
			nc.EventRecorder = events
			return nil
		},
	)
	if err != nil {
		return fmt.Errorf("virtual node: %w", err)
	}
	registerPodMetrics(reg, prov)
	np.writeFailed = m.writeErrors.Inc
	np.ready = func(ok bool) {
		if ok {
			m.nodeReady.Set(1)
		} else {
			m.nodeReady.Set(0)
		}
	}
	// The VK's own metrics, on the kubelet API: authenticated and authorized
	// (nodes/metrics) like a kubelet's.
	mux.Handle("/metrics", metrics.Handler(reg))
	// Go's profiles, as a kubelet serves them: behind the same
	// authentication and authorization as the rest of the kubelet API.
	mux.Handle("/debug/pprof/", server.Pprof())
	log.Info("starting virtual node", "node", cfg.NodeName, "interlink", cfg.InterlinkEndpoint(), "kubelet_port", cfg.KubeletPort)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return np.Run(gctx) })
	g.Go(func() error { return prov.RunStatus(gctx) })
	if cfg.Services.Enabled {
		sc, err := services.New(services.Config{NodeName: cfg.NodeName, Address: cfg.ServiceAddress(), Listen: cfg.Services.ListenAddress,
			Client: cs, Pods: podInf, Services: svcInf, Forwarder: prov, Log: log.With("component", "services"), Registerer: reg})
		if err != nil {
			return err
		}
		log.Info("service endpoints on", "address", cfg.ServiceAddress())
		g.Go(func() error { return sc.Run(gctx) })
	}
	if cfg.Pprof.Enabled {
		addr, err := cfg.Pprof.Listen(DefaultPprofPort) // validated with the config
		if err != nil {
			return err
		}
		g.Go(func() error { return servePprof(gctx, addr, log) })
	}
	g.Go(func() error {
		if err := n.Run(gctx); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("virtual node: %w", err)
		}
		return nil
	})
	err = g.Wait()
	if ctx.Err() != nil {
		// A graceful stop (SIGTERM), not a failure: remove the node.
		if derr := deleteNodeAtShutdown(ctx, cs, &cfg, log); derr != nil {
			log.Warn("could not delete the node at shutdown", "err", derr)
		}
	}
	return err
}

// csrSigner is the signer of the kubelet-serving CSR.
func (c *Config) csrSigner() string {
	if c.KubeletCSRSignerName != "" {
		return c.KubeletCSRSignerName
	}
	return certificatesv1.KubeletServingSignerName
}

// interlinkClientConfig maps our keys and the original's TLS and HTTP
// blocks onto the client's config. The original reads HTTP.CaCert as DER:
// such a file is handed to the client as a PEM copy, removed by cleanup.
func interlinkClientConfig(cfg *Config) (cc client.Config, cleanup func(), err error) {
	cc = client.Config{URL: cfg.InterlinkEndpoint(), TokenFile: cfg.VKTokenFile, CAFile: cfg.InterlinkCAFile}
	cleanup = func() {}
	if cc.CAFile == "" {
		cc.CAFile = cfg.interlinkCAFromOriginal()
	}
	if cfg.TLS.Enabled {
		cc.CertFile, cc.KeyFile = cfg.TLS.CertFile, cfg.TLS.KeyFile
	}
	if cc.CAFile == "" {
		return cc, cleanup, nil
	}
	b, err := os.ReadFile(cc.CAFile)
	if err != nil {
		return cc, cleanup, fmt.Errorf("read interLink CA: %w", err)
	}
	if blk, _ := pem.Decode(b); blk != nil {
		return cc, cleanup, nil
	}
	if _, err := x509.ParseCertificate(b); err != nil {
		return cc, cleanup, fmt.Errorf("interLink CA %s is neither PEM nor a DER certificate: %w", cc.CAFile, err)
	}
	f, err := os.CreateTemp("", "interlink-ca-*.pem")
	if err != nil {
		return cc, cleanup, fmt.Errorf("interLink CA: %w", err)
	}
	werr := pem.Encode(f, &pem.Block{Type: "CERTIFICATE", Bytes: b})
	if err := errors.Join(werr, f.Close()); err != nil {
		_ = os.Remove(f.Name())
		return cc, cleanup, fmt.Errorf("interLink CA: %w", err)
	}
	cc.CAFile = f.Name()
	return cc, func() { _ = os.Remove(f.Name()) }, nil
}

// podsRestConfig is where the kubeconfig delivered to pods points: the API
// server as the VK reaches it, or KubernetesApiAddr:KubernetesApiPort (and
// KubernetesApiCaCrt) as the remote side reaches it.
func podsRestConfig(rc *rest.Config, cfg *Config) *rest.Config {
	if cfg.KubernetesAPIAddr == "" || cfg.KubernetesAPIPort == "" {
		return rc
	}
	out := rest.CopyConfig(rc)
	out.Host = "https://" + net.JoinHostPort(cfg.KubernetesAPIAddr, cfg.KubernetesAPIPort)
	if cfg.KubernetesAPICaCrt != "" {
		out.CAData, out.CAFile = []byte(cfg.KubernetesAPICaCrt), ""
	}
	return out
}

// servePprof serves Go's profiles without authentication (the original's
// Pprof block) until ctx ends.
func servePprof(ctx context.Context, addr string, log *slog.Logger) error {
	log.Info("serving profiles", "address", addr)
	return server.Run(ctx, server.Config{Listen: addr}, server.Pprof(), log.With("server", "pprof"))
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no Kubeconfig set and not in a cluster: %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return rc, nil
}

// servingTLS returns the kubelet API's TLS config: a certificate from files,
// from the CSR API (renewed before expiry by client-go's certificate
// manager), or self-signed (which an API server checking kubelet
// certificates refuses). Client certificates are requested and checked by
// the authenticator.
func servingTLS(ctx context.Context, cs kubernetes.Interface, cfg *Config, log *slog.Logger) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}
	switch cfg.certMode() {
	case CertModeFiles:
		// Reloaded when the files change (a renewed certificate).
		reloader, err := server.NewCertReloader(cfg.KubeletCertFile, cfg.KubeletKeyFile, log)
		if err != nil {
			return nil, fmt.Errorf("kubelet serving certificate: %w", err)
		}
		tc.GetCertificate = reloader.GetCertificate
	case CertModeCSR:
		mgr, err := csrManager(ctx, cs, cfg)
		if err != nil {
			return nil, err
		}
		mgr.Start()
		log.Info("kubelet serving certificate requested through the CSR API; it must be approved", "signer", cfg.csrSigner())
		tc.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := mgr.Current(); c != nil {
				return c, nil
			}
			return nil, errors.New("kubelet serving certificate not issued yet: approve the node's kubelet-serving CSR")
		}
	default:
		cert, err := selfSigned(cfg.NodeName, cfg.NodeAddress)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// csrManager asks the kubelet-serving signer for the node's certificate and
// renews it before it expires, keeping key and certificates in KubeletCertDir.
func csrManager(ctx context.Context, cs kubernetes.Interface, cfg *Config) (certificate.Manager, error) {
	if err := os.MkdirAll(cfg.KubeletCertDir, 0o700); err != nil {
		return nil, fmt.Errorf("KubeletCertDir: %w", err)
	}
	store, err := certificate.NewFileStore("kubelet-server", cfg.KubeletCertDir, cfg.KubeletCertDir, "", "")
	if err != nil {
		return nil, fmt.Errorf("certificate store: %w", err)
	}
	mgr, err := certificate.NewManager(&certificate.Config{
		ClientsetFn: func(*tls.Certificate) (kubernetes.Interface, error) { return cs, nil },
		GetTemplate: func() *x509.CertificateRequest {
			return &x509.CertificateRequest{
				Subject:     pkix.Name{CommonName: "system:node:" + cfg.NodeName, Organization: []string{"system:nodes"}},
				DNSNames:    []string{cfg.NodeName},
				IPAddresses: []net.IP{net.ParseIP(cfg.NodeAddress)},
			}
		},
		SignerName:       cfg.csrSigner(),
		Usages:           []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		CertificateStore: store,
		Name:             "kubelet-serving",
		Ctx:              &ctx,
	})
	if err != nil {
		return nil, fmt.Errorf("certificate manager: %w", err)
	}
	return mgr, nil
}

func selfSigned(name, ip string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{name}, IPAddresses: []net.IP{net.ParseIP(ip)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// kubeletAuth authenticates every kubelet API request (client certificates
// signed by ClientCAFile or the CA of ClientCAConfigMap, or bearer tokens
// through TokenReview) and authorizes it with SubjectAccessReview, as a
// real kubelet does. A ConfigMap CA is watched until ctx ends.
func kubeletAuth(ctx context.Context, cs kubernetes.Interface, cfg *Config, log *slog.Logger) (nodeutil.Auth, error) {
	var ca dynamiccertificates.CAContentProvider
	switch ns, name, key, err := cfg.clientCAConfigMap(); {
	case err != nil:
		return nil, err
	case cfg.ClientCAFile != "":
		file, err := dynamiccertificates.NewDynamicCAContentFromFile("client-ca", cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("kubelet client CA: %w", err)
		}
		ca = file
	case name != "":
		// A CA that cannot be read (no permission, no such ConfigMap) leaves
		// bearer tokens only, as when none is configured.
		if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			log.Warn("the kubelet API accepts bearer tokens only (kubectl logs and exec through the API server need its client CA: set ClientCAFile, or let the VK read ClientCAConfigMap)",
				"configmap", cfg.ClientCAConfigMap, "err", err)
			break
		}
		cm, err := dynamiccertificates.NewDynamicCAFromConfigMapController("client-ca", ns, name, key, cs)
		if err != nil {
			return nil, fmt.Errorf("kubelet client CA from %s: %w", cfg.ClientCAConfigMap, err)
		}
		go cm.Run(ctx, 1)
		ca = cm
		log.Info("kubelet client CA read and watched", "configmap", cfg.ClientCAConfigMap)
	}
	var opts []nodeutil.WebhookAuthOption
	if ca != nil {
		opts = append(opts, func(c *nodeutil.WebhookAuthConfig) error {
			c.AuthnConfig.ClientCertificateCAContentProvider = ca
			return nil
		})
	}
	auth, err := nodeutil.WebhookAuth(cs, cfg.NodeName, opts...)
	if err != nil {
		return nil, fmt.Errorf("kubelet API auth: %w", err)
	}
	return auth, nil
}

// queueLimiter paces a pod controller queue: each item backs off
// exponentially on failure (5 ms to 30 s), and all items together go no
// faster than the API client's QPS and burst.
func queueLimiter(cfg Config) workqueue.TypedRateLimiter[any] {
	return workqueue.NewTypedMaxOfRateLimiter[any](
		workqueue.NewTypedItemExponentialFailureRateLimiter[any](5*time.Millisecond, 30*time.Second),
		&workqueue.TypedBucketRateLimiter[any]{Limiter: rate.NewLimiter(rate.Limit(cfg.KubeAPIQPS), cfg.KubeAPIBurst)},
	)
}
