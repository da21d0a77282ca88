package layout

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// root is the module's root, from this package's directory.
const root = "../../.."

// skipDirs are directories under the root that hold no source: git's, and
// the runs `epochal jepsen` and `epochal bench` write (ignored by git).
var skipDirs = []string{".git", "jepsen-runs", "bench-runs"}

// written are markdown files the tools write, not files of the
// repository, that the code and docs name: a run's results.md (epochal
// bench writes it beside results.json), and cobra's page of a command,
// which gen-docs turns into an anchor of docs/cli.md.
var written = []string{"results.md", "epochal_refs_get.md"}

// thisFile is this test's own source, whose seeded citations are the
// checker's test data.
const thisFile = "internal/testkit/layout/mdrefs_test.go"

// mdRef is one mention of a markdown file in a file of the repository.
type mdRef struct {
	file string // the mentioning file, slash-separated, from the root
	line int
	name string // as written: FOO.md, docs/x.md, ../README.md
}

// nameByte reports whether c may be part of a file name as the docs and
// comments write them.
func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '-' || c == '.' || c == '/'
}

// mdRefs finds the markdown file names text mentions: a run of name bytes
// ending in ".md" (not followed by another name byte but a final dot).
// Names that are part of a URL (the token around them holds "://" or
// starts with "www.") are the web's, not the repository's, and are
// skipped, as are names with a format verb or a placeholder before them
// ("%s.md", "<name>.md").
func mdRefs(file, text string) []mdRef {
	var refs []mdRef
	for i := 0; ; {
		j := strings.Index(text[i:], ".md")
		if j < 0 {
			return refs
		}
		end := i + j + len(".md")
		i = end
		if end < len(text) && nameByte(text[end]) && !(text[end] == '.' && (end+1 == len(text) || !nameByte(text[end+1]))) {
			continue // .mdx, .md5, x.mdfoo
		}
		start := end - len(".md")
		for start > 0 && nameByte(text[start-1]) {
			start--
		}
		name := text[start:end]
		if path.Base(name) == ".md" {
			continue // ".md" alone: an extension, not a file
		}
		if start > 0 && (text[start-1] == '%' || text[start-1] == '>' || text[start-1] == '}') {
			continue // a format or a placeholder builds the name
		}
		tokStart, tokEnd := start, end
		for tokStart > 0 && !isSpace(text[tokStart-1]) {
			tokStart--
		}
		for tokEnd < len(text) && !isSpace(text[tokEnd]) {
			tokEnd++
		}
		tok := strings.TrimLeft(text[tokStart:tokEnd], "([<\"'`*")
		if strings.Contains(tok, "://") || strings.HasPrefix(tok, "www.") {
			continue
		}
		refs = append(refs, mdRef{file: file, line: 1 + strings.Count(text[:start], "\n"), name: name})
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// repoFiles lists the .go and .md files under dir (slash-separated, from
// dir) and every file's path, for resolving names.
func repoFiles(t *testing.T, dir string) (sources []string, all map[string]bool) {
	t.Helper()
	all = map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && slices.Contains(skipDirs, d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		all[rel] = true
		if strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, ".md") {
			sources = append(sources, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", dir, err)
	}
	return sources, all
}

// resolves reports whether ref names a file of all: relative to the root
// or to the mentioning file's directory. A bare name (no directory) also
// names a file of that name anywhere in the repository (a comment says
// "cli.md" of the page docs/cli.md), and a name that climbs ("../x.md")
// may be a link a program writes into a page one level down (gen-docs
// writes "../README.md" into docs/cli.md): it names x.md from the root.
func resolves(ref mdRef, all map[string]bool) bool {
	if slices.Contains(written, ref.name) {
		return true
	}
	climbed := ref.name
	for strings.HasPrefix(climbed, "../") {
		climbed = strings.TrimPrefix(climbed, "../")
	}
	for _, p := range []string{path.Clean(ref.name), path.Join(path.Dir(ref.file), ref.name), climbed} {
		if all[p] {
			return true
		}
	}
	if !strings.Contains(ref.name, "/") {
		for p := range all {
			if path.Base(p) == ref.name {
				return true
			}
		}
	}
	return false
}

// missingMDRefs is every mention, in a .go or .md file under dir, of a
// markdown file that is not there.
func missingMDRefs(t *testing.T, dir string) []mdRef {
	t.Helper()
	sources, all := repoFiles(t, dir)
	var missing []mdRef
	for _, f := range sources {
		if f == thisFile {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range mdRefs(f, string(b)) {
			if !resolves(r, all) {
				missing = append(missing, r)
			}
		}
	}
	return missing
}

// TestMarkdownCitationsExist: the code and the docs cite only markdown
// files the repository holds (a note kept elsewhere, such as a protocol
// write-up outside the repository, is not cited: docs/design.md holds the
// protocol, its invariants and why each holds).
func TestMarkdownCitationsExist(t *testing.T) {
	for _, r := range missingMDRefs(t, root) {
		t.Errorf("%s:%d cites %s, which is not in the repository", r.file, r.line, r.name)
	}
}

// TestMarkdownCitationsCheckerCatches: the check above finds a seeded
// citation of a missing file, in code and in docs, bare or with a
// directory, and passes the ones that exist or are the web's.
func TestMarkdownCitationsCheckerCatches(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("README.md", "See [design](docs/design.md), docs/x.md and CHANGELOG.md.\n"+
		"Keep a Changelog: https://keepachangelog.com/en/1.1.0/CHANGES.md; www.example.com/A.md\n")
	write("docs/design.md", "Back to the [README](../README.md#top); the steps are in STEPS.md.\n")
	write("docs/ops/run.md", "Up: [design](../design.md), [gone](../../GONE.md), [results](results.md).\n")
	write("backend/doc.go", "// Package backend: see docs/design.md, \"Committing\",\n// and FOO.md (I1).\npackage backend\n")
	write("cmd/gen.go", "package main\n\nconst page = \"design.md\" // written to DIR/%s.md or <name>.md\n")
	write("bench-runs/run1/results.md", "ignored: GONE.md\n")

	var got []string
	for _, r := range missingMDRefs(t, dir) {
		got = append(got, r.file+":"+r.name)
	}
	want := []string{"README.md:docs/x.md", "README.md:CHANGELOG.md", "backend/doc.go:FOO.md", "docs/design.md:STEPS.md", "docs/ops/run.md:../../GONE.md"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("missing citations found: %q, want %q", got, want)
	}
}
