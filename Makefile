# The two commands the README starts with: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
DATA ?= ./library-data
# The FAISS build: cpu (faiss-cpu) or gpu (faiss-gpu; Linux x86-64, CUDA 12), never both:
# `make setup FAISS=gpu` (after the CUDA build of torch, see the README's GPU section).
FAISS ?= cpu
ifeq ($(filter cpu gpu,$(FAISS)),)
$(error FAISS must be cpu or gpu, not '$(FAISS)')
endif
OTHER_FAISS := faiss-$(if $(filter cpu,$(FAISS)),gpu,cpu)

.PHONY: setup system-deps demo check test bench bench-index bench-scale bench-train finetune-demo clean

# torch is pinned to the CPU build that these machines install from local disk; on a CUDA
# machine install the CUDA build of torch into the venv first and it is kept.
$(VENV)/.installed-$(FAISS): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	@# setuptools warns about every flat-layout editable install (a box of asterisks that
	@# reads like a failure); the layout is deliberate, so that one warning is silenced.
	PYTHONWARNINGS="ignore:Editable installation" $(PIP) install -e '.[$(FAISS),offline,train,postgres,milvus,ray,ocr,onnx,openvino,test]'
	@# Switching builds: the two share their files, so removing the other one deletes this
	@# one's too, and this one is installed again.
	@if $(PY) -m pip show -q $(OTHER_FAISS) 2>/dev/null; then \
	  $(PIP) uninstall -y $(OTHER_FAISS) && $(PIP) install --force-reinstall --no-deps faiss-$(FAISS); \
	  rm -f $(VENV)/.installed-$(patsubst faiss-%,%,$(OTHER_FAISS)); fi
	@# OpenAI's BPE vocabulary (tests build a real CLIP tokenizer), taken from the
	@# open-clip-torch wheel without installing it.
	$(PY) -m training.scratch fetch >/dev/null
	touch $@

# axe-core (npm) for the web UI's accessibility test, in a git-ignored folder. Without npm
# the test skips and says why.
AXE := .cache/npm/node_modules/axe-core/axe.min.js
$(AXE):
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --no-save --no-audit --no-fund --prefix .cache/npm axe-core@4 >/dev/null \
	  || echo "warning: npm could not install axe-core: the accessibility test will fail"; \
	else echo "warning: no npm: the accessibility test (axe-core) will skip"; fi

setup: $(VENV)/.installed-$(FAISS) $(AXE)

# Debian packages: more real sample photos (opencv-doc), the browser the web UI test
# drives (chromium) and the PostgreSQL server the store tests start a throwaway cluster of
# (postgresql). Without them the sample set is smaller and those tests skip.
system-deps:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq opencv-doc chromium postgresql >/dev/null) \
	  || echo "warning: could not install opencv-doc, chromium and postgresql"; \
	fi

demo: setup
	$(VENV)/bin/pixseek --data-dir $(DATA) --model offline demo

# The edit-test loop: lint and the tests not marked `slow` (no servers, browsers, clusters,
# processes or long waits; a few minutes on two cores).
check: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q -m "not slow"

# Everything, as CI runs it.
test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q

# Retrieval Recall@K of the offline model on the captioned sample photos.
bench: setup
	$(VENV)/bin/pixseek bench samples $(DATA)/bench-set
	$(VENV)/bin/pixseek --data-dir $(DATA) bench retrieval --captions $(DATA)/bench-set/captions.csv \
	  --images $(DATA)/bench-set --model offline \
	  --json bench-out/retrieval.json --markdown bench-out/retrieval.md

# Indexing throughput against the bare model (several minutes).
bench-index: setup
	$(PY) benchmarks/index_throughput.py

# Library size against open, add, search and memory, at 1k to 1M photos (the first run
# builds the libraries: about 15 minutes on two cores; later runs reuse them).
bench-scale: setup
	$(PY) benchmarks/library_scale.py run

# Pre-train a small CLIP from random weights on a synthetic captioned set for about ten
# minutes, then score the held-out test split against the untrained start.
SYNTH := $(DATA)/synth
FINETUNE_EPOCHS ?= 10
finetune-demo: setup
	$(VENV)/bin/pixseek bench synth $(SYNTH) --pairs 2000
	rm -rf $(DATA)/synth-clip
	$(VENV)/bin/pixseek --data-dir $(DATA) finetune --model small \
	  --captions $(SYNTH)/captions.json --images $(SYNTH)/images --out $(DATA)/synth-clip \
	  --epochs $(FINETUNE_EPOCHS) --max-minutes 10 --json bench-out/finetune-demo.json
	$(VENV)/bin/pixseek --data-dir $(DATA) bench retrieval --split test \
	  --captions $(SYNTH)/captions.json --images $(SYNTH)/images \
	  --model $(DATA)/synth-clip/checkpoint/initial --model $(DATA)/synth-clip

# Training pairs/s and peak memory, small and ViT-B/32-shaped CLIP, batch 64.
bench-train: setup
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(DATA) .pytest_cache
