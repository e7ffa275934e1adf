package slurm

import (
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/sidecars/poddata"
)

// Files of a pod. The job's own output (Slurm's messages included) goes
// to DIR.out beside the pod's directory DIR, so that a pod without data
// costs no file operation on the shared filesystem at submission: the job
// makes its directory itself.
const (
	outputSuffix = ".out"
	// containersDir holds, per container, NAME.log (timestamped lines of
	// every run), NAME.started ("TIME", and once restarted "TIME COUNT CODE
	// STARTED FINISHED": the restarts so far and the previous run's end) and
	// NAME.exit ("CODE TIME", and "CODE TIME DUE SECONDS" when the container
	// waits to start again at DUE). il_run in the job script writes them.
	containersDir = "containers"
	// dataDirName is the data directory (volumes, env files) when the
	// compute nodes share DataRootFolder.
	dataDirName = "data"
)

// prelude is what every job script holds of prelude.sh (il_now, il_pid,
// il_run): the file without its shellcheck directives, which .ci/test.sh
// (tier_verify) checks it with.
var prelude = withoutDirectives(preludeFile)

//go:embed prelude.sh
var preludeFile string

// withoutDirectives is s without its "# shellcheck " lines.
func withoutDirectives(s string) string {
	var sb strings.Builder
	for l := range strings.SplitAfterSeq(s, "\n") {
		if !strings.HasPrefix(strings.TrimLeft(l, " \t"), "# shellcheck ") {
			sb.WriteString(l)
		}
	}
	return sb.String()
}

// scriptWriter holds a job script as it is written. A word it cannot quote
// (one holding a NUL byte) is written empty and kept as an error.
type scriptWriter struct {
	out  strings.Builder
	errs []error
}

// printf writes to the script.
func (w *scriptWriter) printf(format string, args ...any) { fmt.Fprintf(&w.out, format, args...) }

// quote is v as one literal word (quote).
func (w *scriptWriter) quote(v string) string {
	r, err := quote(v)
	w.errs = append(w.errs, err)
	return r
}

// line is argv as one command line (line).
func (w *scriptWriter) line(argv []string) string {
	r, err := line(argv)
	w.errs = append(w.errs, err)
	return r
}

// script writes the job script of a pod that buildJob checked: what goes
// in it was chosen and checked before (b.parts), and it fails only for a
// word that cannot be quoted.
func (b *builder) script(rt runtime, inits, mains []*container, files []poddata.File) (string, error) {
	w := &scriptWriter{}
	b.writeHeader(w)
	w.out.WriteString(prelude)
	if !b.cfg.SharedFS {
		writeData(w, files)
	}
	b.writeSetup(w)
	for i, c := range append(append([]*container{}, inits...), mains...) {
		b.writeContainer(w, rt, i, c)
	}
	b.proberScript(w.printf, w.quote, b.spec, inits, mains, b.grace)
	b.writeRuns(w, rt, inits, mains)
	return w.out.String(), errors.Join(w.errs...)
}

// writeHeader writes the interpreter, the job's variables and directories,
// and il_cleanup, the EXIT trap.
func (b *builder) writeHeader(w *scriptWriter) {
	p := b.pod
	w.printf("#!%s\n", b.cfg.BashPath)
	w.printf("# Job of pod %s, written by interlink-slurm. The containers' output goes to\n", w.quote(p.Namespace+"/"+p.Name))
	w.printf("# containers/NAME.log, their exit codes to containers/NAME.exit.\n")
	w.printf("umask 077\n")
	w.printf("IL_DIR=%s\n", w.quote(b.dir))
	w.printf("IL_ENVEXEC=%s\n", w.quote(b.cfg.EnvExecPath))
	if b.spec != nil {
		w.printf("IL_PROBER=%s\n", w.quote(b.cfg.ProberPath))
	}
	if b.cfg.SharedFS {
		w.printf("IL_DATA=\"$IL_DIR\"/%s\n", dataDirName)
	} else {
		w.printf("# Compute nodes do not share the pod directory's data: it is embedded below\n")
		w.printf("# and written to node-local storage for the job's lifetime.\n")
		w.printf("IL_DATA=$(mktemp -d \"${TMPDIR:-/tmp}/interlink-XXXXXXXX\") || exit 1\n")
	}
	w.printf("mkdir -p \"$IL_DIR\"/%s \"$IL_DATA\" && cd \"$IL_DIR\" || exit 1\n", containersDir)
	w.printf(`il_cleanup() {
	[[ -n ${IL_SSH_PID-} ]] && kill "$IL_SSH_PID" 2>/dev/null
`)
	if b.spec != nil {
		w.printf("\t[[ -n ${IL_PROBER_PID-} ]] && kill \"$IL_PROBER_PID\" 2>/dev/null\n")
	}
	if !b.cfg.SharedFS {
		w.printf("\trm -rf -- \"$IL_DATA\"\n")
	}
	w.printf("\treturn 0\n}\ntrap il_cleanup EXIT\n")
}

