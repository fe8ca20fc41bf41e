# Thin wrappers around assemble and the scripts in .ci/ (see README.md).
PACKAGE ?= milborne
VERSION ?= 0.4.0
ASSEMBLE := target/release/assemble

.PHONY: all setup assemble build example test bench clean purge

all: assemble

setup:
	bash .ci/setup

assemble:
	cargo build --release --locked

# make build PACKAGE=milborne VERSION=0.4.0 [ARGS="--index-url URL"]
build: assemble
	$(ASSEMBLE) $(PACKAGE)==$(VERSION) $(ARGS)

# The bundled example application: set up, build, serve, ask, stop.
example:
	bash .ci/example

test:
	bash .ci/run

# Benchmarks against peer tools measured in the same run; each script builds
# what it needs. Prints ratios; never part of the test suite.
bench: assemble
	bash benches/all.sh

clean: assemble
	$(ASSEMBLE) clean

purge: assemble
	$(ASSEMBLE) purge
