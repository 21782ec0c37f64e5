"""`export` (pipelines/bundle.py): a run as a bundle that predicts offline. Tested the way Kaggle runs a
code competition: the bundle read-only, installed with `pip install --no-index --find-links` into a
new virtual environment, its notebook run headless (nbclient), and the submission compared byte for
byte with the one `submit` wrote; plus the smallest install (no torch, no image stack)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from pipelines import api, bundle
from pipelines.errors import UserError
from tabular_data import layout

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def concrete(tmp_path_factory):
    return layout("concrete", tmp_path_factory.mktemp("export") / "concrete", rows=300)


@pytest.fixture
def tabular_runs(home, concrete):
    """Two runs of the concrete table (no network among them) and their blend."""
    for name, config in (("lin", "linear"), ("gbm", "lightgbm")):
        api.train(concrete.spec_path, config, data=concrete.folder, name=name, overrides={"folds": 3}, quiet=True)
    api.blend("concrete", ["lin", "gbm"], name="bl", quiet=True)
    return concrete


def read_only(folder: Path) -> None:
    """As Kaggle mounts a dataset: nothing under it can be written."""
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_requirements_follow_the_extras():
    core, nn, images = bundle.requirements(), bundle.requirements(("nn",)), bundle.requirements(("images",))
    assert {"lightgbm", "catboost", "pandas", "scikit-learn", "safetensors"} <= set(core)
    assert not {"torch", "timm", "torchvision", "onnxruntime", "optuna"} & set(core)   # the smallest install
    assert "torch" in nn and "timm" not in nn
    assert {"torch", "timm", "torchvision", "onnxruntime", "albumentations"} <= set(images)
    assert set(core) <= set(nn) <= set(images)


def test_the_base_is_a_pip_freeze(tmp_path):
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("# Kaggle\nNumPy==2.4.6\nlightgbm @ file:///x.whl\n-e /src\n\nscikit_learn==1.0\n")
    assert bundle._read_base(freeze) == {"numpy": "2.4.6", "scikit-learn": "1.0"}
    freeze.write_text("numpy==2\npandas>=2\n")
    with pytest.raises(UserError) as exc:
        bundle._read_base(freeze)
    assert "line 2 ('pandas>=2') is not NAME==VERSION" in str(exc.value)


def test_the_package_wheel_holds_the_package(tmp_path):
    wheel = bundle.package_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        record = archive.read("pipelines-0.1.0.dist-info/RECORD").decode()
    assert "pipelines/bundle.py" in names and "pipelines/competitions/specs/cifar-10.yaml" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "pipelines/api.py,sha256=" in record
    metadata = zipfile.ZipFile(wheel).read("pipelines-0.1.0.dist-info/METADATA").decode()
    assert "Provides-Extra: images" in metadata and "Requires-Dist: lightgbm" in metadata


def test_a_bundle_predicts_what_submit_wrote_from_its_own_folder(home, tabular_runs, tmp_path):
    """Without wheels (this environment has the package): the blend, its members and the spec are
    copied, and predict.py, run from the read-only bundle, writes submit's file byte for byte."""
    out = api.export("concrete", "bl", tmp_path / "bundle", wheels=False, quiet=True)
    assert sorted(p.name for p in (out / "runs" / "concrete").iterdir()) == ["bl", "gbm", "lin"]
    assert (out / "specs" / "concrete.yaml").is_file() and not (out / "wheels").exists()
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["install"] == "pipelines" and manifest["members"] == ["lin", "gbm"]
    submitted = api.submit("concrete", "bl", quiet=True)
    read_only(out)
    try:
        done = subprocess.run([sys.executable, str(out / "predict.py"), "--test", str(tabular_runs.folder / "test.csv"),
                               "--out", str(tmp_path / "submission.csv")], capture_output=True, text=True,
                              env={**os.environ, "PIPELINES_HOME": str(tmp_path / "elsewhere")})
    finally:
        writable(out)
    assert done.returncode == 0, done.stderr
    assert "inference:" in done.stdout
    assert (tmp_path / "submission.csv").read_bytes() == submitted.read_bytes()

    with pytest.raises(UserError) as exc:   # never over an existing bundle
        api.export("concrete", "bl", out, wheels=False, quiet=True)
    assert "exists and is not an empty folder" in str(exc.value)


