package vk

import (
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/observability/logging"
	"github.com/seed-3f807049/interlink/observability/server"
	"github.com/seed-3f807049/interlink/observability/tracing"
)

// Defaults of Config.
const (
	// DefaultNodeName is the node's name (original default).
	DefaultNodeName = "virtual-kubelet"
	// DefaultInterlinkURL and DefaultInterlinkPort locate interLink.
	DefaultInterlinkURL  = "http://127.0.0.1"
	DefaultInterlinkPort = "3000"
	// DefaultKubeletPort is the port of the kubelet API (logs, exec, stats).
	DefaultKubeletPort = "10250"
	// DefaultTaint keeps ordinary pods off the virtual node unless they
	// tolerate it.
	DefaultTaint = "virtual-node.interlink/no-schedule=true:NoSchedule"
	// DefaultStatusInterval is how often all pods' status is read in one call.
	DefaultStatusInterval = 2 * time.Second
	// DefaultPingInterval is how often interLink's health is checked.
	DefaultPingInterval = 5 * time.Second
	// DefaultKubeAPIQPS and DefaultKubeAPIBurst size the API client for
	// thousands of pods (client-go's default of 5 QPS caps a node at about
	// 5 pods/s).
	DefaultKubeAPIQPS   = 200
	DefaultKubeAPIBurst = 400
	// DefaultStreamMaxConcurrent caps the node's open streams.
	DefaultStreamMaxConcurrent = 256
	// DefaultWorkers is the number of pod sync workers.
	DefaultWorkers = 20
	// DefaultClientCAConfigMap is where clusters publish the CA of the API
	// server's client certificates (as aggregated API servers read it).
	DefaultClientCAConfigMap = "kube-system/extension-apiserver-authentication:client-ca-file"
	// DefaultDataWait bounds how long a pod waits for a missing ConfigMap or
	// Secret before it fails.
	DefaultDataWait = 30 * time.Second
	// DefaultPprofAddress and DefaultPprofPort are where Pprof.Enabled
	// serves profiles (the original's defaults).
	DefaultPprofAddress = "127.0.0.1"
	DefaultPprofPort    = "6060"
)

// Resources is the capacity the node advertises until interLink's ping
// reports its own.
type Resources struct {
	CPU          string            `json:"CPU" env:"INTERLINK_NODE_CPU" doc:"CPU capacity (a quantity)."`
	Memory       string            `json:"Memory" env:"INTERLINK_NODE_MEMORY" doc:"Memory capacity (a quantity)."`
	Pods         string            `json:"Pods" env:"INTERLINK_NODE_PODS" doc:"Pod capacity."`
	Accelerators map[string]string `json:"Accelerators" env:"INTERLINK_NODE_ACCELERATORS" envSeparator:"," envKeyValSeparator:"=" doc:"Extended resources such as nvidia.com/gpu=4 (env: name=count,...). The original's list of {ResourceType, Model, Available} is accepted too: counts of one type are summed, and Model sets the node label nvidia-gpu-type, xilinx-fpga-type or intel-fpga-type."`
	// models are the original's accelerator models by resource type.
	models map[string]string
}

// TLSConfig is the original's TLS block: mTLS toward interLink.
type TLSConfig struct {
	Enabled    bool   `json:"Enabled" doc:"Use CertFile, KeyFile and CACertFile for the calls to interLink (original key)."`
	CertFile   string `json:"CertFile" doc:"PEM client certificate presented to interLink (with KeyFile)."`
	KeyFile    string `json:"KeyFile" doc:"PEM key of CertFile."`
	CACertFile string `json:"CACertFile" doc:"PEM CA trusted for interLink's certificate (the same as InterlinkCAFile; set one)."`
}

