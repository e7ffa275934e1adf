package vk

import (
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
	// DefaultWorkers is the number of pod sync workers.
	DefaultWorkers = 20
	// DefaultClientCAConfigMap is where clusters publish the CA of the API
	// server's client certificates (as aggregated API servers read it).
	DefaultClientCAConfigMap = "kube-system/extension-apiserver-authentication:client-ca-file"
	// DefaultDataWait bounds how long a pod waits for a missing ConfigMap or
	// Secret before it fails.
	DefaultDataWait = 30 * time.Second
)

// Resources is the capacity the node advertises until interLink's ping
// reports its own.
type Resources struct {
	CPU          string            `json:"CPU" env:"INTERLINK_NODE_CPU" doc:"CPU capacity (a quantity)."`
	Memory       string            `json:"Memory" env:"INTERLINK_NODE_MEMORY" doc:"Memory capacity (a quantity)."`
	Pods         string            `json:"Pods" env:"INTERLINK_NODE_PODS" doc:"Pod capacity."`
	Accelerators map[string]string `json:"Accelerators" env:"INTERLINK_NODE_ACCELERATORS" envSeparator:"," envKeyValSeparator:"=" doc:"Extended resources such as nvidia.com/gpu=4 (env: name=count,...)."`
}

// Config is the virtual kubelet's configuration. The original's keys and
// environment variables keep working.
type Config struct {
	NodeName           string            `json:"NodeName" env:"NODENAME" doc:"Name of the virtual node (original env NODENAME)."`
	InterlinkURL       string            `json:"InterlinkURL" env:"INTERLINKURL" doc:"URL of interLink: http(s)://host or unix:///path.sock (original key)."`
	InterlinkPort      string            `json:"InterlinkPort" env:"INTERLINKPORT" doc:"Port of interLink, unused for a unix socket (original key)."`
	VKTokenFile        string            `json:"VKTokenFile" env:"VKTOKENFILE" doc:"File holding the bearer token sent to interLink; re-read when it changes (original key)."`
	InterlinkCAFile    string            `json:"InterlinkCAFile" env:"INTERLINK_CA_FILE" doc:"PEM CA trusted for an https interLink."`
	Kubeconfig         string            `json:"Kubeconfig" env:"KUBECONFIG" doc:"Kubeconfig of the cluster; empty means in-cluster config."`
	KubeletPort        string            `json:"KubeletPort" env:"KUBELET_PORT" doc:"Port of the kubelet API (original env KUBELET_PORT)."`
	NodeAddress        string            `json:"NodeAddress" env:"POD_IP" doc:"Address of the node (InternalIP) where the API server reaches the kubelet API (original env POD_IP)."`
	KubeletCertMode    string            `json:"KubeletCertMode" env:"INTERLINK_KUBELET_CERT_MODE" doc:"Where the kubelet API's serving certificate comes from: files (KubeletCertFile/KubeletKeyFile), csr (the CSR API's kubelet-serving signer, renewed before expiry, kept in KubeletCertDir), self-signed, or auto (files when set, else self-signed)."`
	KubeletCertDir     string            `json:"KubeletCertDir" env:"INTERLINK_KUBELET_CERT_DIR" doc:"Directory where csr mode keeps its key and certificates."`
	KubeletCertFile    string            `json:"KubeletCertFile" env:"INTERLINK_KUBELET_CERT_FILE" doc:"PEM serving certificate of the kubelet API."`
	KubeletKeyFile     string            `json:"KubeletKeyFile" env:"INTERLINK_KUBELET_KEY_FILE" doc:"PEM private key of that certificate."`
	ClientCAFile       string            `json:"ClientCAFile" env:"INTERLINK_KUBELET_CLIENT_CA_FILE" doc:"PEM CA of the client certificates the kubelet API accepts (the API server's); bearer tokens are checked with TokenReview."`
	ClientCAConfigMap  string            `json:"ClientCAConfigMap" env:"INTERLINK_KUBELET_CLIENT_CA_CONFIGMAP" doc:"When ClientCAFile is empty: namespace/name:key of a ConfigMap holding that CA, read and watched (where every cluster publishes the CA of its API server's client certificates; reading it needs the built-in Role extension-apiserver-authentication-reader in kube-system); empty: bearer tokens only."`
	Resources          Resources         `json:"Resources" doc:"Node capacity."`
	NodeLabels         map[string]string `json:"NodeLabels" env:"INTERLINK_NODE_LABELS" envSeparator:"," envKeyValSeparator:"=" doc:"Extra node labels (env: key=value,...)."`
	ServiceAccount     string            `json:"ServiceAccount" env:"SERVICEACCOUNT" doc:"Service account whose kubeconfig (a bound token from the TokenRequest API) is delivered to every pod, mounted at /var/run/interlink/kubeconfig with KUBECONFIG set (original key)."`
	Namespace          string            `json:"Namespace" env:"NAMESPACE" doc:"Namespace of ServiceAccount (original key)."`
	CustomKubeconfig   string            `json:"CustomKubeconfig" env:"CUSTOMKUBECONF" doc:"A kubeconfig file delivered to every pod as is, instead of one built for ServiceAccount (original env CUSTOMKUBECONF)."`
	KubeconfigTokenTTL config.Duration   `json:"KubeconfigTokenTTL" env:"INTERLINK_KUBECONFIG_TOKEN_TTL" doc:"Lifetime of the ServiceAccount token in a delivered kubeconfig."`
	NodeTaints         []string          `json:"NodeTaints" env:"INTERLINK_NODE_TAINTS" envSeparator:"," doc:"Node taints as key=value:Effect; an empty list removes the default taint."`
	StatusInterval     config.Duration   `json:"StatusInterval" env:"INTERLINK_STATUS_INTERVAL" doc:"How often the status of all pods is read, in one batched call."`
	PingInterval       config.Duration   `json:"PingInterval" env:"INTERLINK_PING_INTERVAL" doc:"How often interLink's health and capacity are read."`
	DataWait           config.Duration   `json:"DataWait" env:"INTERLINK_DATA_WAIT" doc:"How long a pod waits for a missing ConfigMap or Secret before it fails."`
	KubeAPIQPS         float32           `json:"KubeAPIQPS" env:"INTERLINK_KUBE_API_QPS" doc:"Queries per second to the API server."`
	KubeAPIBurst       int               `json:"KubeAPIBurst" env:"INTERLINK_KUBE_API_BURST" doc:"Burst of queries to the API server."`
	Workers            int               `json:"Workers" env:"INTERLINK_WORKERS" doc:"Pod sync workers."`
	VerboseLogging     bool              `json:"VerboseLogging" env:"VERBOSELOGGING" doc:"Log at debug level (original key)."`
	ErrorsOnlyLogging  bool              `json:"ErrorsOnlyLogging" env:"ERRORSONLYLOGGING" doc:"Log errors only (original key)."`
	LogFormat          string            `json:"LogFormat" env:"INTERLINK_LOG_FORMAT" doc:"Log format: json or text."`
	Tracing            tracing.Config    `json:"Tracing" envPrefix:"INTERLINK_TRACING_" doc:"OpenTelemetry tracing."`
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
		NodeName:           DefaultNodeName,
		InterlinkURL:       DefaultInterlinkURL,
		InterlinkPort:      DefaultInterlinkPort,
		KubeletPort:        DefaultKubeletPort,
		KubeletCertMode:    CertModeAuto,
		NodeAddress:        "127.0.0.1",
		ClientCAConfigMap:  DefaultClientCAConfigMap,
		Resources:          Resources{CPU: "100", Memory: "256Gi", Pods: "1000"},
		NodeTaints:         []string{DefaultTaint},
		StatusInterval:     config.D(DefaultStatusInterval),
		PingInterval:       config.D(DefaultPingInterval),
		DataWait:           config.D(DefaultDataWait),
		Namespace:          "default",
		KubeconfigTokenTTL: config.D(24 * time.Hour),
		KubeAPIQPS:         DefaultKubeAPIQPS,
		KubeAPIBurst:       DefaultKubeAPIBurst,
		Workers:            DefaultWorkers,
		Tracing:            tracing.DefaultConfig(),
		LogFormat:          "json",
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
	for k, v := range c.Resources.Accelerators {
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
	if c.ServiceAccount != "" && c.CustomKubeconfig != "" {
		errs = append(errs, errors.New("ServiceAccount and CustomKubeconfig are exclusive: set one"))
	}
	if c.KubeconfigTokenTTL.Duration < 10*time.Minute {
		errs = append(errs, errors.New("KubeconfigTokenTTL must be at least 10m"))
	}
	switch c.KubeletCertMode {
	case CertModeAuto, CertModeSelfSigned:
	case CertModeFiles:
		if c.KubeletCertFile == "" {
			errs = append(errs, errors.New("KubeletCertMode files needs KubeletCertFile and KubeletKeyFile"))
		}
	case CertModeCSR:
		if c.KubeletCertDir == "" {
			errs = append(errs, errors.New("KubeletCertMode csr needs KubeletCertDir"))
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
	if c.KubeAPIQPS <= 0 || c.KubeAPIBurst <= 0 || c.Workers <= 0 {
		errs = append(errs, errors.New("KubeAPIQPS, KubeAPIBurst and Workers must be positive"))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("LogFormat %q: want json or text", c.LogFormat))
	}
	return errors.Join(errs...)
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
