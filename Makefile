# The two set-up commands of the README:
#   go run ./cmd/epochal demo     the main job, on the embedded backend
#   make test                     every test, against real servers
GO ?= go

.PHONY: test deps vet bench demo

test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

deps:
	./scripts/test-deps.sh

vet:
	$(GO) vet ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./stm/

demo:
	$(GO) run ./cmd/epochal demo
