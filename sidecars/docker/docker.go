package docker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/sidecars"
	"github.com/seed-3f807049/interlink/sidecars/poddata"
)

// Sidecar is the Docker sidecar.
type Sidecar struct {
	cfg  Config
	log  *slog.Logger
	api  *client.Client
	data *poddata.Dir // DataRootFolder
	// dataDir is DataRootFolder, absolute: bind sources are built from it.
	dataDir string
	locks   sidecars.KeyedMutex
	// pulls runs each image pull once, outliving the creates that wait for it.
	pulls singleflight.Group

	// drivers run each pod's init containers, then its others, one
	// goroutine per pod; they stop with ctx (Close).
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	driving map[string]*driverRun
	// histories hold, by container ID, what Docker's state of a container
	// does not: its last terminations and the starts the sidecar retried
	// (history.go). Guarded by mu.
	histories map[string]*history
	// usage holds, by container ID, its last stats sample (usage.go).
	// Guarded by mu.
	usage map[string]*usageCache
	// usageEvery is the least time between two stats calls for one
	// container: usageInterval (shorter in tests).
	usageEvery time.Duration
	sampling   singleflight.Group
	metrics    atomic.Pointer[metrics] // nil until Register
}

var (
	_ sidecars.Plugin = (*Sidecar)(nil)
	_ sidecars.Pinger = (*Sidecar)(nil)
	_ sidecars.Execer = (*Sidecar)(nil)
)

// New connects to the Docker Engine and resumes the pods it finds there
// (init containers that had not finished, containers not yet started),
// listing them within ctx. The pods' drivers outlive ctx: Close stops them.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Sidecar, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("docker config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dataDir, _ := config.ExpandHome(cfg.DataRootFolder)
	data, err := poddata.OpenDir(dataDir)
	if err != nil {
		return nil, fmt.Errorf("DataRootFolder: %w", err)
	}
	c, err := client.New(client.WithHost(cfg.DockerHost))
	if err != nil {
		_ = data.Close()
		return nil, fmt.Errorf("docker client: %w", err)
	}
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d := &Sidecar{cfg: cfg, log: log, api: c, data: data, dataDir: dataDir, ctx: life, cancel: cancel, driving: map[string]*driverRun{},
		usageEvery: usageInterval}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.watchEvents(life)
	}()
	pods, err := d.pods(ctx, "")
	if err != nil {
		log.Warn("could not list the pods on the Docker Engine; they resume on their next create", "err", err)
	}
	for uid := range pods {
		d.startDriver(uid)
	}
	log.Info("docker sidecar started", "pods", len(pods), "docker", cfg.DockerHost, "data", dataDir)
	return d, nil
}

// Close stops the drivers and releases the client.
func (d *Sidecar) Close() error {
	d.cancel()
	d.wg.Wait()
	return errors.Join(d.api.Close(), d.data.Close())
}

// engineError makes a Docker Engine error an api error of its reason:
// NotFound, Invalid, else Unavailable.
func engineError(what string, err error) error {
	switch {
	case cerrdefs.IsNotFound(err):
		return api.NotFound("%s: %w", what, err)
	case cerrdefs.IsInvalidArgument(err):
		return api.Invalid("%s: %w", what, err)
	default:
		return api.Unavailable("%s: %w", what, err)
	}
}

// pods lists the containers of one pod (uid) or of all pods (""), by UID.
func (d *Sidecar) pods(ctx context.Context, uid string) (map[string][]container.Summary, error) {
	f := client.Filters{}
	if uid == "" {
		f.Add("label", LabelUID)
	} else {
		f.Add("label", LabelUID+"="+uid)
	}
	start := time.Now()
	res, err := d.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	d.observe("list", start, err)
	if err != nil {
		return nil, engineError("list containers", err)
	}
	out := map[string][]container.Summary{}
	for _, c := range res.Items {
		u := c.Labels[LabelUID]
		out[u] = append(out[u], c)
	}
	for _, cs := range out {
		slices.SortFunc(cs, func(a, b container.Summary) int { return cmp.Compare(order(a.Labels), order(b.Labels)) })
	}
	return out, nil
}

// order sorts a pod's containers: pause, init containers in order, others.
func order(l map[string]string) int {
	i, _ := strconv.Atoi(l[LabelIndex])
	switch l[LabelRole] {
	case rolePause:
		return -1
	case roleInit:
		return i
	default:
		return 10000 + i
	}
}

