package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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
// string that would read as another type stays quoted: its tag is kept).
func block(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		block(c)
	}
}