// HTTPConfig is the original's HTTP and KubeletHTTP blocks.
type HTTPConfig struct {
	Insecure bool   `json:"Insecure" doc:"HTTP: do not check interLink's certificate; accepted with a warning for an http or unix URL, where it has no effect, and refused for https (set InterlinkCAFile or HTTP.CaCert). KubeletHTTP: no effect (as in the original), with a warning."`
	CaCert   string `json:"CaCert" doc:"HTTP: a CA certificate file (DER, as the original reads it, or PEM) trusted for interLink when TLS.Enabled is false. KubeletHTTP: no effect, with a warning."`
}

// PodCIDRConfig is the original's PodCIDR block.
type PodCIDRConfig struct {
	Subnet string `json:"Subnet" doc:"The node's spec.podCIDR (original key)."`
	MaxIP  int    `json:"MaxIP" doc:"Original key for pod-vpn addresses, which this VK does not allocate: no effect, with a warning."`
	MinIP  int    `json:"MinIP" doc:"See MaxIP."`
}

// ServicesConfig turns on endpoints of Services for offloaded pods.
type ServicesConfig struct {
	Enabled       bool   `json:"Enabled" env:"ENABLED" doc:"Give Services endpoints that reach this node's pods annotated interlink.io/service-endpoints: \"true\": the node listens on a port of Address for each of their declared TCP containerPorts and carries every connection to the pod through interLink (as kubectl port-forward does; the site opens no inbound port). Needs get, list, watch, create, update and delete on discovery.k8s.io endpointslices."`
	Address       string `json:"Address" env:"ADDRESS" doc:"IP published in the EndpointSlices, where the cluster reaches the node's forwarders: empty means NodeAddress. A loopback address is refused (so does the API server)."`
	ListenAddress string `json:"ListenAddress" env:"LISTEN_ADDRESS" doc:"Host the forwarders listen on (e.g. 0.0.0.0); empty means Address."`
}

