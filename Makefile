# Developer entry points. CI runs .ci/run, which calls the README's test command.
PYTHON ?= .venv/bin/python
CRD := crds/apprelease.io_appreleases.yaml

.PHONY: venv crds test run unit e2e lint bench bench-full dev-up dev-down image

venv: .venv/.installed

.venv/.installed: pyproject.toml devtools/pyproject.toml constraints.txt
	python3 -m venv .venv
	# The operator, and (not in the image) the developer tools: local control plane, Nacos.
	.venv/bin/pip install -q --constraint constraints.txt -e '.[test,dev]' -e ./devtools
	touch $@

# The README's two commands.
run: venv
	.venv/bin/apprelease dev run

# The pure core (api, render, rollout, domain) keeps at least 95 % branch coverage.
CORE_COVERAGE := --cov=apprelease.api --cov=apprelease.render --cov=apprelease.rollout --cov=apprelease.domain \
	--cov-branch --cov-fail-under=95 --cov-report=term:skip-covered

test: venv
	.venv/bin/python -m pytest $(CORE_COVERAGE)

# The chart templates the CRD from files/ (so `helm upgrade` updates it); deploy/05-crd.yaml
# is a link to crds/.
crds:
	$(PYTHON) -m apprelease.cli.main crd -o $(CRD) --pipelines-dir crds
	cp crds/*.yaml deploy/helm/apprelease/files/

unit: venv
	$(PYTHON) -m pytest tests/unit $(CORE_COVERAGE)

e2e: venv
	$(PYTHON) -m pytest tests/e2e tests/nacos tests/analysis

lint:
	.venv/bin/ruff check operator devtools tests bench
	.venv/bin/mypy

bench:
	$(PYTHON) -m bench --quick

bench-full:
	$(PYTHON) -m bench --full

dev-up:
	$(PYTHON) -m apprelease.cli.main dev up

dev-down:
	$(PYTHON) -m apprelease.cli.main dev down

# The operator's image from Debian's packages and PyPI's wheels, with buildah (cached):
# localhost/apprelease:<version> and an OCI archive; docs/quickstart.md pushes it.
image: venv
	$(PYTHON) -m apprelease.cli.main dev image
