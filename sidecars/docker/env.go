package docker

// dockerEnv is env as Docker takes it (NAME=value), each name once, where
// it was first defined, with its last value, as the kubelet makes a
// container's environment.
func dockerEnv(env [][2]string) []string {
	if len(env) == 0 {
		return nil
	}
	at := make(map[string]int, len(env))
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if i, ok := at[kv[0]]; ok {
			out[i] = kv[0] + "=" + kv[1]
			continue
		}
		at[kv[0]] = len(out)
		out = append(out, kv[0]+"="+kv[1])
	}
	return out
}