// Config is the virtual kubelet's configuration. The original's keys and
// environment variables keep working.
type Config struct {
	NodeName            string          `json:"NodeName" env:"NODENAME" doc:"Name of the virtual node (original env NODENAME)."`
	InterlinkURL        string          `json:"InterlinkURL" env:"INTERLINKURL" doc:"URL of interLink: http(s)://host or unix:///path.sock (original key)."`
	InterlinkPort       string          `json:"InterlinkPort" env:"INTERLINKPORT" doc:"Port of interLink, unused for a unix socket (original key)."`
	VKTokenFile         string          `json:"VKTokenFile" env:"VKTOKENFILE" doc:"File holding the bearer token sent to interLink; re-read when it changes (original key)."`
	InterlinkCAFile     string          `json:"InterlinkCAFile" env:"INTERLINK_CA_FILE" doc:"PEM CA trusted for an https interLink."`
	Kubeconfig          string          `json:"Kubeconfig" env:"KUBECONFIG" doc:"Kubeconfig of the cluster; empty means in-cluster config."`
	KubeletPort         string          `json:"KubeletPort" env:"KUBELET_PORT" doc:"Port of the kubelet API (original env KUBELET_PORT)."`
	NodeAddress         string          `json:"NodeAddress" env:"POD_IP" doc:"Address of the node (InternalIP) where the API server reaches the kubelet API (original env POD_IP)."`
	KubeletCertMode     string          `json:"KubeletCertMode" env:"INTERLINK_KUBELET_CERT_MODE" doc:"Where the kubelet API's serving certificate comes from: files (KubeletCertFile/KubeletKeyFile), csr (the CSR API's kubelet-serving signer, renewed before expiry, kept in KubeletCertDir), self-signed, or auto (files when set, else self-signed)."`
	KubeletCertDir      string          `json:"KubeletCertDir" env:"INTERLINK_KUBELET_CERT_DIR" doc:"Directory where csr mode keeps its key and certificates."`
	KubeletCertFile     string          `json:"KubeletCertFile" env:"INTERLINK_KUBELET_CERT_FILE" doc:"PEM serving certificate of the kubelet API."`
	KubeletKeyFile      string          `json:"KubeletKeyFile" env:"INTERLINK_KUBELET_KEY_FILE" doc:"PEM private key of that certificate."`
	ClientCAFile        string          `json:"ClientCAFile" env:"INTERLINK_KUBELET_CLIENT_CA_FILE" doc:"PEM CA of the client certificates the kubelet API accepts (the API server's); bearer tokens are checked with TokenReview."`
	ClientCAConfigMap   string          `json:"ClientCAConfigMap" env:"INTERLINK_KUBELET_CLIENT_CA_CONFIGMAP" doc:"When ClientCAFile is empty: namespace/name:key of a ConfigMap holding that CA, read and watched (where every cluster publishes the CA of its API server's client certificates; reading it needs the built-in Role extension-apiserver-authentication-reader in kube-system); empty: bearer tokens only."`
	Resources           Resources       `json:"Resources" doc:"Node capacity."`
	NodeLabels          Labels          `json:"NodeLabels" env:"INTERLINK_NODE_LABELS" envSeparator:"," envKeyValSeparator:"=" doc:"Extra node labels, overriding the default ones: a map, or the original's list of \"key=value\" strings (env: key=value,...)."`
	ServiceAccount      string          `json:"ServiceAccount" env:"SERVICEACCOUNT" doc:"Service account whose kubeconfig (a bound token from the TokenRequest API) is delivered to every pod, mounted at /var/run/interlink/kubeconfig with KUBECONFIG set (original key)."`
	Namespace           string          `json:"Namespace" env:"NAMESPACE" doc:"Namespace of ServiceAccount (original key)."`
	CustomKubeconfig    string          `json:"CustomKubeconfig" env:"CUSTOMKUBECONF" doc:"A kubeconfig file delivered to every pod as is, instead of one built for ServiceAccount (original env CUSTOMKUBECONF)."`
	KubeconfigTokenTTL  config.Duration `json:"KubeconfigTokenTTL" env:"INTERLINK_KUBECONFIG_TOKEN_TTL" doc:"Lifetime of the ServiceAccount token in a delivered kubeconfig."`
	NodeTaints          Taints          `json:"NodeTaints" env:"INTERLINK_NODE_TAINTS" envSeparator:"," doc:"Node taints as key=value:Effect; an empty list removes the default taint. The original's list of {Key, Value, Effect} is accepted too, and then added after the default taint, as the original does."`
	StatusInterval      config.Duration `json:"StatusInterval" env:"INTERLINK_STATUS_INTERVAL" doc:"How often the status of all pods is read, in one batched call."`
	PingInterval        config.Duration `json:"PingInterval" env:"INTERLINK_PING_INTERVAL" doc:"How often interLink's health and capacity are read."`
	DataWait            config.Duration `json:"DataWait" env:"INTERLINK_DATA_WAIT" doc:"How long a pod waits for a missing ConfigMap or Secret before it fails."`
	KubeAPIQPS          float32         `json:"KubeAPIQPS" env:"INTERLINK_KUBE_API_QPS" doc:"Queries per second to the API server."`
	KubeAPIBurst        int             `json:"KubeAPIBurst" env:"INTERLINK_KUBE_API_BURST" doc:"Burst of queries to the API server."`
	Workers             int             `json:"Workers" env:"INTERLINK_WORKERS" doc:"Pod sync workers."`
	StreamMaxConcurrent int             `json:"StreamMaxConcurrent" env:"INTERLINK_STREAM_MAX_CONCURRENT" doc:"Most streams (exec -it, attach, port-forward and Service connections) open at once on the node; one more is refused with TooManyStreams."`
	Services            ServicesConfig  `json:"Services" envPrefix:"INTERLINK_SERVICES_" doc:"Endpoints of Services for offloaded pods, through the node."`
	VerboseLogging      bool            `json:"VerboseLogging" env:"VERBOSELOGGING" doc:"Log at debug level (original key)."`
	ErrorsOnlyLogging   bool            `json:"ErrorsOnlyLogging" env:"ERRORSONLYLOGGING" doc:"Log errors only (original key)."`
	LogFormat           string          `json:"LogFormat" env:"INTERLINK_LOG_FORMAT" doc:"Log format: json or text."`
	Tracing             tracing.Config  `json:"Tracing" envPrefix:"INTERLINK_TRACING_" doc:"OpenTelemetry tracing."`
	// The original's keys below have no name of ours.
	KubeletAddress            string             `json:"KubeletAddress" env:"KUBELET_URL" doc:"Listen address (host, no port) of the kubelet API; empty: all interfaces (original env KUBELET_URL)."`
	KubernetesAPIAddr         string             `json:"KubernetesApiAddr" env:"INTERLINK_KUBERNETES_API_ADDR" doc:"Host of the Kubernetes API as the remote side reaches it. With KubernetesApiPort, every offloaded container gets KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT, KUBERNETES_SERVICE_PORT_HTTPS, KUBERNETES_PORT and KUBERNETES_PORT_443_TCP(_ADDR, _PORT, _PROTO) pointing there (a name the container sets in its own env wins), and the kubeconfig delivered for ServiceAccount points there too (original key)."`
	KubernetesAPIPort         string             `json:"KubernetesApiPort" env:"INTERLINK_KUBERNETES_API_PORT" doc:"Port of KubernetesApiAddr (original key)."`
	KubernetesAPICaCrt        string             `json:"KubernetesApiCaCrt" env:"INTERLINK_KUBERNETES_API_CA_CRT" doc:"PEM content (not a path) of the Kubernetes API's CA as the remote side sees it: replaces the kube-root-ca.crt ConfigMap in projected volumes sent to interLink, and the CA of the kubeconfig delivered for ServiceAccount (original key)."`
	DisableProjectedVolumes   bool               `json:"DisableProjectedVolumes" env:"INTERLINK_DISABLE_PROJECTED_VOLUMES" doc:"Send no projected or downwardAPI volume (nor their mounts) to interLink (original key)."`
	SkipDownwardAPIResolution bool               `json:"SkipDownwardAPIResolution" doc:"Original key. Environment values (valueFrom, envFrom) are always resolved before a pod is sent, which is what the remote side saw with either value: accepted with a warning that it has no effect."`
	JobScriptBuilderURL       string             `json:"JobScriptBuilderURL" env:"INTERLINK_JOB_SCRIPT_BUILDER_URL" doc:"Sent in every create request as jobscriptURL: interLink asks that URL for the job script (original key)."`
	KubeletCSRSignerName      string             `json:"KubeletCSRSignerName" env:"INTERLINK_KUBELET_CSR_SIGNER_NAME" doc:"Signer of the kubelet-serving CSR in csr mode (empty: kubernetes.io/kubelet-serving). Set with KubeletCertMode auto and no KubeletCertFile, it selects csr mode, as the original does (original key)."`
	DisableCSR                bool               `json:"DisableCSR" env:"INTERLINK_DISABLE_CSR" doc:"With KubeletCertMode auto: a self-signed kubelet certificate, never a CSR (original key)."`
	TLS                       TLSConfig          `json:"TLS" doc:"The original's mTLS toward interLink."`
	HTTP                      HTTPConfig         `json:"HTTP" doc:"The original's client settings toward interLink."`
	KubeletHTTP               HTTPConfig         `json:"KubeletHTTP" doc:"The original's kubelet API settings: no effect, with a warning."`
	PodCIDR                   PodCIDRConfig      `json:"PodCIDR" doc:"The original's pod network."`
	Network                   Network            `json:"Network" doc:"The original's tunnel and mesh settings (EnableTunnel, FullMesh, WildcardDNS, ...). This VK has no tunnel or mesh: EnableTunnel or FullMesh true is refused at start; other keys have no effect without them, and are logged as such."`
	Pprof                     server.PprofConfig `json:"Pprof" doc:"The original's profiling server (the kubelet API serves the profiles too, authenticated, at /debug/pprof/)."`
	VKConfigPath              string             `json:"VKConfigPath" doc:"Original key without effect (in the original too): accepted with a warning."`
	PodIP                     string             `json:"PodIP" doc:"Original key without effect (the original takes the node's address from POD_IP, as NodeAddress does): accepted with a warning."`
	// DeleteNodeOnShutdown removes the Node object at a graceful stop.
	DeleteNodeOnShutdown bool `json:"DeleteNodeOnShutdown" env:"INTERLINK_DELETE_NODE_ON_SHUTDOWN" doc:"Delete the Node object when the VK stops gracefully (SIGTERM) and no pod that has not ended is bound to it, so a stopped node does not linger NotReady. A node with live pods is kept: Kubernetes would force-delete the pods of a missing node and leave their remote jobs running."`
}

