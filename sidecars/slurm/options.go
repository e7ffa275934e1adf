package slurm

import (
	"fmt"
	"slices"
	"strings"
)

// An allow-list names the options a pod may pass to a host program through
// an annotation. Its entries are written as the program spells them:
//
//	--name   a flag; the pod may write --name, or --name=VALUE when the
//	         program takes an optional value
//	--name=  an option with one value: --name=VALUE or --name VALUE
//	-x, -x=  the same for a short option (-x VALUE, -xVALUE); -xyz is one
//	         name for programs whose options have one dash (mpiexec -ppn)
//
// Every word of the annotation must be an allowed option or the value of
// the option before it, so no word can name a program, a script or a
// positional argument. A separate value never starts with '-' and is never
// ':' (mpiexec's MPMD separator). Values hold no newline or NUL.

// allowedOption is one parsed entry of an allow-list.
type allowedOption struct {
	name  string // with its dashes
	value bool   // takes a value
}

func parseAllowList(entries []string) ([]allowedOption, error) {
	out := make([]allowedOption, 0, len(entries))
	for _, e := range entries {
		name, value := strings.CutSuffix(e, "=")
		if len(name) < 2 || name[0] != '-' || name == "--" || strings.ContainsAny(name[1:], "= \t\n\x00") {
			return nil, fmt.Errorf("%q is not an option name (want -x, -x=, --name or --name=)", e)
		}
		out = append(out, allowedOption{name: name, value: value})
	}
	return out, nil
}

// checkOptions checks the words of an annotation against an allow-list and
// returns them as the program should get them. key names the config key
// that holds the allow-list, for the refusal.
func checkOptions(words []string, allowed []allowedOption, key string) ([]string, error) {
	find := func(name string) (allowedOption, bool) {
		i := slices.IndexFunc(allowed, func(o allowedOption) bool { return o.name == name })
		if i < 0 {
			return allowedOption{}, false
		}
		return allowed[i], true
	}
	refuse := func(format string, args ...any) error {
		return fmt.Errorf(format+" (%s in the sidecar's config)", append(args, key)...)
	}
	var out []string
	for i := 0; i < len(words); i++ {
		w := words[i]
		if strings.ContainsAny(w, "\n\r\x00") {
			return nil, fmt.Errorf("%q holds a newline or NUL", w)
		}
		if len(w) < 2 || w[0] != '-' || w == "--" {
			return nil, refuse("%q is not an allowed option: only options listed in %s are accepted, and no program, path or argument", w, key)
		}
		name, val, hasVal := strings.Cut(w, "=")
		o, ok := find(name)
		if !ok && !hasVal && !strings.HasPrefix(w, "--") && len(w) > 2 {
			// -xVALUE: a short option with its value attached.
			if so, sok := find(w[:2]); sok && so.value {
				out = append(out, w)
				continue
			}
		}
		if !ok {
			return nil, refuse("option %s is not allowed", name)
		}
		switch {
		case hasVal:
			// --name=VALUE: one word, whether the value is required or
			// optional.
			out = append(out, w)
			_ = val
		case o.value:
			if i+1 >= len(words) {
				return nil, fmt.Errorf("option %s needs a value", name)
			}
			v := words[i+1]
			if v == "" || strings.HasPrefix(v, "-") || v == ":" || strings.ContainsAny(v, "\n\r\x00") {
				return nil, fmt.Errorf("option %s: %q is not a value (a separate value must not start with '-', be ':' or hold a newline)", name, v)
			}
			out = append(out, w, v)
			i++
		default:
			out = append(out, w)
		}
	}
	return out, nil
}

// Default allow-lists.
var (
	// defaultSbatchFlags name no path or program and change nothing that
	// sbatch prints (its reply must stay a job ID).
	defaultSbatchFlags = []string{
		"--time=", "-t=", "--time-min=", "--nice", "--constraint=", "-C=", "--partition=", "-p=", "--account=", "-A=",
		"--qos=", "-q=", "--gres=", "--gpus=", "-G=", "--gpus-per-node=", "--gpus-per-task=", "--cpus-per-gpu=", "--mem-per-gpu=",
		"--mem=", "--mem-per-cpu=", "--cpus-per-task=", "-c=", "--ntasks=", "-n=", "--ntasks-per-node=", "--nodes=", "-N=",
		"--exclusive", "--reservation=", "--licenses=", "-L=", "--hint=", "--threads-per-core=", "--tmp=", "--begin=",
		"--deadline=", "--hold", "--requeue", "--no-requeue", "--nodelist=", "--exclude=",
	}
	// defaultSingularityOptions change what the container may use (GPUs,
	// a writable overlay in memory, a clean environment), never what it sees
	// of the host.
	defaultSingularityOptions = []string{"--nv", "--rocm", "--writable-tmpfs", "--cleanenv", "-e", "--no-eval"}
)

// neverSbatchFlags are sbatch options no allow-list may hold: they change
// what sbatch prints (its reply must be a job ID), send the job elsewhere,
// name a file or program on the host, bring in an environment, or are set
// by the sidecar.
var neverSbatchFlags = []string{
	"-V", "--version", "-h", "--help", "-u", "--usage", "--test-only", "-M", "--clusters", "-W", "--wait", "-Q", "--quiet",
	"-v", "--verbose", "--wrap", "-o", "--output", "-e", "--error", "-i", "--input", "-D", "--chdir", "--export",
	"--export-file", "--parsable", "--uid", "--gid", "-a", "--array", "--comment", "--open-mode", "-J", "--job-name",
	"--get-user-env", "--container", "--container-id", "--bbf", "--bb", "--propagate", "--ignore-pbs", "--parsable2",
}

// checkNeverSbatch refuses an allow-list that holds a forbidden option.
func checkNeverSbatch(allowed []allowedOption) error {
	for _, o := range allowed {
		if slices.Contains(neverSbatchFlags, o.name) {
			return fmt.Errorf("%s may never be allowed: the sidecar sets it, or it changes what sbatch prints or names a host file", o.name)
		}
	}
	return nil
}

// allowedWords splits an annotation into words and checks them against the
// allow-list of config key key.
func allowedWords(s string, list []string, key string) ([]string, error) {
	allowed, err := parseAllowList(list)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if len(allowed) == 0 {
		return nil, fmt.Errorf("refused: %s in the sidecar's config is empty", key)
	}
	w, err := words(s)
	if err == nil {
		w, err = checkOptions(w, allowed, key)
	}
	if err != nil && !strings.Contains(err.Error(), key) {
		err = fmt.Errorf("%w (only options listed in %s in the sidecar's config, each with a plain value, are accepted)", err, key)
	}
	return w, err
}
