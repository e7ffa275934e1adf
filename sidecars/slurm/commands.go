package slurm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/seed-3f807049/interlink/functions/api"
)

// commands runs Slurm's commands with a bounded time and a clean
// environment: the sidecar's own variables (tokens, say) never reach a job.
type commands struct {
	timeout time.Duration
	env     []string
	// observe, if set, is told each command's name, duration and error.
	observe func(name string, d time.Duration, err error)
}

// passedEnv are the sidecar's variables that sbatch and friends get.
var passedEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "TMPDIR", "SLURM_CONF"}

func newCommands(cfg *Config) *commands {
	var env []string
	for _, k := range passedEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	if _, ok := os.LookupEnv("USER"); !ok {
		// Under systemd or in a container USER may be unset; ch-run and
		// others refuse to start without it.
		if u, err := user.Current(); err == nil {
			env = append(env, "USER="+u.Username)
		}
	}
	keys := make([]string, 0, len(cfg.JobEnv))
	for k := range cfg.JobEnv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+cfg.JobEnv[k])
	}
	return &commands{timeout: cfg.CommandTimeout.Duration, env: env}
}

// run runs argv and returns its standard output. A failure is Unavailable
// (Slurm could not be asked) and carries the command's standard error.
func (c *commands) run(ctx context.Context, argv ...string) ([]byte, error) {
	return c.exec(ctx, nil, 0, argv)
}

// runInput is run with stdin as the command's standard input.
func (c *commands) runInput(ctx context.Context, stdin []byte, argv ...string) ([]byte, error) {
	return c.exec(ctx, stdin, 0, argv)
}

// runCapped is run reading at most limit bytes of standard output: more is
// an Unavailable error.
func (c *commands) runCapped(ctx context.Context, limit int, argv ...string) ([]byte, error) {
	return c.exec(ctx, nil, limit, argv)
}

// commandWaitDelay is how long a command's output is waited for once it
// exited or was killed: a child it left holding its output (a script's
// background process) ends the wait then.
const commandWaitDelay = 2 * time.Second

// exec runs argv within the timeout, reading at most limit bytes of its
// standard output (0: no limit). The command runs in a process group of
// its own, killed whole at the timeout.
func (c *commands) exec(ctx context.Context, stdin []byte, limit int, argv []string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// argv is run directly, never through a shell; the commands' paths come
	// from the operator's config.
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...) //nolint:gosec // see above
	cmd.Env = c.env
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = commandWaitDelay
	stdout := &cappedBuffer{limit: limit}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	if err != nil || stdout.over {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2048 {
			msg = msg[:2048] + "..."
		}
		var ee *exec.ExitError
		switch {
		case stdout.over:
			err = api.Unavailable("%s: more than %d bytes of output", argv[0], limit)
		case ctx.Err() != nil:
			err = api.Unavailable("%s: no answer within %s", argv[0], c.timeout)
		case errors.As(err, &ee):
			err = api.NewError(api.ReasonUnavailable, "%w", &cmdError{name: argv[0], code: ee.ExitCode(), stderr: msg})
		case errors.Is(err, exec.ErrWaitDelay):
			err = api.Unavailable("%s: it exited, but a process it started kept its output open", argv[0])
		default:
			err = api.Unavailable("%s: %w", argv[0], err)
		}
	}
	if c.observe != nil {
		c.observe(argv[0], time.Since(start), err)
	}
	return stdout.buf.Bytes(), err
}

// cappedBuffer keeps up to limit bytes (0: any) and notes whether more
// came; a write past the limit fails, which ends the command's output.
type cappedBuffer struct {
	buf   bytes.Buffer
	limit int
	over  bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if c.limit > 0 && c.buf.Len()+len(p) > c.limit {
		c.over = true
		return 0, errors.New("output too long")
	}
	return c.buf.Write(p)
}

// cmdError is a Slurm command that ran and failed.
type cmdError struct {
	name   string
	code   int
	stderr string
}

func (e *cmdError) Error() string {
	return fmt.Sprintf("%s exited with code %d: %s", e.name, e.code, e.stderr)
}