// Kubelet serving certificate modes.
const (
	CertModeAuto       = "auto"
	CertModeFiles      = "files"
	CertModeCSR        = "csr"
	CertModeSelfSigned = "self-signed"
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		NodeName:            DefaultNodeName,
		InterlinkURL:        DefaultInterlinkURL,
		InterlinkPort:       DefaultInterlinkPort,
		KubeletPort:         DefaultKubeletPort,
		KubeletCertMode:     CertModeAuto,
		NodeAddress:         "127.0.0.1",
		ClientCAConfigMap:   DefaultClientCAConfigMap,
		Resources:           Resources{CPU: "100", Memory: "256Gi", Pods: "1000"},
		NodeTaints:          Taints{DefaultTaint},
		StatusInterval:      config.D(DefaultStatusInterval),
		PingInterval:        config.D(DefaultPingInterval),
		DataWait:            config.D(DefaultDataWait),
		Namespace:           "default",
		KubeconfigTokenTTL:  config.D(24 * time.Hour),
		KubeAPIQPS:          DefaultKubeAPIQPS,
		KubeAPIBurst:        DefaultKubeAPIBurst,
		Workers:             DefaultWorkers,
		StreamMaxConcurrent: DefaultStreamMaxConcurrent,
		Tracing:             tracing.DefaultConfig(),
		Pprof:               server.PprofConfig{Address: DefaultPprofAddress, Port: DefaultPprofPort},
		LogFormat:           "json",
		// On by default: a stopped VK's node does not linger NotReady.
		DeleteNodeOnShutdown: true,
	}
}

