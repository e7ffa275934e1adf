package vk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/seed-3f807049/interlink/observability/config"
)

// This file reads the shapes of the original interLink VK's config file
// that differ from ours: lists where we take maps, objects where we take
// strings, and the keys of versions before 0.4.

// Labels is NodeLabels: a map (ours) or the original's list of "key=value"
// strings.
type Labels map[string]string

// UnmarshalJSON accepts {"k": "v"} or ["k=v", ...]. An item of the list
// without "=" is refused (the original skipped it with a warning).
func (l *Labels) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var items []string
		if err := json.Unmarshal(b, &items); err != nil {
			return fmt.Errorf("NodeLabels: want a map or a list of \"key=value\" strings: %w", err)
		}
		out := Labels{}
		for _, it := range items {
			k, v, ok := strings.Cut(it, "=")
			if !ok || strings.TrimSpace(k) == "" {
				return fmt.Errorf("NodeLabels item %q: want \"key=value\"", it)
			}
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
		*l = out
		return nil
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("NodeLabels: want a map or a list of \"key=value\" strings: %w", err)
	}
	*l = m
	return nil
}

// Taints is NodeTaints: our "key=value:Effect" strings, or the original's
// {Key, Value, Effect} objects. Our list replaces the default taint; the
// original's objects are added after it, as the original does.
type Taints []string

// originalTaint is one item of the original's NodeTaints.
type originalTaint struct {
	Key    string `json:"Key"`
	Value  string `json:"Value"`
	Effect string `json:"Effect"`
}

// UnmarshalJSON accepts a list mixing both forms; any object keeps the
// default taint first.
func (t *Taints) UnmarshalJSON(b []byte) error {
	var items []json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		return fmt.Errorf("NodeTaints: want a list: %w", err)
	}
	out := Taints{}
	original := false
	for _, raw := range items {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			out = append(out, s)
			continue
		}
		var o originalTaint
		if err := json.Unmarshal(raw, &o); err != nil {
			return fmt.Errorf("NodeTaints item %s: want \"key=value:Effect\" or {Key, Value, Effect}", raw)
		}
		original = true
		// Checked with the string form by Config.Taints: an unknown or
		// empty effect is refused there (the original made it NoSchedule).
		out = append(out, o.Key+"="+o.Value+":"+o.Effect)
	}
	if original {
		out = append(Taints{DefaultTaint}, out...)
	}
	*t = out
	return nil
}

// UnmarshalJSON reads Resources; Accelerators is our map or the original's
// list of {ResourceType, Model, Available}.
func (r *Resources) UnmarshalJSON(b []byte) error {
	type plain Resources // without this method
	v := struct {
		*plain
		Accelerators json.RawMessage `json:"Accelerators"`
	}{plain: (*plain)(r)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	acc := bytes.TrimSpace(v.Accelerators)
	switch {
	case len(acc) == 0 || string(acc) == "null":
	case acc[0] == '[':
		return r.originalAccelerators(acc)
	default:
		var m map[string]string
		if err := json.Unmarshal(acc, &m); err != nil {
			return fmt.Errorf("Resources.Accelerators: want a map of counts or a list of {ResourceType, Model, Available}: %w", err)
		}
		r.Accelerators = m
	}
	return nil
}

// originalAccelerator is one item of the original's Accelerators. Available
// was a number up to 0.6.0 and a quantity string since 0.6.1.
type originalAccelerator struct {
	ResourceType string          `json:"ResourceType"`
	Model        string          `json:"Model"`
	Available    json.RawMessage `json:"Available"`
}

// originalAccelerators sums the items by type (zero totals are left out,
// as the original does) and keeps each type's model for the node labels.
func (r *Resources) originalAccelerators(b []byte) error {
	var items []originalAccelerator
	if err := json.Unmarshal(b, &items); err != nil {
		return fmt.Errorf("Resources.Accelerators: want a list of {ResourceType, Model, Available}: %w", err)
	}
	sums := map[string]resource.Quantity{}
	models := map[string]string{}
	for _, it := range items {
		if it.ResourceType == "" {
			return fmt.Errorf("Resources.Accelerators item %+v: ResourceType is empty", it)
		}
		q, err := quantityOf(it.Available)
		if err != nil {
			return fmt.Errorf("Resources.Accelerators %s: Available %s: %w", it.ResourceType, it.Available, err)
		}
		s := sums[it.ResourceType]
		s.Add(q)
		sums[it.ResourceType] = s
		if it.Model != "" {
			models[it.ResourceType] = it.Model
		}
	}
	r.Accelerators = map[string]string{}
	for k, q := range sums {
		if !q.IsZero() {
			r.Accelerators[k] = q.String()
		}
	}
	r.models = models
	return nil
}

// quantityOf reads a number or a quantity string; empty or null is 0.
func quantityOf(raw json.RawMessage) (resource.Quantity, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" || string(raw) == `""` {
		return resource.Quantity{}, nil
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return resource.Quantity{}, err
		}
	}
	q, err := resource.ParseQuantity(strings.TrimSpace(s))
	if err != nil {
		return resource.Quantity{}, err
	}
	if q.Sign() < 0 {
		return resource.Quantity{}, errors.New("negative")
	}
	return q, nil
}

