# The two commands: `make demo` and `make test`. Both install what is needed first.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: install demo test test-unit bench stack-up stack-down clean

install:
	@PYTHON=$(PYTHON) bash infra/scripts/bootstrap.sh

demo: install
	$(PYTHON) -m infra.cli demo

test: install
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PYTHON) -m pytest tests/unit $(PYTEST_ARGS)

bench: install
	$(PYTHON) -m bench

stack-up: install
	$(PYTHON) -m infra.cli stack up

stack-down:
	$(PYTHON) -m infra.cli stack down

clean:
	-$(PYTHON) -m infra.cli stack down
	rm -rf var