def test_a_plugin_travels_with_its_spec(home, concrete, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "ratio.py").write_text("def features(frame):\n"
                                               "    frame['water_cement'] = frame['water'] / frame['cement']\n"
                                               "    return frame\n")
    spec = tmp_path / "src" / "concrete-ratio.yaml"
    spec.write_text(yaml.safe_dump({**concrete.spec, "name": "concrete-ratio", "plugin": "ratio.py"}))
    api.train(spec, "linear", data=concrete.folder, name="wc", overrides={"folds": 3}, quiet=True)
    submitted = api.submit("concrete-ratio", "wc", quiet=True)
    out = api.export(spec, "wc", tmp_path / "bundle", wheels=False, quiet=True)
    assert yaml.safe_load((out / "specs" / "concrete-ratio.yaml").read_text())["plugin"] == "ratio.py"
    (tmp_path / "src" / "ratio.py").rename(tmp_path / "gone.py")   # the original is gone: the bundle's copy serves
    done = subprocess.run([sys.executable, str(out / "predict.py"), "--test", str(concrete.folder / "test.csv"),
                           "--out", str(tmp_path / "s.csv")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "s.csv").read_bytes() == submitted.read_bytes()


# ---- the way Kaggle runs it: a new environment, no index, the notebook headless ----------------------

def new_venv(folder: Path, base_site: Path | None = None) -> Path:
    """A new virtual environment with ipykernel (what a Kaggle image has); with base_site, the
    distributions of that site-packages folder are installed there too, as a base image's are."""
    # over a base, pip and setuptools are the base's too (a venv's own would shadow them)
    subprocess.run([sys.executable, "-m", "venv", *(["--without-pip"] if base_site else []), str(folder)], check=True)
    python = folder / "bin" / "python"
    if base_site is not None:
        site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
        image = folder.parent / "base-image"   # the base's distributions, less this checkout's editable install
        image.mkdir()
        for entry in base_site.iterdir():
            if not entry.name.startswith(("pipelines", "__editable__", "_pipelines")) and entry.suffix != ".pth":
                (image / entry.name).symlink_to(entry)
        (site / "base-image.pth").write_text(f"{image}\n")
    else:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "ipykernel"],
                       check=True)
    return python


def run_notebook(notebook: Path, python: Path, tmp_path: Path, env: dict) -> None:
    """Execute the notebook with a kernel of `python`, in tmp_path, with `env` set for the kernel."""
    import nbclient
    import nbformat

    kernels = tmp_path / "jupyter" / "kernels" / "bundle-python"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "bundle", "language": "python", "env": env}))
    saved = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(tmp_path / "jupyter")
    try:
        nb = nbformat.read(notebook, as_version=4)
        nbclient.NotebookClient(nb, kernel_name="bundle-python", timeout=600,
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        if saved is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = saved
    return nb


def outputs(nb) -> str:
    return "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)


def test_a_blend_and_a_run_install_offline_in_a_new_venv_and_their_notebooks_match_submit(
        home, tabular_runs, tmp_path):
    python = new_venv(tmp_path / "venv")
    for run in ("bl", "gbm"):
        out = api.export("concrete", run, tmp_path / f"bundle-{run}", quiet=True)
        names = json.loads((out / "bundle.json").read_text())["wheels"]
        assert not [n for n in names if n.split("-")[0].lower() in ("torch", "timm", "torchvision", "onnxruntime")]
        submitted = api.submit("concrete", run, quiet=True)
        read_only(out)
        try:
            nb = run_notebook(out / "inference.ipynb", python, tmp_path / f"work-{run}",
                              {"PIPELINES_BUNDLE": str(out), "PIPELINES_TEST": str(tabular_runs.folder / "test.csv")})
        finally:
            writable(out)
        assert (tmp_path / f"work-{run}" / "submission.csv").read_bytes() == submitted.read_bytes()
        assert "inference:" in outputs(nb)
    # the smallest install: the package's core, no torch, no image stack
    missing = subprocess.run([str(python), "-c", "import importlib.util as u; "
                              "print([m for m in ('torch', 'timm', 'torchvision', 'onnxruntime', 'optuna') "
                              "if u.find_spec(m)])"], capture_output=True, text=True, check=True).stdout
    assert missing.strip() == "[]"


def test_an_image_run_predicts_offline_over_a_base_image(home, tmp_path):
    """An image run's bundle over a base that has everything but the package (as Kaggle's image has
    torch): --base is that base's `pip freeze --all`, so wheels/ holds the package alone."""
    from test_image_spec import HEAD_FAST, write_dog_breed

    data = write_dog_breed(tmp_path / "dog-breed", columns=("pug", "beagle", "collie"))
    api.train("dog-breed-identification", "effnet-lite0-head", data=data, name="h1", overrides=HEAD_FAST, quiet=True)
    submitted = api.submit("dog-breed-identification", "h1", quiet=True)
    freeze = tmp_path / "freeze.txt"
    freeze.write_text(subprocess.run([sys.executable, "-m", "pip", "freeze", "--all"], capture_output=True, text=True,
                                     check=True).stdout)
    out = api.export("dog-breed-identification", "h1", tmp_path / "bundle", base=freeze, quiet=True)
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["install"] == "pipelines[images]" and manifest["wheels"] == ["pipelines-0.1.0-py3-none-any.whl"]
    import sysconfig
    python = new_venv(tmp_path / "venv", base_site=Path(sysconfig.get_paths()["purelib"]))
    read_only(out)
    try:
        run_notebook(out / "inference.ipynb", python, tmp_path / "work",
                     {"PIPELINES_BUNDLE": str(out), "PIPELINES_TEST": str(data / "test")})
    finally:
        writable(out)
    assert (tmp_path / "work" / "submission.csv").read_bytes() == submitted.read_bytes()
    where = subprocess.run([str(python), "-c", "import pipelines; print(pipelines.__file__)"], capture_output=True,
                           text=True, check=True, cwd=tmp_path).stdout
    assert str(tmp_path / "venv") in where   # the bundle's wheel, not this checkout


def test_export_from_the_command_line_names_a_missing_run(home, tabular_runs, tmp_path, capsys):
    from pipelines import cli

    assert cli.main(["export", "concrete", "--run", "nope", "--out", str(tmp_path / "b")]) != 0
    err = capsys.readouterr().err
    assert "no finished run 'nope' for concrete" in err and err.count("\n") == 1
    assert not (tmp_path / "b").exists()