// acceleratorLabels are the node labels the original sets from an
// accelerator's Model, by resource type.
var acceleratorLabels = map[string]string{
	"nvidia.com/gpu":  "nvidia-gpu-type",
	"xilinx.com/fpga": "xilinx-fpga-type",
	"intel.com/fpga":  "intel-fpga-type",
}

// modelLabels returns the labels of the accelerators' models, and the types
// whose model gives no label (the original warns about them).
func (r *Resources) modelLabels() (labels map[string]string, unlabelled []string) {
	labels = map[string]string{}
	for typ, model := range r.models {
		if l, ok := acceleratorLabels[strings.ToLower(typ)]; ok {
			labels[l] = model
			continue
		}
		unlabelled = append(unlabelled, typ)
	}
	sort.Strings(unlabelled)
	return labels, unlabelled
}

// legacyKeys are the top-level keys of the original before 0.4 (0.3.x),
// which went into Resources later.
var legacyKeys = []string{"CPU", "Memory", "Pods", "nvidia.com/gpu"}

// UnmarshalJSON reads Config, and the pre-0.4 top-level CPU, Memory, Pods
// and nvidia.com/gpu into Resources.
func (c *Config) UnmarshalJSON(b []byte) error {
	type plain Config // without this method
	v := struct {
		*plain
		CPU    *string         `json:"CPU"`
		Memory *string         `json:"Memory"`
		Pods   *string         `json:"Pods"`
		GPU    json.RawMessage `json:"nvidia.com/gpu"`
	}{plain: (*plain)(c)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	// A Resources block, if any, wins over the old keys.
	var res struct {
		Resources map[string]json.RawMessage `json:"Resources"`
	}
	_ = json.Unmarshal(b, &res)
	set := func(name string, dst *string, val *string) {
		if _, inBlock := res.Resources[name]; val != nil && !inBlock {
			*dst = *val
		}
	}
	set("CPU", &c.Resources.CPU, v.CPU)
	set("Memory", &c.Resources.Memory, v.Memory)
	set("Pods", &c.Resources.Pods, v.Pods)
	if len(v.GPU) > 0 {
		q, err := quantityOf(v.GPU)
		if err != nil {
			return fmt.Errorf("nvidia.com/gpu %s: %w", v.GPU, err)
		}
		if _, ok := c.Resources.Accelerators["nvidia.com/gpu"]; !ok && !q.IsZero() {
			if c.Resources.Accelerators == nil {
				c.Resources.Accelerators = map[string]string{}
			}
			c.Resources.Accelerators["nvidia.com/gpu"] = q.String()
		}
	}
	return nil
}

// Network is the original's Network block (tunnel and mesh), read as is:
// this VK has neither.
type Network map[string]any

// on tells whether the boolean key is true.
func (n Network) on(key string) bool {
	b, _ := n[key].(bool)
	return b
}

// idle lists the keys set that have no effect with the tunnel and mesh off.
func (n Network) idle() []string {
	var out []string
	for k, v := range config.SortedByKey(n) {
		if b, isBool := v.(bool); (k == "EnableTunnel" || k == "FullMesh") && (!isBool || !b) {
			continue
		}
		if v != nil && v != "" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
