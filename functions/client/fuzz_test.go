package client

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// FuzzClientReplies has interLink answer arbitrary codes and bodies to every
// call of the VK's client: never a panic, every failure a typed error.
// Seeds are in testdata/fuzz/FuzzClientReplies.
func FuzzClientReplies(f *testing.F) {
	f.Add(200, []byte(`[{"name":"a","UID":"u","namespace":"n","JID":"1","containers":[],"error":{"error":"x","reason":"Unavailable"}}]`))
	f.Add(200, []byte(`{"PodUID":"u","PodJID":"1"}`))
	f.Add(503, []byte(`{"status":"down","sidecars":[{"name":"sim","up":false,"error":"x"}]}`))
	f.Add(401, []byte("unauthorized\n"))
	type answer struct {
		code int
		body []byte
	}
	var reply atomic.Pointer[answer]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		a := reply.Load()
		w.Header().Set(api.HeaderAPIVersion, api.APIVersion)
		w.WriteHeader(a.code)
		_, _ = w.Write(a.body)
	}))
	f.Cleanup(srv.Close)
	c, err := New(Config{URL: srv.URL, Retries: 1, Timeout: 2 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "n", UID: "u"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "m"}}}}
	f.Fuzz(func(t *testing.T, code int, body []byte) {
		if code < 200 || code > 599 {
			code = 200 + (code%400+400)%400
		}
		reply.Store(&answer{code, body})
		ctx := context.Background()
		check := func(op string, err error) {
			if err != nil && api.ReasonOf(err) == "" {
				t.Errorf("%s with %d %q: untyped error %v", op, code, body, err)
			}
		}
		_, err := c.Status(ctx, []*corev1.Pod{pod})
		check("status", err)
		_, err = c.Create(ctx, &api.PodCreateRequests{Pod: *pod})
		check("create", err)
		_, err = c.Ping(ctx)
		check("ping", err)
		check("delete", c.Delete(ctx, pod))
		rc, err := c.Logs(ctx, "", &api.LogRequest{Namespace: "n", PodName: "a", PodUID: "u", ContainerName: "m"})
		check("logs", err)
		if err == nil {
			_, _ = io.Copy(io.Discard, rc)
			_ = rc.Close()
		}
	})
}
