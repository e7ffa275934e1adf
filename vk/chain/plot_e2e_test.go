//go:build e2e

package chain_test

import (
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

const plotW, plotH = 7 * vg.Inch, 3.5 * vg.Inch

// plotLatency draws each pod's create -> Running latency against the time
// it was created.
func plotLatency(path, title string, at, lat []float64) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "pod created at (s since the start of the run)"
	p.Y.Label.Text = "create -> Running (s)"
	xys := make(plotter.XYs, len(at))
	for i := range at {
		xys[i].X, xys[i].Y = at[i], lat[i]
	}
	sc, err := plotter.NewScatter(xys)
	if err != nil {
		return err
	}
	sc.Radius = vg.Points(1.2)
	sc.Color = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	p.Add(sc, plotter.NewGrid())
	p.Y.Min = 0
	return p.Save(plotW, plotH, path)
}

// plotHistogram draws the distribution of latencies.
func plotHistogram(path, title string, lat []float64) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "create -> Running (s)"
	p.Y.Label.Text = "pods"
	h, err := plotter.NewHist(plotter.Values(lat), 40)
	if err != nil {
		return err
	}
	h.FillColor = color.RGBA{R: 31, G: 119, B: 180, A: 200}
	p.Add(h, plotter.NewGrid())
	return p.Save(plotW, plotH, path)
}

// plotPhases draws how many pods were in each state over a run.
func plotPhases(path, title string, samples []sample) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "time (s)"
	p.Y.Label.Text = "pods"
	series := []struct {
		name string
		c    color.RGBA
		get  func(sample) int
	}{
		{"created", color.RGBA{R: 127, G: 127, B: 127, A: 255}, func(s sample) int { return s.Created }},
		{"Pending", color.RGBA{R: 255, G: 127, B: 14, A: 255}, func(s sample) int { return s.Pending }},
		{"Running", color.RGBA{R: 44, G: 160, B: 44, A: 255}, func(s sample) int { return s.Running }},
		{"finished", color.RGBA{R: 31, G: 119, B: 180, A: 255}, func(s sample) int { return s.Done }},
		{"deleted", color.RGBA{R: 214, G: 39, B: 40, A: 255}, func(s sample) int { return s.Gone }},
	}
	for _, se := range series {
		xys := make(plotter.XYs, len(samples))
		nonzero := false
		for i, s := range samples {
			xys[i].X, xys[i].Y = s.At, float64(se.get(s))
			nonzero = nonzero || se.get(s) > 0
		}
		if !nonzero {
			continue
		}
		if err := addLine(p, se.name, se.c, xys); err != nil {
			return err
		}
	}
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = true, true
	return p.Save(plotW, plotH, path)
}

// plotRSS draws the resident memory of the VK and interlink over a run.
func plotRSS(path, title string, samples []sample) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "time (s)"
	p.Y.Label.Text = "RSS (MB)"
	for _, se := range []struct {
		name string
		c    color.RGBA
		get  func(sample) float64
	}{
		{"interlink-vk", color.RGBA{R: 31, G: 119, B: 180, A: 255}, func(s sample) float64 { return s.VKRSSMB }},
		{"interlink", color.RGBA{R: 255, G: 127, B: 14, A: 255}, func(s sample) float64 { return s.InterlinkRSSMB }},
	} {
		xys := make(plotter.XYs, len(samples))
		for i, s := range samples {
			xys[i].X, xys[i].Y = s.At, se.get(s)
		}
		if err := addLine(p, se.name, se.c, xys); err != nil {
			return err
		}
	}
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = true, true
	return p.Save(plotW, plotH, path)
}

// addLine draws xys on p as a line named in the legend.
func addLine(p *plot.Plot, name string, c color.RGBA, xys plotter.XYs) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color, l.Width = c, vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}