// holder is the container holding the pod's network namespace: its pause
// container, or its only container when it has one and no init container
// (such a pod needs no pause container: one container fewer to create).
func holder(cs []container.Summary) (container.Summary, bool) {
	for _, c := range cs {
		if c.Labels[LabelRole] == rolePause {
			return c, true
		}
	}
	if len(cs) == 1 {
		return cs[0], true
	}
	return container.Summary{}, false
}

func jobID(cs []container.Summary) string {
	if h, ok := holder(cs); ok {
		return h.ID[:12]
	}
	return ""
}

// Create makes the pod's containers and starts it: images pulled per their
// policy, data written, the pause container started, the others created;
// a driver then runs the init containers in order and starts the rest. A
// second create of the same UID returns the existing pod.
func (d *Sidecar) Create(ctx context.Context, data *api.RetrievedPodData) (api.CreateResult, error) {
	p := &data.Pod
	uid := string(p.UID)
	dir, err := poddata.DirName(p)
	if err != nil {
		return api.CreateResult{}, err
	}
	if err := api.RequireContainers(p); err != nil {
		return api.CreateResult{}, err
	}
	if data.JobScript != "" {
		return api.CreateResult{}, api.Invalid("pod %s/%s carries a job script from interlink (the original interLink's JobScriptTemplate or jobscriptURL builder): the Docker sidecar runs containers, never scripts", p.Namespace, p.Name)
	}
	unlock := d.locks.Lock(uid)
	defer unlock()
	existing, err := d.pods(ctx, uid)
	if err != nil {
		return api.CreateResult{}, err
	}
	if id := jobID(existing[uid]); id != "" {
		d.startDriver(uid)
		return api.CreateResult{PodUID: uid, PodJID: id}, nil
	}
	created0 := time.Now()
	specs, files, err := d.podSpecs(data, d.dataDir+"/"+dir)
	if err != nil {
		return api.CreateResult{}, err
	}
	files = append(files, terminationMounts(specs, d.dataDir+"/"+dir)...)
	auths, err := pullAuths(data)
	if err != nil {
		return api.CreateResult{}, api.Invalid("pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	if err := d.pullImages(ctx, specs, auths); err != nil {
		return api.CreateResult{}, err
	}
	if err := d.imageUsers(ctx, p, specs); err != nil {
		return api.CreateResult{}, err
	}
	var created []string
	fail := func(err error) (api.CreateResult, error) {
		for _, id := range created {
			_, _ = d.api.ContainerRemove(context.WithoutCancel(ctx), id, client.ContainerRemoveOptions{Force: true})
		}
		_ = d.data.RemoveAll(dir)
		return api.CreateResult{}, err
	}
	if len(files) > 0 {
		if err := d.data.Write(dir, files); err != nil {
			return fail(fmt.Errorf("pod %s/%s: write its data: %w", p.Namespace, p.Name, err))
		}
	}
	netns := ""
	if len(specs) > 1 {
		id, err := d.startPause(ctx, p)
		if id != "" {
			created = append(created, id)
		}
		if err != nil {
			return fail(err)
		}
		netns = "container:" + id
	}
	for _, s := range specs {
		d.join(p, &s, netns)
		start := time.Now()
		res, err := d.api.ContainerCreate(ctx, client.ContainerCreateOptions{Name: containerName(uid, s.name), Config: &s.create, HostConfig: &s.host})
		d.observe("create", start, err)
		if err != nil {
			return fail(engineError(fmt.Sprintf("pod %s/%s: create container %s", p.Namespace, p.Name, s.name), err))
		}
		created = append(created, res.ID)
	}
	jid := created[0][:12]
	d.startDriver(uid)
	if m := d.metrics.Load(); m != nil {
		m.createDuration.Observe(time.Since(created0).Seconds())
	}
	d.log.Info("pod created", "pod", p.Name, "namespace", p.Namespace, "uid", uid, "job_id", jid, "containers", len(specs))
	return api.CreateResult{PodUID: uid, PodJID: jid}, nil
}

// startPause creates and starts the pod's pause container.
func (d *Sidecar) startPause(ctx context.Context, p *corev1.Pod) (string, error) {
	start := time.Now()
	cfg, host := d.pauseSpec(p)
	res, err := d.api.ContainerCreate(ctx, client.ContainerCreateOptions{Name: containerName(string(p.UID), "pause"), Config: &cfg, HostConfig: &host})
	d.observe("create", start, err)
	if err != nil {
		return "", engineError(fmt.Sprintf("pod %s/%s: create its pause container", p.Namespace, p.Name), err)
	}
	start = time.Now()
	_, err = d.api.ContainerStart(ctx, res.ID, client.ContainerStartOptions{})
	d.observe("start", start, err)
	if err != nil {
		return res.ID, engineError(fmt.Sprintf("pod %s/%s: start its pause container", p.Namespace, p.Name), err)
	}
	return res.ID, nil
}

// pauseSpec is the pod's pause container: the operator's image, on the
// pod's network, its IPC namespace shared (or the host's, with hostIPC).
func (d *Sidecar) pauseSpec(p *corev1.Pod) (container.Config, container.HostConfig) {
	cfg := container.Config{Image: d.cfg.PauseImage, Cmd: d.cfg.PauseCommand, Labels: labels(p, "pause", rolePause, 0)}
	host := container.HostConfig{NetworkMode: d.networkMode(p), IpcMode: container.IPCModeShareable,
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}}
	if !p.Spec.HostNetwork {
		cfg.Hostname = hostname(p)
	}
	if p.Spec.HostIPC {
		host.IpcMode = container.IPCModeHost
	}
	return cfg, host
}

