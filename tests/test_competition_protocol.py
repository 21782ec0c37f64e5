"""The competition protocol (pipelines/competition.py), checked on every registered competition the
way scikit-learn's check_estimator checks every estimator; and the shared stages, checked to ask
the protocol instead of naming a competition."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import competition
from pipelines.competition import BlendSpace, Competition, Metric, Submission
from pipelines.errors import UserError

PACKAGE = Path(competition.__file__).resolve().parent
N = 40


def _registered() -> list[str]:
    return competition.names()


@pytest.fixture(params=_registered())
def comp(request) -> Competition:
    return competition.get(request.param)


def _valid_values(comp: Competition, rng: np.random.Generator, n: int = N) -> np.ndarray:
    """Predictions a submission of this competition accepts."""
    if comp.task == "regression":
        return rng.uniform(50_000.0, 500_000.0, n)
    return rng.uniform(0.02, 0.98, n)


def _truth(comp: Competition, rng: np.random.Generator, n: int = N) -> np.ndarray:
    if comp.task == "regression":
        return rng.uniform(50_000.0, 500_000.0, n)
    return (np.arange(n) % 2).astype(float)


# --------------------------------------------------------------------------- the registry

def test_builtins_are_registered_in_order():
    assert _registered()[:2] == ["house-prices", "dogs-vs-cats"]


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UserError, match=r"unknown competition 'house-price' \(did you mean 'house-prices'\?\); "
                                        r"known: house-prices, dogs-vs-cats"):
        competition.get("house-price")
    with pytest.raises(UserError, match="unknown competition 'specs/titanic.yaml'"):
        competition.load("specs/titanic.yaml")


def test_a_loader_registers_what_it_loads(monkeypatch):
    """How spec files plug in: a loader turns a name or path into a Competition, registered from then on."""
    house = competition.get("house-prices")
    monkeypatch.setattr(competition, "_LOADERS", [])
    monkeypatch.setattr(competition, "_REGISTRY", dict(competition._REGISTRY))
    seen = []

    def loader(name_or_path):
        seen.append(name_or_path)
        if not name_or_path.endswith("spec.yaml"):
            return None
        return Competition(**{**{f: getattr(house, f) for f in house.__dataclass_fields__}, "name": "from-a-spec"})

    competition.add_loader(loader)
    made = competition.load("some/where/spec.yaml")
    assert made.name == "from-a-spec" and competition.get("from-a-spec") is made
    assert competition.load("from-a-spec") is made and seen == ["some/where/spec.yaml"]
    with pytest.raises(UserError, match="unknown competition 'other.yaml'"):
        competition.load("other.yaml")


def test_registering_a_taken_name_is_refused():
    house = competition.get("house-prices")
    assert competition.register(house) is house          # the same one again: no change
    clone = Competition(**{f: getattr(house, f) for f in house.__dataclass_fields__})
    with pytest.raises(ValueError, match="already registered"):
        competition.register(clone)


def test_bad_kind_or_task_is_refused():
    house = competition.get("house-prices")
    fields = {f: getattr(house, f) for f in house.__dataclass_fields__}
    with pytest.raises(ValueError, match="task 'ranking'"):
        Competition(**{**fields, "task": "ranking"})
    with pytest.raises(ValueError, match="kind 'audio'"):
        Competition(**{**fields, "kind": "audio"})


# --------------------------------------------------------------------------- every competition

def test_fields(comp):
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", comp.name)
    assert comp.title and comp.kind in competition.KINDS and comp.task in competition.TASKS
    assert comp.kaggle_slug is None or re.fullmatch(r"[a-z0-9][a-z0-9-]*", comp.kaggle_slug)
    assert isinstance(comp.metric, Metric) and comp.metric.name and callable(comp.metric.function)
    assert comp.data.present and all(isinstance(p, str) for p in comp.data.present)
    assert comp.id_column and comp.target_column
    assert isinstance(comp.submission, Submission) and comp.submission.format in competition.FORMATS
    assert len(comp.submission.columns) == 2 and comp.submission.columns[0] == comp.id_column
    assert isinstance(comp.blend, BlendSpace)
    assert comp.blend.loss in ("squared", "logistic", "multinomial")
    assert (comp.blend.loss == "multinomial") == (comp.task == "multiclass")
    assert (comp.blend.test_id, comp.blend.test_value) == tuple(comp.submission.columns)
    for key in ("space", "mean_space", "oof_id", "target", "oof_value", "data_key", "test_data_key"):
        assert isinstance(getattr(comp.blend, key), str) and getattr(comp.blend, key), key
    assert comp.report_sections is None or callable(comp.report_sections)
    if comp.default_config is not None:
        assert (PACKAGE.parent / "configs" / comp.name / f"{comp.default_config}.yaml").exists()


def test_metric_direction_is_consistent(comp):
    rng = np.random.default_rng(0)
    truth = _truth(comp, rng)
    if comp.task == "regression":
        good, bad = truth * 1.01, truth * rng.uniform(0.5, 2.0, N)
    else:
        good, bad = np.where(truth > 0.5, 0.9, 0.1), np.where(truth > 0.5, 0.4, 0.6)
    good_score, bad_score = comp.metric(truth, good), comp.metric(truth, bad)
    assert np.isfinite(good_score) and np.isfinite(bad_score)
    assert comp.metric.better(good_score, bad_score) and not comp.metric.better(bad_score, good_score)
    # the blend space scores with the same metric, under its name
    assert comp.blend.scores(truth, good, 0.0)[comp.metric.name] == pytest.approx(good_score)


def test_submission_accepts_a_well_formed_frame_and_rejects_malformed_ones(comp, tmp_path):
    rng = np.random.default_rng(1)
    ids = np.arange(1, N + 1)
    id_column, value_column = comp.submission.columns
    good = pd.DataFrame({id_column: ids, value_column: _valid_values(comp, rng)})
    comp.submission.validate(good, ids)
    written = comp.submission.write(good, tmp_path / "ok.csv", ids)
    pd.testing.assert_frame_equal(comp.submission.read(written, ids), good, check_dtype=False)

    nan_value = good.copy()
    nan_value.loc[3, value_column] = np.nan
    out_of_range = good.copy()
    out_of_range.loc[5, value_column] = -1.0
    malformed = {
        "header": (good[[value_column, id_column]], "header must be"),
        "duplicate id": (good.assign(**{id_column: np.r_[ids[:-1], ids[0]]}), "appears more than once"),
        "missing id": (good.iloc[:-1], "missing"),
        "nan value": (nan_value, "is not"),
        "value out of range": (out_of_range, "is not"),
    }
    for what, (frame, message) in malformed.items():
        with pytest.raises(UserError, match=message):
            comp.submission.validate(frame, ids)
        with pytest.raises(UserError):
            comp.submission.write(frame, tmp_path / f"{what}.csv", ids)
        assert not (tmp_path / f"{what}.csv").exists(), what


def test_blend_space_round_trips(comp):
    if comp.task == "multiclass":
        return _multiclass_space_round_trips(comp)
    rng = np.random.default_rng(2)
    space = comp.blend
    values = _valid_values(comp, rng)
    np.testing.assert_allclose(space.unlink(space.link(values)), values, rtol=1e-9)
    columns = np.column_stack([values, values, values])
    np.testing.assert_allclose(space.mean(columns), values, rtol=1e-9)
    z = space.link(columns)
    assert z.shape == columns.shape and np.isfinite(z).all()
    np.testing.assert_allclose(space.unlink(z @ np.full(3, 1 / 3)), values, rtol=1e-9)
    assert np.isfinite(space.fit_target(_truth(comp, rng))).all()
    member = space.member_values(values, {"config_values": {}})
    assert member.shape == values.shape and np.isfinite(member).all()
    # the blend's test frame is a valid submission
    ids = np.arange(1, N + 1)
    frame = space.test_frame(ids, values, space.blend_clip([{"config_values": {}}]))
    comp.submission.validate(frame, ids)


def _multiclass_space_round_trips(comp, k: int = 4):
    """Multiclass members are (rows, classes) probabilities: link/unlink work on the last axis, and
    members stack into (rows, members, classes), as pipelines/blending.py combines them."""
    from pipelines import blending as blend

    rng = np.random.default_rng(2)
    space = comp.blend
    run = {"classes": [f"c{j}" for j in range(k)], "config_values": {}}
    values = rng.dirichlet(np.ones(k), N)
    np.testing.assert_allclose(space.unlink(space.link(values)), values, rtol=1e-9)
    members = np.stack([values, values, values], axis=1)
    np.testing.assert_allclose(space.mean(members), values, rtol=1e-9)
    z = space.link(members)
    assert z.shape == members.shape and np.isfinite(z).all()
    np.testing.assert_allclose(space.unlink(blend.weighted(z, np.full(3, 1 / 3))), values, rtol=1e-9)
    truth = np.arange(N) % k
    assert (space.fit_target(truth) == truth).all()
    assert space.oof_columns(run) == [f"oof_c{j}" for j in range(k)] and space.test_columns(run) == run["classes"]
    # fitted weights favour the member that knows the answer
    sharp = np.full((N, k), 0.1 / (k - 1))
    sharp[np.arange(N), truth] = 0.9
    weights = blend.fit_simplex(space.link(np.stack([values, sharp], axis=1)), truth, space.loss)
    assert weights[1] > 0.9 and weights.sum() == pytest.approx(1.0)


def test_verbs_exist(comp):
    for verb in competition.REQUIRED_VERBS:
        assert verb in comp.verbs, verb
    for name, handler in comp.verbs.items():
        resolved = handler.resolve() if isinstance(handler, competition.Lazy) else handler
        assert callable(resolved), name
    assert comp.verb("no-such-verb") is None
    # predict is one verb for all (pipelines/api.py): the competition writes what it predicted
    assert "predict" not in comp.verbs and comp.verb("predict") is not None
    writer = comp.write_predicted
    assert callable(writer.resolve() if isinstance(writer, competition.Lazy) else writer)
    if isinstance(comp.report_sections, competition.Lazy):
        assert callable(comp.report_sections.resolve())


# --------------------------------------------------------------------------- the shared stages

SHARED = ["cli", "kfold", "blending", "report", "kaggle", "registry", "runs", "competition", "compare", "api"]
BUILTIN_NAMES = re.compile(r"house|dogs|\bcats?\b|\bames\b", re.IGNORECASE)


def _code_without_docstrings_and_comments(path: Path) -> str:
    """The module's source with its docstrings and comments blanked out (string literals stay)."""
    source = path.read_text()
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
                    isinstance(first.value.value, str):
                docstrings.add((first.lineno, first.col_offset))
    kept = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT or (token.type == tokenize.STRING and token.start in docstrings):
            continue
        kept.append(token.string)
    return " ".join(kept)


