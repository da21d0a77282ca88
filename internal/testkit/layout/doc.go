// Package layout holds the tests of the module's shape: imports between
// folders run one way, down the layers docs/design.md draws ("Packages"),
// and only the engine (internal/engine) calls a driver's record, intent
// and commit methods; and the code and docs cite only markdown files the
// repository holds (TestMarkdownCitationsExist). It has no code of its own.
package layout
