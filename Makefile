# Everything installs itself: a fresh machine needs only python3.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test bench run clean chromium package wheelhouse deploy

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

# The browser tests drive Debian's chromium (never a browser download).
CHROMIUM := $(shell command -v chromium 2>/dev/null)

chromium:
ifeq ($(CHROMIUM),)
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
endif

test: $(STAMP) chromium
	$(PY) -m pytest -q

run: $(STAMP)
	$(PY) devstack.py

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

# Deployment. `make wheelhouse` once (it needs PyPI); then `make package` works offline.
STAGE ?= prod
BUILD := build
PYVERSION := $(shell $(PY) -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")' 2>/dev/null)

wheelhouse: $(STAMP)
	$(PY) -m pip download -q --disable-pip-version-check --only-binary=:all: --implementation cp \
	  --python-version $(PYVERSION) --platform manylinux2014_x86_64 -d wheelhouse -r requirements.txt

# Never reuse a deployment zip: chalice caches one, even one that a failed pip left empty.
package: $(STAMP)
	rm -rf .chalice/deployments $(BUILD)/$(STAGE)
	mkdir -p $(BUILD)
	$(PY) -m deploy.template $(STAGE) > $(BUILD)/merge-$(STAGE).json
	if [ -d wheelhouse ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=$(CURDIR)/wheelhouse; fi; \
	  AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(VENV)/bin/chalice package --stage $(STAGE) \
	  --merge-template $(BUILD)/merge-$(STAGE).json $(BUILD)/$(STAGE)
	@echo "template: $(BUILD)/$(STAGE)/sam.json  package: $$(du -h $(BUILD)/$(STAGE)/deployment.zip | cut -f1)"

# `chalice deploy` between the steps it needs: before, what its functions need at deploy time
# (table, queues, secret); after, what it cannot set (notify Function URL, mapping settings).
# Offline from the wheelhouse like `package`; the stage must be named (no default to prod here).
deploy: $(STAMP)
	@if [ "$(origin STAGE)" = file ]; then echo "make deploy STAGE=dev|prod" >&2; exit 2; fi
	rm -rf .chalice/deployments
	$(PY) manage.py deploy-prepare --stage $(STAGE)
	if [ -d wheelhouse ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=$(CURDIR)/wheelhouse; fi; \
	  $(VENV)/bin/chalice deploy --stage $(STAGE)
	$(PY) manage.py deploy-finish --stage $(STAGE)