// InterlinkEndpoint joins InterlinkURL and InterlinkPort.
func (c *Config) InterlinkEndpoint() string {
	if strings.HasPrefix(c.InterlinkURL, "unix://") || c.InterlinkPort == "" {
		return c.InterlinkURL
	}
	return strings.TrimSuffix(c.InterlinkURL, "/") + ":" + c.InterlinkPort
}

// LogSettings implements cli.Config: the original's logging switches.
func (c *Config) LogSettings() (format, level string) {
	return c.LogFormat, logging.Level(c.VerboseLogging, c.ErrorsOnlyLogging)
}

// Taints parses NodeTaints.
func (c *Config) Taints() ([]corev1.Taint, error) {
	var out []corev1.Taint
	var errs []error
	for _, s := range c.NodeTaints {
		kv, effect, ok := strings.Cut(s, ":")
		key, value, _ := strings.Cut(kv, "=")
		e := corev1.TaintEffect(effect)
		if !ok || key == "" || (e != corev1.TaintEffectNoSchedule && e != corev1.TaintEffectPreferNoSchedule && e != corev1.TaintEffectNoExecute) {
			errs = append(errs, fmt.Errorf("NodeTaints %q: want key=value:NoSchedule|PreferNoSchedule|NoExecute", s))
			continue
		}
		out = append(out, corev1.Taint{Key: key, Value: value, Effect: e})
	}
	return out, errors.Join(errs...)
}

