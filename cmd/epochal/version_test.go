package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestVersionUnstamped: a binary without build information, or whose main
// module carries no version and no VCS settings, says "(devel)" and
// "unknown revision", and still names the module and the Go version.
func TestVersionUnstamped(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
	}{
		{"no build info", nil, false},
		{"checkout built with -buildvcs=false", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: modulePath, Version: "(devel)"}}, true},
		{"empty main module", &debug.BuildInfo{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := buildVersion(tc.bi, tc.ok)
			want := buildOut{Module: modulePath, Version: "(devel)", Revision: "unknown revision",
				Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
			if tc.bi != nil && tc.bi.GoVersion != "" {
				want.Go = tc.bi.GoVersion
			}
			if v != want {
				t.Errorf("buildVersion = %+v, want %+v", v, want)
			}
			for _, line := range []string{"epochal (devel)\n", "module:   " + modulePath + "\n", "revision: unknown revision\n", "go:       " + want.Go + " " + want.Platform + "\n"} {
				if !strings.Contains(v.text(), line) {
					t.Errorf("text lacks %q:\n%s", line, v.text())
				}
			}
		})
	}
}

// TestVersionStamped: a tagged version, the VCS revision, its time and an
// uncommitted change are all reported; a pseudo-version's revision is read
// from the version when no VCS setting names it.
func TestVersionStamped(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.3",
		Main:      debug.Module{Path: modulePath, Version: "v1.2.3"},
		Settings: []debug.BuildSetting{
			{Key: "-buildmode", Value: "exe"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "34d8879aa0c5d1a8a5e2c7f0e9b6d4c3b2a10987"},
			{Key: "vcs.time", Value: "2026-12-05T21:40:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	v := buildVersion(bi, true)
	want := buildOut{Module: modulePath, Version: "v1.2.3", Revision: "34d8879aa0c5d1a8a5e2c7f0e9b6d4c3b2a10987",
		RevisionTime: "2026-12-05T21:40:00Z", Modified: true, Go: "go1.26.3", Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if v != want {
		t.Errorf("buildVersion = %+v, want %+v", v, want)
	}
	if want := "revision: 34d8879aa0c5d1a8a5e2c7f0e9b6d4c3b2a10987 (2026-12-05T21:40:00Z), modified\n"; !strings.Contains(v.text(), want) {
		t.Errorf("text lacks %q:\n%s", want, v.text())
	}

	for version, rev := range map[string]string{
		"v0.0.0-20261205214000-0123456789ab":              "0123456789ab",
		"v1.2.4-0.20261205214000-0123456789ab":            "0123456789ab",
		"v2.0.0-20261205214000-0123456789ab+incompatible": "0123456789ab",
		"v1.2.3": "unknown revision",
	} {
		got := buildVersion(&debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: version}}, true)
		if got.Version != version || got.Revision != rev {
			t.Errorf("installed at %s: version %q, revision %q; want revision %q", version, got.Version, got.Revision, rev)
		}
	}
}

// TestVersionCommand runs `epochal version` in-process: it reports this
// binary's own build information, as JSON with --json, whatever the
// backend variables say, and refuses arguments.
func TestVersionCommand(t *testing.T) {
	t.Setenv(envBackend, "bogus") // the root's hook would refuse it
	bi, ok := debug.ReadBuildInfo()
	want := buildVersion(bi, ok)

	out, _, err := runCLI(t, "version", "--json")
	if err != nil {
		t.Fatalf("epochal version --json: %v", err)
	}
	var got buildOut
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("epochal version --json printed no JSON object: %v\n%s", err, out)
	}
	if got != want {
		t.Errorf("epochal version --json = %+v, want %+v", got, want)
	}
	if got.Module != modulePath || got.Go != runtime.Version() || got.Version == "" || got.Revision == "" {
		t.Errorf("epochal version --json = %+v: want module %s, Go %s, a version and a revision", got, modulePath, runtime.Version())
	}

	out, _, err = runCLI(t, "version")
	if err != nil {
		t.Fatalf("epochal version: %v", err)
	}
	if out != want.text() {
		t.Errorf("epochal version printed\n%s\nwant\n%s", out, want.text())
	}

	if _, _, err := runCLI(t, "version", "extra"); exitCode(err) != exitUsage {
		t.Errorf("epochal version extra: %v (exit %d), want a usage error", err, exitCode(err))
	}

	// -o: json is --json, yaml the same document, table the text.
	asJSON, _, _ := runCLI(t, "version", "--json")
	for _, args := range [][]string{{"-o", "json", "version"}, {"version", "--output", "json"}, {"-o", "json", "version", "--json"}} {
		if out, _, err := runCLI(t, args...); err != nil || out != asJSON {
			t.Errorf("epochal %v: %v, printed\n%s\nwant what version --json prints\n%s", args, err, out, asJSON)
		}
	}
	out, _, err = runCLI(t, "-o", "yaml", "version")
	var fromYAML buildOut
	if yerr := yaml.Unmarshal([]byte(out), &fromYAML); err != nil || yerr != nil || fromYAML != want || strings.HasPrefix(out, "{") {
		t.Errorf("epochal -o yaml version: %v, %v, printed\n%s", err, yerr, out)
	}
	if out, _, err := runCLI(t, "-o", "table", "version"); err != nil || out != want.text() {
		t.Errorf("epochal -o table version: %v, printed\n%s", err, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "xml", "version"}, `-o "xml"`},
		{[]string{"-o", "yaml", "version", "--json"}, "pick one"},
	} {
		if _, _, err := runCLI(t, c.args...); exitCode(err) != exitUsage || !strings.Contains(err.Error(), c.want) {
			t.Errorf("epochal %v: exit %d, %v; want exit 2 saying %q", c.args, exitCode(err), err, c.want)
		}
	}
}

// TestVersionBinaryWithoutVCS builds the command with -buildvcs=false, as
// this repository's builds are, and runs it: the binary says "(devel)" and
// "unknown revision" and names the toolchain that built it.
func TestVersionBinaryWithoutVCS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	gomod, err := exec.CommandContext(t.Context(), "go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "epochal")
	build := exec.CommandContext(t.Context(), "go", "build", "-buildvcs=false", "-o", bin, "./cmd/epochal")
	build.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	goVersion, err := exec.CommandContext(t.Context(), "go", "env", "GOVERSION").Output()
	if err != nil {
		t.Fatalf("go env GOVERSION: %v", err)
	}

	out, stderr, code := runBinary(t, bin, nil, "version", "--json")
	if code != 0 {
		t.Fatalf("epochal version --json: exit %d: %s", code, stderr)
	}
	var got buildOut
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("epochal version --json printed no JSON object: %v\n%s", err, out)
	}
	want := buildOut{Module: modulePath, Version: "(devel)", Revision: "unknown revision",
		Go: strings.TrimSpace(string(goVersion)), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if got != want {
		t.Errorf("epochal version --json = %+v, want %+v", got, want)
	}
	out, stderr, code = runBinary(t, bin, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "epochal (devel)\n") || !strings.Contains(out, "revision: unknown revision\n") {
		t.Errorf("epochal version: exit %d, printed\n%s%s", code, out, stderr)
	}
}
