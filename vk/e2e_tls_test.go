//go:build e2e

package vk_test

import "crypto/tls"

// insecure skips server verification: the test only checks that the kubelet
// API refuses a client that presents no credentials.
func insecure() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } //nolint:gosec // test of an auth refusal
