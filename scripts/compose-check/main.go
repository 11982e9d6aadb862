// compose-check loads a compose file with compose-go, the loader `docker compose` itself uses, and
// prints the normalized project's services as JSON. It exits 1 with the loader's message when the
// file does not load (schema, types, interpolation, references between services).
//
// Usage: compose-check path/to/docker-compose.yml
//
// The project options are those `docker compose -f FILE config` would use: the working directory
// is the file's, the environment and a .env beside the file are interpolated, paths are resolved,
// the schema is validated. No --scale, --profile or -p: replicas are what the file says.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

type dependency struct {
	Condition string `json:"condition"`
	Required  bool   `json:"required"`
}

type port struct {
	Target    uint32 `json:"target"`
	Published string `json:"published,omitempty"`
	Protocol  string `json:"protocol,omitempty"`
	HostIP    string `json:"host_ip,omitempty"`
}

type volume struct {
	Type     string `json:"type"`
	Source   string `json:"source,omitempty"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only"`
}

type build struct {
	Context    string `json:"context"`
	Dockerfile string `json:"dockerfile,omitempty"`
}

type service struct {
	Name        string                `json:"name"`
	Image       string                `json:"image,omitempty"`
	Build       *build                `json:"build,omitempty"`
	Command     []string              `json:"command"`
	Environment map[string]*string    `json:"environment"`
	Healthcheck []string              `json:"healthcheck"`
	Replicas    int                   `json:"replicas"`
	DependsOn   map[string]dependency `json:"depends_on"`
	Ports       []port                `json:"ports"`
	Volumes     []volume              `json:"volumes"`
	Restart     string                `json:"restart,omitempty"`
}

type project struct {
	Name     string    `json:"name"`
	Services []service `json:"services"`
	Volumes  []string  `json:"volumes"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-check path/to/docker-compose.yml")
		os.Exit(2)
	}
	p, err := load(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	if err := out.Encode(describe(p)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func load(file string) (*types.Project, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	options, err := cli.NewProjectOptions([]string{abs},
		cli.WithWorkingDirectory(filepath.Dir(abs)),
		cli.WithOsEnv,
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return nil, err
	}
	return options.LoadProject(context.Background())
}

func describe(p *types.Project) project {
	out := project{Name: p.Name, Services: []service{}, Volumes: []string{}}
	for name := range p.Volumes {
		out.Volumes = append(out.Volumes, name)
	}
	sort.Strings(out.Volumes)
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		d := service{
			Name:        name,
			Image:       s.Image,
			Command:     append([]string{}, s.Command...),
			Environment: map[string]*string(s.Environment),
			Healthcheck: []string{},
			Replicas:    s.GetScale(),
			DependsOn:   map[string]dependency{},
			Ports:       []port{},
			Volumes:     []volume{},
			Restart:     s.Restart,
		}
		if d.Environment == nil {
			d.Environment = map[string]*string{}
		}
		if s.Build != nil {
			d.Build = &build{Context: s.Build.Context, Dockerfile: s.Build.Dockerfile}
		}
		if s.HealthCheck != nil && !s.HealthCheck.Disable {
			d.Healthcheck = append(d.Healthcheck, s.HealthCheck.Test...)
		}
		for dep, c := range s.DependsOn {
			d.DependsOn[dep] = dependency{Condition: c.Condition, Required: c.Required}
		}
		for _, pc := range s.Ports {
			d.Ports = append(d.Ports, port{Target: pc.Target, Published: pc.Published, Protocol: pc.Protocol, HostIP: pc.HostIP})
		}
		for _, v := range s.Volumes {
			d.Volumes = append(d.Volumes, volume{Type: v.Type, Source: v.Source, Target: v.Target, ReadOnly: v.ReadOnly})
		}
		out.Services = append(out.Services, d)
	}
	return out
}