// Capacity returns the configured capacity as a resource list.
func (c *Config) Capacity() (corev1.ResourceList, error) {
	out := corev1.ResourceList{}
	var errs []error
	add := func(name, v string) {
		if v == "" {
			return
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("resource %s %q: %w", name, v, err))
			return
		}
		out[corev1.ResourceName(name)] = q
	}
	add("cpu", c.Resources.CPU)
	add("memory", c.Resources.Memory)
	add("pods", c.Resources.Pods)
	for k, v := range config.SortedByKey(c.Resources.Accelerators) {
		add(k, v)
	}
	return out, errors.Join(errs...)
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if msgs := validation.IsDNS1123Subdomain(c.NodeName); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("NodeName %q: %s", c.NodeName, strings.Join(msgs, "; ")))
	}
	if _, _, _, err := c.clientCAConfigMap(); err != nil {
		errs = append(errs, err)
	}
	if c.InterlinkURL == "" {
		errs = append(errs, errors.New("InterlinkURL is empty"))
	}
	if net.ParseIP(c.NodeAddress) == nil {
		errs = append(errs, fmt.Errorf("NodeAddress %q is not an IP address", c.NodeAddress))
	}
	if (c.KubeletCertFile == "") != (c.KubeletKeyFile == "") {
		errs = append(errs, errors.New("KubeletCertFile and KubeletKeyFile go together"))
	}
	if c.Services.Enabled {
		errs = append(errs, c.Services.validate(c.NodeAddress)...)
	}
	if c.ServiceAccount != "" && c.CustomKubeconfig != "" {
		errs = append(errs, errors.New("ServiceAccount and CustomKubeconfig are exclusive: set one"))
	}
	if c.KubeconfigTokenTTL.Duration < 10*time.Minute {
		errs = append(errs, errors.New("KubeconfigTokenTTL must be at least 10m"))
	}
	switch c.KubeletCertMode {
	case CertModeAuto, CertModeSelfSigned:
		if c.certMode() == CertModeCSR && c.KubeletCertDir == "" {
			errs = append(errs, errors.New("KubeletCSRSignerName asks for a certificate from the CSR API (as the original does): set KubeletCertDir, where it is kept, or DisableCSR for a self-signed one"))
		}
	case CertModeFiles:
		if c.KubeletCertFile == "" {
			errs = append(errs, errors.New("KubeletCertMode files needs KubeletCertFile and KubeletKeyFile"))
		}
	case CertModeCSR:
		if c.KubeletCertDir == "" {
			errs = append(errs, errors.New("KubeletCertMode csr needs KubeletCertDir"))
		}
		if c.DisableCSR {
			errs = append(errs, errors.New("DisableCSR contradicts KubeletCertMode csr: set one"))
		}
	default:
		errs = append(errs, fmt.Errorf("KubeletCertMode %q: want auto, files, csr or self-signed", c.KubeletCertMode))
	}
	if _, err := c.Taints(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.Capacity(); err != nil {
		errs = append(errs, err)
	}
	if c.StatusInterval.Duration < 100*time.Millisecond || c.PingInterval.Duration < 100*time.Millisecond {
		errs = append(errs, errors.New("StatusInterval and PingInterval must be at least 100ms"))
	}
	if c.KubeAPIQPS <= 0 || c.KubeAPIBurst <= 0 || c.Workers <= 0 || c.StreamMaxConcurrent <= 0 {
		errs = append(errs, errors.New("KubeAPIQPS, KubeAPIBurst, Workers and StreamMaxConcurrent must be positive"))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("LogFormat %q: want json or text", c.LogFormat))
	}
	errs = append(errs, c.validateOriginal()...)
	return errors.Join(errs...)
}

