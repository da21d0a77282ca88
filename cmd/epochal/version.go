package main

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"

	"github.com/spf13/cobra"
)

// What version prints when the binary carries no such stamp.
const (
	// develVersion is what the go command records as the main module's
	// version when it is built from a checkout (go build, go run) rather
	// than installed at a version (go install ...@v1.2.3).
	develVersion = "(devel)"
	// unknownRevision stands for a VCS revision the binary was not stamped
	// with: built with -buildvcs=false, outside a repository, or
	// installed at a tagged version (the go command stamps only builds in
	// a checkout).
	unknownRevision = "unknown revision"
)

// modulePath is the module epochal belongs to, named when the binary
// carries no build information at all.
const modulePath = "github.com/epochal/epochal"

// buildOut is what `epochal version --json` prints.
type buildOut struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Revision string `json:"revision"`
	// RevisionTime is the commit time of Revision (RFC 3339), empty when
	// unknown.
	RevisionTime string `json:"revision_time,omitempty"`
	// Modified says the checkout had uncommitted changes when built.
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// pseudoRev is the revision at the end of a pseudo-version
// (v0.0.0-20260101120000-0123456789ab), which go install @latest records
// for an untagged commit instead of VCS settings.
var pseudoRev = regexp.MustCompile(`\d{14}-([0-9a-f]{12})(\+incompatible)?$`)

// buildVersion reads what the go command stamped into the binary (bi, ok
// from debug.ReadBuildInfo), naming what is absent as "(devel)" and
// "unknown revision".
func buildVersion(bi *debug.BuildInfo, ok bool) buildOut {
	v := buildOut{
		Module:   modulePath,
		Version:  develVersion,
		Revision: unknownRevision,
		Go:       runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH,
	}
	if !ok || bi == nil {
		return v
	}
	if bi.GoVersion != "" {
		v.Go = bi.GoVersion
	}
	if bi.Main.Path != "" {
		v.Module = bi.Main.Path
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				v.Revision = s.Value
			}
		case "vcs.time":
			v.RevisionTime = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	if v.Revision == unknownRevision {
		if m := pseudoRev.FindStringSubmatch(v.Version); m != nil {
			v.Revision = m[1]
		}
	}
	return v
}

// text is the human form: the version, then one line each for the
// module, the revision and the toolchain.
func (v buildOut) text() string {
	rev := v.Revision
	if v.RevisionTime != "" {
		rev += " (" + v.RevisionTime + ")"
	}
	if v.Modified {
		rev += ", modified"
	}
	return fmt.Sprintf("epochal %s\nmodule:   %s\nrevision: %s\ngo:       %s %s\n", v.Version, v.Module, rev, v.Go, v.Platform)
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS revision and Go version epochal was built with",
		Long: `version prints the module version of this binary (a tag such as v1.2.3,
a pseudo-version, or "(devel)" when built from a checkout), the VCS revision
it was built from ("unknown revision" when the build was not stamped: built
with -buildvcs=false, outside a repository, or installed at a tag) and the
Go version and platform it was built with, all read from the binary's own
build information. With --json (or -o json), one JSON object: module,
version, revision, revision_time and modified (when stamped), go,
platform; with -o yaml the same as YAML. It ignores the backend flags and
variables.`,
		Example: "  epochal version\n  epochal version --json\n  epochal -o yaml version",
		Args:    noArgs,
		// The root's hook checks the backend flags; a version must print
		// whatever they say (EPOCHAL_BACKEND=bogus included).
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, _ []string) error {
			format := outputTable
			if fl := cmd.Flags().Lookup("output"); fl != nil {
				format = fl.Value.String()
				if !slices.Contains([]string{outputTable, outputJSON, outputYAML}, format) {
					return usagef("-o %q: want table, json or yaml", format)
				}
				if asJSON {
					if fl.Changed && format != outputJSON {
						return usagef("--json and -o %s: pick one", format)
					}
					format = outputJSON
				}
			} else if asJSON {
				format = outputJSON
			}
			bi, ok := debug.ReadBuildInfo()
			return printVersion(cmd.OutOrStdout(), buildVersion(bi, ok), format)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object (the same as -o json)")
	return cmd
}

// printVersion prints v in the format -o names: table (the text), json or
// yaml.
func printVersion(w io.Writer, v buildOut, format string) error {
	switch format {
	case outputJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case outputYAML:
		return printYAML(w, v, false)
	}
	_, err := io.WriteString(w, v.text())
	return err
}
