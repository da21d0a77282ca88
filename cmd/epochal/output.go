package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// Output formats of -o.
const (
	outputTable = "table"
	outputJSON  = "json"
	outputYAML  = "yaml"
)

// annotInspect marks the inspecting commands: the ones -o applies to.
const annotInspect = "epochal/inspect"

// addOutputFlag adds the global -o, --output.
func addOutputFlag(root *cobra.Command, g *globals) {
	root.PersistentFlags().StringVarP(&g.output, "output", "o", outputTable,
		"output of the inspecting commands and version: table (for people), json or yaml (for scripts; --json is -o json)")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(
		[]string{outputTable, outputJSON, outputYAML}, cobra.ShellCompDirectiveNoFileComp))
}

// checkOutput refuses an unknown -o, and -o on a command it does not apply
// to.
func (g *globals) checkOutput(cmd *cobra.Command) error {
	if !slices.Contains([]string{outputTable, outputJSON, outputYAML}, g.output) {
		return usagef("-o %q: want table, json or yaml", g.output)
	}
	if fl := cmd.Flags().Lookup("output"); fl != nil && fl.Changed && cmd.Annotations[annotInspect] == "" {
		return usagef("-o applies to the inspecting commands (refs, txn, locks, group, clock) and version, not %s", cmd.CommandPath())
	}
	return nil
}

// printYAML writes v as YAML: the document its JSON encoding is (field
// names, order and values as --json has them), in block style. A stream's
// documents start with "---".
func printYAML(w io.Writer, v any, stream bool) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	// JSON is YAML: parsed into a node, the members keep their order.
	var doc yaml.Node
	if err := yaml.Unmarshal(buf.Bytes(), &doc); err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	block(&doc)
	var out strings.Builder
	if stream {
		out.WriteString("---\n")
	}
	ye := yaml.NewEncoder(&out)
	ye.SetIndent(2)
	if err := ye.Encode(&doc); err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	if err := ye.Close(); err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// block clears the flow and quoting styles JSON's syntax gave the nodes,
// so that they print as block YAML, quoted only where YAML needs it (a
// string that would read as another type stays quoted: its tag is kept),
// or where a YAML 1.1 reader would read it as another type (yaml11Typed).
func block(n *yaml.Node) {
	n.Style = 0
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && yaml11Typed(n.Value) {
		n.Style = yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		block(c)
	}
}

// yaml11Bools are the plain scalars YAML 1.1 reads as booleans and YAML
// 1.2 (the encoder's) as strings.
var yaml11Bools = map[string]bool{}

func init() {
	for _, w := range []string{"y", "yes", "n", "no", "on", "off"} {
		for _, v := range []string{w, strings.ToUpper(w), strings.ToUpper(w[:1]) + w[1:]} {
			yaml11Bools[v] = true
		}
	}
}

// base60 is a YAML 1.1 sexagesimal number, such as 1:20 (80) or 190:20:30.15.
var base60 = regexp.MustCompile(`^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`)

// yaml11Typed reports whether s, a string, would be read as another type
// by a YAML 1.1 reader (PyYAML and many tools) if printed plain: a
// boolean (yes, off, ...), a base-60 number, the merge key << or the
// value key =.
func yaml11Typed(s string) bool {
	return yaml11Bools[s] || base60.MatchString(s) || s == "<<" || s == "="
}
