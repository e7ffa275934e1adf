package api

// Paths of the VK -> interLink hop and of the interLink -> sidecar hop.
const (
	// PathCreate submits one pod.
	PathCreate = "/create"
	// PathDelete deletes one pod.
	PathDelete = "/delete"
	// PathStatus returns the status of a batch of pods.
	PathStatus = "/status"
	// PathLogs streams one container's logs.
	PathLogs = "/getLogs"
	// PathPing is the VK's health check of interLink and its sidecars.
	PathPing = "/pinglink"
	// PathUpdateCache is kept for the original VK; interLink holds no cache.
	PathUpdateCache = "/updateCache"
	// PathExec runs a command in a container (an extension: the original
	// has no exec).
	PathExec = "/exec"
)

// Headers.
const (
	// HeaderAPIVersion is sent by our peers on every request and reply. Its
	// presence tells the other side it may use the extensions of this package.
	HeaderAPIVersion = "Interlink-Api-Version"
	// HeaderSession correlates log lines across hops (original name).
	HeaderSession = "InterLink-Http-Session"
	// HeaderSidecar names the sidecar of a log request (a LogRequest carries
	// no annotations). Without it interLink asks its sidecars in turn.
	HeaderSidecar = "Interlink-Sidecar"
	// HeaderTrimmedStatus is set by interLink on its replies when every one
	// of its sidecars has shown HeaderAPIVersion (none is an original
	// plugin): a VK may then send trimmed pods (TrimForStatus) on /status.
	HeaderTrimmedStatus = "Interlink-Trimmed-Status"
	// TrailerExitCode is the HTTP trailer of an /exec reply that carries the
	// command's exit code.
	TrailerExitCode = "Interlink-Exit-Code"
)

// APIVersion is the version of the extensions this package defines.
const APIVersion = "1"

// Annotations.
const (
	// AnnotationSidecar names the sidecar that runs a pod.
	AnnotationSidecar = "interlink.io/sidecar"
	// AnnotationJobID is where the original VK stores the job ID of a pod.
	AnnotationJobID = "JobID"
)
