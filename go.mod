module github.com/epochal/epochal

go 1.26.8

require (
	github.com/anishathalye/porcupine v1.3.1
	github.com/petermattis/goid v0.0.0-20260820044319-269ab09b5261
	github.com/spf13/cobra v1.10.2
	github.com/vmihailenco/msgpack/v5 v5.4.1
	pgregory.net/rapid v1.3.0
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
)
