package layout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/epochal/epochal"

// layers are the module's folders from the bottom up, as docs/design.md
// draws them. A folder is a top-level directory, except under internal/,
// which is a fence (Go lets only this module import it), not a layer:
// each of its directories is a folder of its own, and the test kits are
// one folder, internal/testkit. A package may import only packages of
// folders in lower layers (or its own folder).
var layers = [][]string{
	{"clock"},
	{"history"},
	{"backend"}, // the driver contract and the drivers
	{"internal/detach", "internal/goid", "internal/names", "internal/servers", "internal/lease"},
	{"internal/engine"},
	{"txn"},
	{"stm"},
	{"refs", "locks", "group"},
	{"backendtest", "internal/bench", "jepsen-lite"},
	{"internal/testkit"},
	{"cmd"},
}

// folder is the folder of package path p of this module.
func folder(p string) string {
	rel := strings.TrimPrefix(strings.TrimPrefix(p, module), "/")
	parts := strings.Split(rel, "/")
	if parts[0] == "internal" && len(parts) > 1 {
		return "internal/" + parts[1]
	}
	return parts[0]
}

func layerOf(f string) int {
	for i, l := range layers {
		if slices.Contains(l, f) {
			return i
		}
	}
	return -1
}

type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
	Export     string
	Standard   bool
	Module     *struct{ Path string }
}

// list runs go list -json with args in the module's root.
func list(t *testing.T, args ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Dir = "../../.."
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, errb.String())
	}
	var ps []pkg
	dec := json.NewDecoder(&out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

// TestImportsRunDown checks that no import (tests aside: go list -deps)
// runs from a folder to one in a higher layer, or to a folder the layers do
// not name.
func TestImportsRunDown(t *testing.T) {
	var bad []string
	for _, p := range list(t, "./...") {
		from := folder(p.ImportPath)
		lf := layerOf(from)
		if lf < 0 {
			bad = append(bad, fmt.Sprintf("%s: folder %s is in no layer (add it to layers and to docs/design.md)", p.ImportPath, from))
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			to := folder(imp)
			if to == from {
				continue
			}
			if lt := layerOf(to); lt < 0 || lt >= lf {
				bad = append(bad, fmt.Sprintf("%s (%s, layer %d) imports %s (%s, layer %d): the arrow runs up", p.ImportPath, from, lf, imp, to, lt))
			}
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d imports run the wrong way:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}

// standAlone are the packages that import nothing from this module: the
// history checkers, so that they can check any history, written by
// jepsen-lite or elsewhere.
var standAlone = []string{module + "/jepsen-lite/check"}

// TestCheckersStandAlone checks that standAlone's packages import nothing
// from this module, directly or not.
func TestCheckersStandAlone(t *testing.T) {
	for _, p := range list(t, "-deps", standAlone[0]) {
		if strings.HasPrefix(p.ImportPath, module) && !slices.Contains(standAlone, p.ImportPath) {
			t.Errorf("%s depends on %s", standAlone[0], p.ImportPath)
		}
	}
}

// engineOnly are the driver methods that write or read transaction
// records and intents, and commit: the commit protocol's steps. Outside
// the engine only the drivers themselves (and their wrappers under
// backend/) and the conformance suite, which checks them, call them.
var engineOnly = []string{
	"PutRecord", "CommitRecord", "AbortRecord", "Records", "ListRecords", "DeleteRecord",
	"Lock", "Stage", "Resolve", "CommitOnePhase",
}

func mayCallDrivers(path string) bool {
	f := folder(path)
	return f == "internal/engine" || f == "backend" || f == "backendtest"
}

// TestOnlyTheEngineCallsRecordsAndIntents type-checks every other package
// (its non-test files) and fails on a call of one of engineOnly on a
// driver (a method declared in package backend or a driver under it).
func TestOnlyTheEngineCallsRecordsAndIntents(t *testing.T) {
	deps := list(t, "-export", "-deps", "./...")
	exports := map[string]string{}
	for _, p := range deps {
		exports[p.ImportPath] = p.Export
	}
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exports[path]
		if !ok || f == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(f)
	})
	checked := 0
	var bad []string
	for _, p := range deps {
		if p.Standard || !strings.HasPrefix(p.ImportPath, module) || mayCallDrivers(p.ImportPath) {
			continue
		}
		var files []*ast.File
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		info := &types.Info{Selections: map[*ast.SelectorExpr]*types.Selection{}}
		conf := types.Config{Importer: imp}
		if _, err := conf.Check(p.ImportPath, fset, files, info); err != nil {
			t.Fatalf("type-check %s: %v", p.ImportPath, err)
		}
		checked++
		for sel, s := range info.Selections {
			fn, ok := s.Obj().(*types.Func)
			if !ok || fn.Pkg() == nil || !slices.Contains(engineOnly, fn.Name()) {
				continue
			}
			fp := fn.Pkg().Path()
			if fp == module+"/internal/engine" {
				continue // the engine's own faces (Inspector)
			}
			// A driver's method, or one of an interface declared elsewhere
			// that names the contract's types (a local interface over a
			// driver).
			if isBackend(fp) || mentionsBackend(fn.Type().(*types.Signature)) {
				bad = append(bad, fmt.Sprintf("%s: %s calls %s.%s", fset.Position(sel.Pos()), p.ImportPath, fn.Pkg().Name(), fn.Name()))
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d packages checked: the test no longer finds the module's packages", checked)
	}
	if len(bad) > 0 {
		t.Errorf("outside the engine, %d calls of a driver's record, intent or commit methods:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}

func isBackend(path string) bool {
	return path == module+"/backend" || strings.HasPrefix(path, module+"/backend/")
}

// mentionsBackend reports whether a parameter or result of sig is, or
// holds, a type of package backend.
func mentionsBackend(sig *types.Signature) bool {
	for _, tup := range []*types.Tuple{sig.Params(), sig.Results()} {
		for i := 0; i < tup.Len(); i++ {
			t := tup.At(i).Type()
			for {
				switch u := t.(type) {
				case *types.Pointer:
					t = u.Elem()
					continue
				case *types.Slice:
					t = u.Elem()
					continue
				}
				break
			}
			if n, ok := t.(*types.Named); ok && n.Obj().Pkg() != nil && isBackend(n.Obj().Pkg().Path()) {
				return true
			}
		}
	}
	return false
}