// hostname is the pod's hostname, as Kubernetes sets it.
func hostname(p *corev1.Pod) string {
	if p.Spec.Hostname != "" {
		return p.Spec.Hostname
	}
	if len(p.Name) > 63 {
		return p.Name[:63]
	}
	return p.Name
}

// Delete stops the pod's containers within its grace period, removes them
// and its data.
func (d *Sidecar) Delete(ctx context.Context, p *corev1.Pod) error {
	uid := string(p.UID)
	unlock := d.locks.Lock(uid)
	defer unlock()
	pods, err := d.pods(ctx, uid)
	if err != nil {
		return err
	}
	cs := pods[uid]
	if len(cs) == 0 {
		return api.NotFound("pod %s/%s (uid %s) not found", p.Namespace, p.Name, uid)
	}
	d.stopDriver(ctx, uid)
	grace := podGrace(p.Spec.TerminationGracePeriodSeconds)
	// All together (no limit): each has the same grace period.
	var g errgroup.Group
	errs := make([]error, len(cs))
	for i, c := range cs {
		if c.Labels[LabelRole] == rolePause || c.State != container.StateRunning && c.State != container.StateRestarting {
			continue
		}
		g.Go(func() error {
			// Its preStop hook, then SIGTERM, all within the grace period.
			if err := d.stopRun(ctx, c.ID, lifecycleOf(c.Labels), grace, false); err != nil {
				errs[i] = fmt.Errorf("container %s: %w", c.Labels[LabelContainer], err)
			}
			return nil
		})
	}
	_ = g.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, c := range cs {
		start := time.Now()
		_, err := d.api.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
		d.observe("remove", start, err)
		if err != nil && !cerrdefs.IsNotFound(err) {
			return engineError("remove container "+c.Labels[LabelContainer], err)
		}
	}
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	d.forget(ids...)
	if err := d.data.RemoveAll(p.Namespace + "-" + uid); err != nil {
		return fmt.Errorf("remove the data of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	d.log.Info("pod deleted", "pod", p.Name, "namespace", p.Namespace, "uid", uid)
	return nil
}

// Ping reports the Docker host's CPUs and memory.
func (d *Sidecar) Ping(ctx context.Context) (api.PingResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.APITimeout.Duration)
	defer cancel()
	start := time.Now()
	info, err := d.api.Info(ctx, client.InfoOptions{})
	d.observe("info", start, err)
	if err != nil {
		return api.PingResponse{}, engineError("docker info", err)
	}
	return api.PingResponse{Status: api.PingOK, Resources: &api.Resources{
		CPU:    strconv.Itoa(info.Info.NCPU),
		Memory: strconv.FormatInt(info.Info.MemTotal/1024, 10) + "Ki",
	}}, nil
}
