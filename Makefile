.PHONY: demo test lint
# One command each; both install what they need on a fresh machine.
demo:            ## simulated mine -> gateway -> broker -> ingest, live in the terminal
	scripts/demo.sh $(ARGS)

test:            ## installs servers (as root, apt) and packages, starts servers, runs every test
	scripts/test.sh $(ARGS)

lint:            ## ruff, mypy (strict) and the import layers (import-linter contracts in pyproject.toml)
	.venv/bin/ruff check gateway drivers pipelines firmware_stubs hil tests && .venv/bin/mypy && .venv/bin/lint-imports
