# The two commands: `make image` builds the appliance for the hypervisors into dist/,
# `make test` runs the whole suite (image boots included). Both install what they need first.
SHELL := /bin/bash
HYPERVISOR ?= all
VENV := .venv
PYTEST_ARGS ?=

.PHONY: image update-archive keys test test-fast bench host-image host-test clean

image: host-image
	$(VENV)/bin/lbimage build --hypervisor $(HYPERVISOR)

# The signed offline update of the last built image (after 'make image'), into dist/.
update-archive: host-image
	$(VENV)/bin/lbimage update-archive

# The release and next signing key pairs, in LB_KEY_DIR (outside the checkout by default).
keys: host-image
	$(VENV)/bin/lbimage keys

test: host-test
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Unit and network-namespace tests only: no image build, no VM boot.
test-fast: host-test
	$(VENV)/bin/pytest -m "not image" $(PYTEST_ARGS)

bench: host-test
	$(VENV)/bin/python -m bench.run

host-image:
	@scripts/host-setup image

host-test:
	@scripts/host-setup test

clean:
	rm -rf build dist
