# Thin wrappers around `python -m pipelines VERB COMPETITION ...`.
PYTHON_BASE ?= python3.11
VENV        ?= .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
COMP        ?= house-prices
EXP         ?=
PRESET      ?=
TIME        ?=
RUN         ?=
DATA        ?=
DEVICE      ?= auto
ARGS        ?=
KAGGLE      ?=
TRACK       ?=
WAIT        ?=
RUNS        ?=
OUT         ?=
BASE        ?=
METHOD      ?= weights
TRIALS      ?= 20
SEARCH      ?=
NPROC       ?= 1
NNODES      ?= 1
NODE_RANK   ?= 0
MASTER_ADDR ?= 127.0.0.1
MASTER_PORT ?= 29500

_config = $(if $(EXP),--config $(EXP),)
_preset = $(if $(PRESET),--preset $(PRESET),)$(if $(TIME), --time-limit $(TIME),)
_search = $(foreach s,$(SEARCH),--search '$(s)')
_data   = $(if $(DATA),--data $(DATA),)
_track  = $(if $(TRACK),--track $(TRACK),)
_kaggle = $(if $(filter-out 0,$(KAGGLE)),--kaggle $(if $(WAIT),--wait $(WAIT),),)
# NPROC processes per node (DDP, README "Scaling out"): one plain process, torchrun --standalone on one
# node, or torchrun with a static rendezvous at MASTER_ADDR:MASTER_PORT on NNODES nodes (run it on each, NODE_RANK=0..).
_torchrun = $(VENV)/bin/torchrun --nproc_per_node=$(NPROC)
_launch = $(if $(filter-out 1,$(NNODES)),$(_torchrun) --nnodes=$(NNODES) --node_rank=$(NODE_RANK) \
	--master_addr=$(MASTER_ADDR) --master_port=$(MASTER_PORT),$(if $(filter-out 1,$(NPROC)),$(_torchrun) --standalone,$(PY)))

.PHONY: all setup test data prepare train train-house train-catsdogs sweep export submit leaderboard report blend blend-house bench demo clean help

all: setup demo  ## set up if needed, then run the main job on the built-in data

help:
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

setup: $(STAMP)  ## create .venv and install the package with its dependencies

$(STAMP): pyproject.toml
	@command -v $(PYTHON_BASE) >/dev/null || { echo "error: $(PYTHON_BASE) not found (set PYTHON_BASE=...)"; exit 2; }
	$(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

test: setup  ## set up if needed, then run the test suite
	$(PY) -m pytest -q tests

demo: setup  ## House Prices end to end: Kaggle data if present, else the built-in Ames data
	$(PY) -m pipelines demo house-prices $(_config) $(_data) --device $(DEVICE) $(ARGS)

data: setup  ## download COMP from Kaggle, or check and copy a local copy with DATA=DIR
	$(PY) -m pipelines prepare $(COMP) $(_data) $(ARGS)

prepare: data

train: setup  ## k-fold training for any competition: COMP=... EXP=... or PRESET=best|fast TIME=SECONDS (NPROC=N ...: DDP via torchrun; TRACK=mlflow)
	$(_launch) -m pipelines train $(COMP) $(_config) $(_preset) $(_data) --device $(DEVICE) $(_track) $(ARGS)

train-house: setup  ## k-fold training for House Prices (EXP=mlp, d2l-linear, ...)
	$(PY) -m pipelines train house-prices $(_config) $(_data) --device $(DEVICE) $(ARGS)

train-catsdogs: setup  ## k-fold training for Dogs vs. Cats (EXP=...; NPROC=N [NNODES NODE_RANK MASTER_ADDR]: DDP via torchrun)
	$(_launch) -m pipelines train dogs-vs-cats $(_config) $(_data) --device $(DEVICE) $(ARGS)

sweep: setup  ## Optuna search of EXP's keys, TRIALS runs: SEARCH="lr=1e-4:1e-2:log dropout=[0.1,0.3]" (resumes; README)
	$(PY) -m pipelines sweep $(COMP) $(_config) --trials $(TRIALS) $(_search) $(_data) --device $(DEVICE) $(_track) $(ARGS)

export: setup  ## RUN of COMP as a bundle that predicts offline in OUT (BASE=FREEZE.txt: wheels only for what that pip freeze lacks)
	@test -n "$(RUN)" || { echo "error: RUN=... is required (see make leaderboard)"; exit 2; }
	@test -n "$(OUT)" || { echo "error: OUT=... is required (a new folder for the bundle)"; exit 2; }
	$(PY) -m pipelines export $(COMP) --run $(RUN) --out $(OUT) $(if $(BASE),--base $(BASE),) $(ARGS)

submit: setup  ## validated Kaggle CSV for RUN (RUN=best: the best CV): submissions/COMP/RUN.csv; KAGGLE=1 uploads it (WAIT=SECONDS for the score)
	@test -n "$(RUN)" || { echo "error: RUN=... is required (see make leaderboard)"; exit 2; }
	$(PY) -m pipelines submit $(COMP) --run $(RUN) $(_kaggle) $(ARGS)

leaderboard: setup  ## every run so far, best CV first
	$(PY) -m pipelines leaderboard $(if $(filter command line,$(origin COMP)),$(COMP),) $(ARGS)

report: setup  ## plots and report.md for RUN in runs/COMP/RUN/report/ (train writes it too)
	@test -n "$(RUN)" || { echo "error: RUN=... is required (see make leaderboard)"; exit 2; }
	$(PY) -m pipelines report $(COMP) --run $(RUN) $(ARGS)

blend: setup  ## blend runs of COMP that share folds: RUNS="a b c" METHOD=mean|weights|stack (a new run)
	@test -n "$(RUNS)" || { echo "error: RUNS=\"run1 run2 ...\" is required (see make leaderboard)"; exit 2; }
	$(PY) -m pipelines blend $(COMP) $(RUNS) --method $(METHOD) $(_track) $(ARGS)

HOUSE_BLEND  = lasso gbm catboost tabm
_house_method = $(if $(filter command line environment,$(origin METHOD)),$(METHOD),mean)
blend-house: setup  ## House Prices' best recipe: train lasso, gbm, catboost and tabm (resumed if there), their mean (METHOD=mean)
	for c in $(HOUSE_BLEND); do $(PY) -m pipelines train house-prices --config $$c --name $$c $(_data) --device $(DEVICE) $(ARGS) || exit $$?; done
	$(PY) -m pipelines blend house-prices $(HOUSE_BLEND) --method $(_house_method) --name blend-$(_house_method) --restart

.PHONY: compare
compare: setup  ## runs of COMP side by side: RUNS="a b" (best: the best CV); config differences, CV, folds paired, a plot
	@test -n "$(RUNS)" || { echo "error: RUNS=\"run1 run2 ...\" is required (see make leaderboard)"; exit 2; }
	$(PY) -m pipelines compare $(COMP) $(RUNS) $(ARGS)

bench: setup  ## speed and score benchmarks; writes benchmarks/RESULTS.md
	$(PY) -m benchmarks.run $(ARGS)

clean:  ## remove generated runs and submissions (keeps data/, .venv and the folders' READMEs)
	rm -rf runs
	find submissions -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
