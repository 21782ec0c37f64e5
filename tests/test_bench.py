"""The benchmark harness in quick mode: each benchmark writes its Markdown section with the
expected rows (no timing assertions), and running some benchmarks keeps the other sections.
The Dogs vs. Cats benchmarks run here on drawn look-alikes (tests/drawn_images.py) in place of
the real photos they measure in `make bench`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import ROOT
from drawn_images import write_dogs_vs_cats

sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402
from benchmarks import run as bench  # noqa: E402


@pytest.fixture(scope="module")
def bench_dogs(tmp_path_factory) -> Path:
    """Drawn look-alikes, as many as the quick benchmarks take: 320 cats and 320 dogs (the data
    path's 640), 40 originals of mixed sizes (the prepare benchmark's)."""
    return write_dogs_vs_cats(tmp_path_factory.mktemp("bench-dogs"), per_class=320, n_test=16,
                              n_originals=40, seed=3)


@pytest.fixture
def dogs_for_benchmarks(bench_dogs, monkeypatch) -> Path:
    """The benchmarks read the folder common.DOGS (imported by name into each module): point
    them all at the drawn one."""
    monkeypatch.setattr(common, "DOGS", bench_dogs)
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("benchmarks.") and hasattr(module, "DOGS"):
            monkeypatch.setattr(module, "DOGS", bench_dogs)
    files = common.shared_train_files()
    assert len(files) == 640 and all(f.parent == bench_dogs / "train" for f in files)
    return bench_dogs


def rows(markdown: str, first_cell: str) -> list[list[str]]:
    out = []
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            out.append(cells)
    return out


def test_quick_datapath_and_prepare_write_their_tables(dogs_for_benchmarks, tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINES_HOME", str(tmp_path / "home"))
    out = tmp_path / "RESULTS.md"
    assert bench.main(["datapath", "prepare", "--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Benchmarks") and "cores" in text and "torch " in text
    assert "failed" not in text
    for name in ("datapath", "prepare"):
        assert f"<!-- bench:{name} -->" in text and f"<!-- /bench:{name} -->" in text
        assert f"_{name} --quick:" in text and "load average" in text

    lenet = rows(text, "lenet")
    main = [r for r in lenet if len(r) == 11]          # the data-path table: one row per model
    assert len(main) == 1
    ceiling, ours, ratio, naive, vs_naive = main[0][4], main[0][5], main[0][6], main[0][8], main[0][9]
    for cell in (ceiling, ours, naive):
        assert "%" in cell and float(cell.split()[0].replace(",", "")) > 0     # img/s (MFU %)
    assert float(ratio.strip("*").split()[0].strip("*")) > 0 and float(vs_naive.strip("*")) > 0
    assert "Goals:" in text and "Profile of (a) for LeNet" in text and "`aten::" in text

    methods = [r[2] for r in rows(text, "shared 200 px (200)")]
    assert methods == ["plain PIL loop (no draft), 1 process", "our decode, PIL only (draft), 1 process",
                       "our decode (simplejpeg at draft scale), 1 process",
                       "prepare stage `build_cache`, 1 process", "prepare stage `build_cache`, 2 workers"]
    assert len(rows(text, "originals (40)")) == 5
    assert "identical for 200 of 200 images" in text          # the faster decoder gives the same pixels


def test_running_some_benchmarks_keeps_the_other_sections(tmp_path, monkeypatch):
    monkeypatch.setitem(bench.BENCHMARKS, "house_prices", lambda quick: "## House\n\nnew figures\n")
    out = tmp_path / "RESULTS.md"
    out.write_text(bench.merge("", {"prepare": "<!-- bench:prepare -->\nold prepare\n<!-- /bench:prepare -->\n",
                                    "house_prices": "<!-- bench:house_prices -->\nold house\n"
                                                    "<!-- /bench:house_prices -->\n"}, "# Benchmarks\n"))
    assert bench.main(["house_prices", "--out", str(out)]) == 0
    text = out.read_text()
    assert "old prepare" in text and "new figures" in text and "old house" not in text
    assert text.index("bench:prepare") < text.index("bench:house_prices")   # BENCHMARKS order
    assert bench.main(["nope", "--out", str(out)]) == 2


def test_quick_recipes_time_every_stage_from_raw_jpegs(dogs_for_benchmarks, tmp_path, monkeypatch):
    """The recipes benchmark trains the default and the fast config from raw JPEGs (fresh homes) and
    checks the default run on the full-size originals."""
    out = tmp_path / "RESULTS.md"
    assert bench.main(["recipes", "--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert "failed" not in text
    from benchmarks import recipes
    table = {r[0]: r for r in rows(text, f"`{recipes.DEFAULT}`") + rows(text, f"`{recipes.FAST}`")}
    assert set(table) == {f"`{recipes.DEFAULT}`", f"`{recipes.FAST}`"}
    for row in table.values():
        assert 0 < float(row[1]) < 0.7                      # CV log loss of a real run
        seconds = [float(c.replace(",", "").strip("*")) for c in row[3:9] if c != "-"]
        assert len(seconds) >= 5 and all(x >= 0 for x in seconds)
    originals, copies = rows(text, "full-size originals"), rows(text, "their 200 px copies")
    assert len(originals) == len(copies) == 1 and originals[0][1].endswith("%")
