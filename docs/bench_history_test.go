package docs

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// benchRun is one line of bench/history.jsonl (written by make bench-chain).
type benchRun struct {
	When    string             `json:"when"`
	Bench   string             `json:"bench"`
	Machine map[string]string  `json:"machine"`
	Figures map[string]float64 `json:"figures"`
}

// TestBenchHistory checks bench/history.jsonl (each line a run with its
// time, bench, CPU model and figures) and prints, for each bench, its last
// run beside the earlier runs on the same CPU model: each figure (lower is
// better) and its ratio to the median of those runs, marked when it is 20%
// worse. make bench-compare runs it.
func TestBenchHistory(t *testing.T) {
	f, err := os.Open("bench/history.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var runs []benchRun
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var r benchRun
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("bench/history.jsonl:%d: %v", n, err)
		}
		if _, err := time.Parse(time.RFC3339, r.When); err != nil || r.Bench == "" || r.Machine["cpu"] == "" || len(r.Figures) == 0 {
			t.Fatalf("bench/history.jsonl:%d: want when (RFC 3339), bench, machine.cpu and figures: %s", n, sc.Text())
		}
		runs = append(runs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(runs) == 0 {
		t.Fatal("bench/history.jsonl holds no run")
	}
	var b strings.Builder
	for _, bench := range benches(runs) {
		compare(&b, bench, runs)
	}
	t.Log("\n" + b.String())
}

func benches(runs []benchRun) []string {
	var out []string
	for _, r := range runs {
		if !slices.Contains(out, r.Bench) {
			out = append(out, r.Bench)
		}
	}
	return out
}

// compare writes the last run of bench beside its earlier runs on the same
// CPU model.
func compare(b *strings.Builder, bench string, runs []benchRun) {
	var same []benchRun
	for _, r := range runs {
		if r.Bench == bench {
			same = append(same, r)
		}
	}
	last := same[len(same)-1]
	var earlier []benchRun
	for _, r := range same[:len(same)-1] {
		if r.Machine["cpu"] == last.Machine["cpu"] {
			earlier = append(earlier, r)
		}
	}
	fmt.Fprintf(b, "%s: run of %s on %s (%s cores), beside %d earlier run(s) on that CPU\n", bench, last.When, last.Machine["cpu"], last.Machine["cores"], len(earlier))
	w := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprint(w, "figure\tthis run")
	for _, r := range earlier {
		fmt.Fprintf(w, "\t%s", r.When[:10])
	}
	fmt.Fprint(w, "\tratio to their median\n")
	names := make([]string, 0, len(last.Figures))
	for n := range last.Figures {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v := last.Figures[n]
		fmt.Fprintf(w, "%s\t%.2f", n, v)
		var past []float64
		for _, r := range earlier {
			if pv, ok := r.Figures[n]; ok {
				fmt.Fprintf(w, "\t%.2f", pv)
				past = append(past, pv)
			} else {
				fmt.Fprint(w, "\t-")
			}
		}
		if m := median(past); m > 0 {
			mark := ""
			if v/m > 1.2 {
				mark = "  worse"
			}
			fmt.Fprintf(w, "\t%.2f%s", v/m, mark)
		} else {
			fmt.Fprint(w, "\t-")
		}
		fmt.Fprintln(w)
	}
	_ = w.Flush()
	b.WriteString("\n")
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
