# The two commands of the quickstart: `make up` and `make test`.
SHELL := /bin/bash
# a small young generation: about 25 MB less resident memory at idle, for small devices
OAKD_NODE_FLAGS := --max-semi-space-size=2
.PHONY: up test deps deps-runtime build lint typecheck unit bench clean

up: deps-runtime build
	@apps/cli/bin/install-oak.sh
	node $(OAKD_NODE_FLAGS) apps/oakd/dist/oakd.mjs

test: deps lint typecheck build unit

deps:
	@scripts/install-deps.sh test

deps-runtime:
	@scripts/install-deps.sh runtime

build:
	node scripts/build.mjs

lint:
	npx eslint --max-warnings 0 .

typecheck:
	npx tsc -p tsconfig.json --noEmit
	npx tsc -p apps/dashboard/tsconfig.json --noEmit

unit:
	node scripts/run-tests.mjs

bench: deps build
	npm run bench

clean:
	rm -rf node_modules .e2e-tmp
