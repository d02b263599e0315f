# Everything installs itself: a fresh machine needs only python3.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test bench run clean chromium package wheelhouse deploy

# pip's own lines (Collecting ..., Installing ...) are the progress of the first run's minute.
$(STAMP): requirements.txt requirements-dev.txt
	@python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10 or newer is needed (python3 is " + sys.version.split()[0] + ")")'
	@echo "Installing the development environment into $(VENV) (once; about a minute)..."
	test -x $(PY) || python3 -m venv $(VENV)
	@($(PY) -m pip install --disable-pip-version-check --progress-bar off -r requirements-dev.txt 2>&1; \
	  echo $$? > $(VENV)/pip.rc) | tee $(VENV)/pip.log | grep --line-buffered -E '^(Collecting|Installing|Successfully)' || true
	@test "$$(cat $(VENV)/pip.rc)" = 0 || (tail -20 $(VENV)/pip.log; echo "pip failed: $(VENV)/pip.log"; exit 1)
	touch $(STAMP)

# The browser tests drive Debian's chromium (never a browser download), with a CJK font so that
# the pages' Chinese renders in their screenshots as it does on a buyer's machine.
CHROMIUM := $(shell command -v chromium 2>/dev/null)
CJK_FONT := $(shell fc-list :lang=zh 2>/dev/null | head -1)
BROWSER_MISSING := $(if $(CHROMIUM),$(if $(CJK_FONT),,yes),yes)

chromium:
ifeq ($(BROWSER_MISSING),yes)
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei
endif

test: $(STAMP) chromium
	$(PY) -m pytest -q

# KEEP_STATE=1 keeps the sandbox's trades of the last run; RELOAD=1 restarts the API on file changes.
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