def _imports(path: Path) -> set[str]:
    """Every pipelines module the file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = "pipelines" if node.level == 1 else (node.module or "") if node.level == 0 else None
            if base is None or not base.startswith("pipelines"):
                continue
            if node.level == 1 and node.module:
                base = f"pipelines.{node.module}"
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("pipelines"))
    return found


@pytest.mark.parametrize("module", SHARED)
def test_shared_stages_name_no_competition(module):
    path = PACKAGE / f"{module}.py"
    code = _code_without_docstrings_and_comments(path)
    named = sorted(set(BUILTIN_NAMES.findall(code)))
    assert not named, f"{path.name} names a built-in competition outside its docstrings: {named}"
    imported = sorted(m for m in _imports(path) if m.startswith("pipelines.competitions"))
    if module == "competition":  # the registry imports the built-ins' package, never one of them
        imported = [m for m in imported if m != "pipelines.competitions"]
    assert not imported, f"{path.name} imports {imported}"


def test_kaggle_registry_runs_import_graph_is_acyclic():
    """The shared modules' imports (lazy ones included) form no cycle."""
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    graph = {m: {i.split(".")[1] for i in _imports(PACKAGE / f"{m}.py")
                 if i.count(".") >= 1 and i.split(".")[1] in modules} - {m} for m in modules}
    assert "kaggle" not in graph["registry"] and "report" not in graph["registry"]
    assert "kaggle" not in graph["runs"]
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(modules):
        if start not in state:
            visit(start, [start])