// writeData writes the pod's data files into the script, for compute nodes
// that do not share the pod's directory.
func writeData(w *scriptWriter, files []poddata.File) {
	if len(files) == 0 {
		return
	}
	w.printf("il_file() { mkdir -p -- \"$(dirname -- \"$IL_DATA/$2\")\" && base64 -d >\"$IL_DATA/$2\" && chmod \"$1\" \"$IL_DATA/$2\"; }\n")
	for _, f := range files {
		if f.Dir {
			w.printf("mkdir -p -- \"$IL_DATA\"/%s\n", w.quote(f.Path))
			continue
		}
		w.printf("il_file %04o %s <<'IL_EOF'\n%s\nIL_EOF\n", f.Mode, w.quote(f.Path), wrap(base64.StdEncoding.EncodeToString(f.Data), 76))
	}
}

// writeSetup writes what runs before the containers: the site's
// CommandPrefix and JobScriptTemplate, the tsocks tunnel, the pod's
// pre-exec.
func (b *builder) writeSetup(w *scriptWriter) {
	if b.cfg.CommandPrefix != "" {
		w.printf("# CommandPrefix (from the sidecar's config)\n%s\n", b.cfg.CommandPrefix)
	}
	if b.parts.jobTemplate != nil {
		w.printf("# JobScriptTemplate (from the sidecar's config)\n%s\n", *b.parts.jobTemplate)
	}
	if b.cfg.Tsocks {
		b.tsocks(w)
	}
	if b.parts.preExec != nil {
		w.printf("# %s (allowed by AllowPreExec)\n%s\n", AnnotationPreExec, *b.parts.preExec)
	}
}

// writeRuns writes the runs of the containers: the init containers one
// after another, then the others side by side, and the job's exit code.
func (b *builder) writeRuns(w *scriptWriter, rt runtime, inits, mains []*container) {
	policy := b.parts.policy
	// An init container that succeeded never runs again.
	initPolicy := policy
	if policy == corev1.RestartPolicyAlways {
		initPolicy = corev1.RestartPolicyOnFailure
	}
	run := func(c *container, i int, rp corev1.RestartPolicy) {
		w.printf("il_run %s il_c%d %s", w.quote(c.name), i, w.quote(string(rp)))
		if rt.cleanup(c) != nil {
			w.printf(" il_c%d_cleanup", i)
		}
	}
	if policy == corev1.RestartPolicyNever {
		w.printf("\n# Init containers run in order; the first that fails ends the job.\n")
	} else {
		w.printf("\n# Init containers run in order, each started again until it succeeds.\n")
	}
	for i, c := range inits {
		run(c, i, initPolicy)
		if b.grace > 0 {
			// In the background: the shell runs its traps in wait only.
			w.printf(" &\nwait $! || exit $?\n")
			continue
		}
		w.printf(" || exit $?\n")
	}
	w.printf("# Containers run side by side (restartPolicy %s); the job's exit code is the first non-zero one.\n", policy)
	w.printf("il_pids=()\n")
	for j, c := range mains {
		run(c, len(inits)+j, policy)
		w.printf(" &\nil_pids+=($!)\n")
	}
	w.printf(`il_exit=0
for pid in "${il_pids[@]}"; do
	wait "$pid" || { code=$?; [[ $il_exit -eq 0 ]] && il_exit=$code; }
done
exit "$il_exit"
`)
}

// tsocks starts the SSH SOCKS tunnel to the login node and writes the
// tsocks configuration the containers read.
func (b *builder) tsocks(w *scriptWriter) {
	w.printf(`# Tsocks: the containers' TCP goes through an SSH SOCKS tunnel to the login node.
for _ in 1 2 3 4 5; do
	IL_SOCKS_PORT=$((20000 + RANDOM %% 30000))
	%s -N -o BatchMode=yes -o ExitOnForwardFailure=yes -D 127.0.0.1:"$IL_SOCKS_PORT" %s &
	IL_SSH_PID=$!
	for _ in $(seq 50); do
		(exec 3<>/dev/tcp/127.0.0.1/"$IL_SOCKS_PORT") 2>/dev/null && break 2
		kill -0 "$IL_SSH_PID" 2>/dev/null || break
		sleep 0.2
	done
	kill "$IL_SSH_PID" 2>/dev/null; unset IL_SSH_PID
done
[[ -n ${IL_SSH_PID-} ]] || { printf 'interlink: the SSH tunnel to %%s did not start\n' %s >&2; exit 1; }
mkdir -p "$IL_DATA/tsocks"
printf 'server = 127.0.0.1\nserver_port = %%s\nserver_type = 5\n' "$IL_SOCKS_PORT" >"$IL_DATA/tsocks/tsocks.conf"
chmod 0755 "$IL_DATA/tsocks"; chmod 0644 "$IL_DATA/tsocks/tsocks.conf"
`, w.line(append([]string{b.cfg.SSHPath}, b.cfg.SSHArgs...)), w.quote(b.cfg.TsocksLoginNode), w.quote(b.cfg.TsocksLoginNode))
}
