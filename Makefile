# Thin wrappers around assemble and the scripts in .ci/ (see README.md).
PACKAGE ?= milborne
VERSION ?= 0.4.0
ASSEMBLE := target/release/assemble

.PHONY: all setup assemble release build example test bench clean purge

all: assemble

setup:
	bash .ci/setup

assemble:
	cargo build --release --locked

# A static binary for any x86_64 Linux job image (musl; the C parts built
# with musl-gcc from musl-tools): target/static/assemble, stripped.
STATIC_TARGET := x86_64-unknown-linux-musl
release:
	CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --target $(STATIC_TARGET)
	mkdir -p target/static
	strip -o target/static/assemble target/$(STATIC_TARGET)/release/assemble

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