def _absolute_imports(path: Path) -> set[str]:
    """Every module a file of the package imports (relative imports of any depth resolved), at the
    top or inside a function."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1] + ([node.module] if node.module else [])
                base = ".".join(base)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("pipelines")}


ENGINE_FILES = sorted(p for p in PACKAGE.rglob("*.py") if "competitions" not in p.relative_to(PACKAGE).parts)


@pytest.mark.parametrize("path", ENGINE_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_engines_and_shared_stages_import_no_competition(path):
    """Arrows point down only: the engines (pipelines/tabular/, pipelines/images/) and every shared
    module import nothing under pipelines/competitions/; the competitions use them."""
    imported = sorted(m for m in _absolute_imports(path) if m.startswith("pipelines.competitions"))
    assert not imported, f"{path.relative_to(PACKAGE)} imports {imported}"


def test_the_import_guard_sees_relative_imports():
    """The guard resolves relative imports of any depth: it would see a competition imported."""
    found = _absolute_imports(PACKAGE / "competitions" / "dogs_vs_cats" / "cli.py")
    assert "pipelines.competitions.dogs_vs_cats.data" in found       # from . import data, task
    assert "pipelines.images.networks" in found                      # from ...images import networks
    assert "pipelines.errors.UserError" in _absolute_imports(PACKAGE / "images" / "task.py")   # from ..errors


SEED_ARITHMETIC = re.compile(r"\bseed\s*\+\s*(?:\d+\s*\*\s*)?fold\b|\bfold\s*\+\s*\w*seed\b")


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_fold_seeds_follow_one_rule(path):
    """Every engine and built-in seeds a fold's models with folds.fold_seed, never its own sum."""
    if path.name == "folds.py":
        return
    code = _code_without_docstrings_and_comments(path)
    assert not SEED_ARITHMETIC.search(code), f"{path.relative_to(PACKAGE)} computes a fold's seed itself"


def test_the_seed_guard_sees_both_old_rules():
    from pipelines.folds import fold_seed

    assert SEED_ARITHMETIC.search("seed = cfg.seed + fold") and SEED_ARITHMETIC.search("s = cfg.seed + 100 * fold")
    assert [fold_seed(42, f, m) for f in (0, 1) for m in (0, 1)] == [42, 43, 142, 143]
