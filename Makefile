# Convenience targets; the README's two commands work without make.
.PHONY: setup up test scenario

setup:
	bash scripts/setup.sh

up: setup
	.venv/bin/mallstream up --demo

test:
	bash scripts/test.sh

# crash/replay scenarios at full size (CI runs them at MALLSTREAM_SCALE=1)
scenario: setup
	MALLSTREAM_SCALE=$${MALLSTREAM_SCALE:-5} .venv/bin/python -m pytest -q -m heavy