// validateOriginal checks the original's keys that have no name of ours.
func (c *Config) validateOriginal() []error {
	var errs []error
	for k, v := range config.SortedByKey(c.NodeLabels) {
		for _, msg := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
			errs = append(errs, fmt.Errorf("NodeLabels %s=%s: %s", k, v, msg))
		}
	}
	if c.KubeletAddress != "" && net.ParseIP(c.KubeletAddress) == nil && len(validation.IsDNS1123Subdomain(c.KubeletAddress)) > 0 {
		errs = append(errs, fmt.Errorf("KubeletAddress (KUBELET_URL) %q: want an IP address or a host name, without scheme or port", c.KubeletAddress))
	}
	if (c.KubernetesAPIAddr == "") != (c.KubernetesAPIPort == "") {
		errs = append(errs, errors.New("KubernetesApiAddr and KubernetesApiPort go together: set both (or neither)"))
	}
	if c.KubernetesAPICaCrt != "" {
		if b, _ := pem.Decode([]byte(c.KubernetesAPICaCrt)); b == nil || b.Type != "CERTIFICATE" {
			errs = append(errs, errors.New("KubernetesApiCaCrt: want the PEM content of a certificate (not a path)"))
		}
	}
	if c.PodCIDR.Subnet != "" {
		if _, _, err := net.ParseCIDR(c.PodCIDR.Subnet); err != nil {
			errs = append(errs, fmt.Errorf("PodCIDR.Subnet %q: %w", c.PodCIDR.Subnet, err))
		}
	}
	for _, k := range []string{"EnableTunnel", "FullMesh"} {
		if c.Network.on(k) {
			errs = append(errs, fmt.Errorf("Network.%s: this virtual kubelet has no wstunnel tunnel or WireGuard mesh; remove the key (containers reach the cluster's API through KubernetesApiAddr and KubernetesApiPort)", k))
		}
	}
	https := strings.HasPrefix(c.InterlinkURL, "https://")
	if c.HTTP.Insecure && https {
		errs = append(errs, errors.New("HTTP.Insecure: not checking interLink's certificate is not supported; trust its CA instead with InterlinkCAFile, HTTP.CaCert or TLS.CACertFile"))
	}
	if c.TLS.Enabled && (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("TLS.CertFile and TLS.KeyFile go together"))
	}
	if ours, orig := c.InterlinkCAFile, c.interlinkCAFromOriginal(); ours != "" && orig != "" && ours != orig {
		errs = append(errs, errors.New("InterlinkCAFile and the original's TLS.CACertFile or HTTP.CaCert name different CAs: set one"))
	}
	if c.Pprof.Enabled {
		if _, err := c.Pprof.Listen(DefaultPprofPort); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// ServiceAddress is the IP published in Service endpoints.
func (c *Config) ServiceAddress() string {
	if c.Services.Address != "" {
		return c.Services.Address
	}
	return c.NodeAddress
}

func (s ServicesConfig) validate(nodeAddress string) []error {
	var errs []error
	addr, key := s.Address, "Services.Address"
	if addr == "" {
		addr, key = nodeAddress, "NodeAddress (Services.Address is empty)"
	}
	switch ip := net.ParseIP(addr); {
	case ip == nil:
		errs = append(errs, fmt.Errorf("Services.Enabled: %s %q is not an IP address", key, addr))
	case ip.IsLoopback() || ip.IsUnspecified() || ip.IsLinkLocalUnicast() || ip.IsMulticast():
		errs = append(errs, fmt.Errorf("Services.Enabled: %s %s cannot be an endpoint (the API server refuses loopback, unspecified, link-local and multicast ones): set Services.Address to an address the cluster reaches this node at", key, addr))
	}
	if s.ListenAddress != "" && net.ParseIP(s.ListenAddress) == nil {
		errs = append(errs, fmt.Errorf("Services.ListenAddress %q is not an IP address", s.ListenAddress))
	}
	return errs
}

// interlinkCAFromOriginal is the CA file the original's keys name: the TLS
// block's when it is enabled, else HTTP.CaCert.
func (c *Config) interlinkCAFromOriginal() string {
	if c.TLS.Enabled {
		return c.TLS.CACertFile
	}
	return c.HTTP.CaCert
}

// certMode resolves KubeletCertMode auto: files when set, else (as the
// original orders them) self-signed with DisableCSR, the CSR API when a
// signer is named, else self-signed.
func (c *Config) certMode() string {
	switch {
	case c.KubeletCertMode != CertModeAuto:
		return c.KubeletCertMode
	case c.KubeletCertFile != "":
		return CertModeFiles
	case !c.DisableCSR && c.KubeletCSRSignerName != "":
		return CertModeCSR
	}
	return CertModeSelfSigned
}

// Warnings lists the original's keys that are accepted without effect, and
// other settings worth a warning at start.
func (c *Config) Warnings() []string {
	var out []string
	warn := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	if c.VKConfigPath != "" {
		warn("VKConfigPath has no effect (nor in the original)")
	}
	if c.PodIP != "" {
		warn("PodIP has no effect (nor in the original): the node's address is NodeAddress, or the POD_IP environment variable")
	}
	if c.SkipDownwardAPIResolution {
		warn("SkipDownwardAPIResolution has no effect: this VK always resolves env valueFrom and envFrom before sending a pod")
	}
	if c.KubeletHTTP.Insecure || c.KubeletHTTP.CaCert != "" {
		warn("KubeletHTTP has no effect (nor in the original): the kubelet API's certificate is set by KubeletCertMode")
	}
	if c.HTTP.Insecure && !strings.HasPrefix(c.InterlinkURL, "https://") {
		warn("HTTP.Insecure has no effect: InterlinkURL %s is not https", c.InterlinkURL)
	}
	if c.TLS.Enabled && !strings.HasPrefix(c.InterlinkURL, "https://") {
		warn("TLS.Enabled has no effect: InterlinkURL %s is not https", c.InterlinkURL)
	}
	if !c.TLS.Enabled && (c.TLS.CertFile != "" || c.TLS.KeyFile != "" || c.TLS.CACertFile != "") {
		warn("the TLS block has no effect while TLS.Enabled is false (as in the original)")
	}
	if c.TLS.Enabled && c.HTTP.CaCert != "" {
		warn("HTTP.CaCert has no effect while TLS.Enabled is true (as in the original): TLS.CACertFile is used")
	}
	if c.PodCIDR.MinIP != 0 || c.PodCIDR.MaxIP != 0 {
		warn("PodCIDR.MinIP and PodCIDR.MaxIP have no effect: this VK allocates no pod-vpn addresses")
	}
	if keys := c.Network.idle(); len(keys) > 0 {
		warn("Network keys %s have no effect: this VK has no tunnel or mesh", strings.Join(keys, ", "))
	}
	if _, unlabelled := c.Resources.modelLabels(); len(unlabelled) > 0 {
		warn("Resources.Accelerators: the Model of %s gives no node label (only nvidia.com/gpu, xilinx.com/fpga and intel.com/fpga do, as in the original)", strings.Join(unlabelled, ", "))
	}
	if c.ServiceAccount != "" {
		warn("ServiceAccount %s/%s: every pod is sent a kubeconfig with a token of this service account (the original VK did not use this key; remove it if pods should not get one)", c.Namespace, c.ServiceAccount)
	}
	if w := c.Pprof.Warning("the virtual kubelet", DefaultPprofPort); w != "" {
		warn("%s", w)
	}
	return out
}

// clientCAConfigMap splits ClientCAConfigMap into namespace, name and key;
// all empty when it is not set.
func (c *Config) clientCAConfigMap() (namespace, name, key string, err error) {
	if c.ClientCAConfigMap == "" {
		return "", "", "", nil
	}
	ref, key, _ := strings.Cut(c.ClientCAConfigMap, ":")
	namespace, name, _ = strings.Cut(ref, "/")
	for _, part := range []string{namespace, name, key} {
		if part == "" {
			return "", "", "", fmt.Errorf("ClientCAConfigMap %q: want namespace/name:key", c.ClientCAConfigMap)
		}
	}
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return "", "", "", fmt.Errorf("ClientCAConfigMap %q: name: %s", c.ClientCAConfigMap, strings.Join(msgs, "; "))
	}
	return namespace, name, key, nil
}
