package observability

import (
	"encoding/json"
	"fmt"
	"os"
)

// Panel is what the project's checks read of a Grafana dashboard panel.
type Panel struct {
	ID      int    `json:"id"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// ReadDashboard returns the panels of the dashboard JSON file at path.
func ReadDashboard(path string) ([]Panel, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []Panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("dashboard %s: %w", path, err)
	}
	return d.Panels, nil
}
