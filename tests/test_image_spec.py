"""Image classification competitions from a spec file (pipelines/images): the shipped CIFAR-10 and
Dog Breed Identification specs, train/predict/submit round trips in their Kaggle layouts on drawn
images (a CNN from scratch, and heads on frozen EfficientNet-Lite0 features), prediction from the
checkpoints equal to the stored test predictions, resuming, every bad input refused in one line
before a run folder exists, and real handwritten digits (scikit-learn's) learnt above chance."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image, ImageDraw

from pipelines import api, hints
from pipelines.errors import UserError
from pipelines.images import data, digits, spec as specs, task
from pipelines.images.cli import ImageSpecVerbs, verbs as spec_verbs

SPECS = specs.SPEC_FOLDER
CIFAR_CLASSES = ("airplane", "cat", "ship")
BREEDS = ("beagle", "collie", "pug")
# tiny and quick: the round trips check the plumbing, the digits test checks learning
CNN_FAST = {"folds": 3, "epochs": 2, "width": 8, "batch_size": 16, "threads": 1, "ema": 0.0, "warmup_epochs": 0}
HEAD_FAST = {"folds": 3, "image_size": 64, "threads": 1}


def draw(label: int, rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Class 0 a warm disc, 1 a cool bar, 2 a green triangle, on noise."""
    width, height = size
    background = rng.integers(60, 196, 3)
    pixels = np.clip(background + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    pen = ImageDraw.Draw(image)
    cx, cy = (int(v * rng.uniform(0.4, 0.6)) for v in (width, height))
    r = int(min(width, height) * rng.uniform(0.25, 0.35))
    if label == 0:
        pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(230, 120, 20))
    elif label == 1:
        pen.rectangle((cx - r, cy - r // 3, cx + r, cy + r // 3), fill=(20, 110, 230))
    else:
        pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=(30, 200, 60))
    return image


def write_cifar(root, per_class: int = 8, n_test: int = 9, seed: int = 0, classes=CIFAR_CLASSES):
    """Kaggle's CIFAR-10 layout: trainLabels.csv (id,label), train/<id>.png (32x32, ids 1..N),
    test/<id>.png (ids 1..M), sampleSubmission.csv (id,label)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    (root / "train").mkdir()
    (root / "test").mkdir()
    labels = np.repeat(np.arange(len(classes)), per_class)
    rng.shuffle(labels)
    for i, label in enumerate(labels, 1):
        draw(int(label), rng, (32, 32)).save(root / "train" / f"{i}.png")
    for i in range(1, n_test + 1):
        draw(int(rng.integers(0, len(classes))), rng, (32, 32)).save(root / "test" / f"{i}.png")
    pd.DataFrame({"id": np.arange(1, len(labels) + 1), "label": np.asarray(classes)[labels]}).to_csv(
        root / "trainLabels.csv", index=False)
    pd.DataFrame({"id": np.arange(1, n_test + 1), "label": classes[0]}).to_csv(root / "sampleSubmission.csv",
                                                                              index=False)
    return root


def write_dog_breed(root, per_class: int = 8, n_test: int = 9, seed: int = 1, columns=None):
    """Kaggle's Dog Breed Identification layout: labels.csv (id,breed), train/<hex>.jpg and
    test/<hex>.jpg (photos of mixed sizes, one greyscale), sample_submission.csv (id + a probability
    column per breed; sorted, unless `columns` says otherwise)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    (root / "train").mkdir()
    (root / "test").mkdir()

    def hex_id():
        return "".join(rng.choice(list("0123456789abcdef"), 32))

    labels = np.repeat(np.arange(len(BREEDS)), per_class)
    rng.shuffle(labels)
    train_ids = [hex_id() for _ in labels]
    for n, (key, label) in enumerate(zip(train_ids, labels)):
        image = draw(int(label), rng, (int(rng.integers(60, 120)), int(rng.integers(50, 100))))
        (image.convert("L") if n == 3 else image).save(root / "train" / f"{key}.jpg", quality=90)
    test_ids = [hex_id() for _ in range(n_test)]
    for key in test_ids:
        draw(int(rng.integers(0, len(BREEDS))), rng, (80, 70)).save(root / "test" / f"{key}.jpg", quality=90)
    pd.DataFrame({"id": train_ids, "breed": np.asarray(BREEDS)[labels]}).to_csv(root / "labels.csv", index=False)
    columns = list(columns or sorted(BREEDS))
    sample = pd.DataFrame({c: 1.0 / len(columns) for c in columns}, index=range(n_test))
    sample.insert(0, "id", test_ids)
    sample.to_csv(root / "sample_submission.csv", index=False)
    return root


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    return write_cifar(tmp_path_factory.mktemp("cifar") / "cifar-10")


@pytest.fixture(scope="module")
def dog_breed(tmp_path_factory):
    # the template's columns out of sorted order: the submission must follow them
    return write_dog_breed(tmp_path_factory.mktemp("dogbreed") / "dog-breed", columns=("pug", "beagle", "collie"))


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


def no_run_left(home, name: str) -> None:
    runs = home / "runs" / name
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())


def exact_predictions(run_dir, spec, test_folder):
    stored = task.read_predictions(run_dir / "test_predictions.csv", spec)
    again = task.predict(run_dir, test_folder, "cpu")
    assert list(again.columns) == list(stored.columns)
    assert again[spec.id].tolist() == stored[spec.id].tolist()
    np.testing.assert_array_equal(again.iloc[:, 1:].to_numpy(float), stored.iloc[:, 1:].to_numpy(float))
    return stored


# --------------------------------------------------------------------------- specs

def test_shipped_specs_load():
    cifar = specs.load(SPECS / "cifar-10.yaml")
    assert (cifar.name, cifar.kind, cifar.id, cifar.target, cifar.task, cifar.metric, cifar.submission) == \
        ("cifar-10", "images", "id", "label", "multiclass", "accuracy", "label")
    assert (cifar.labels, cifar.train_images, cifar.test_images, cifar.kaggle) == \
        ("trainLabels.csv", "train", "test", "cifar-10")
    assert cifar.sample_submission == "sampleSubmission.csv" and cifar.hflip
    breeds = specs.load(SPECS / "dog-breed-identification.yaml")
    assert (breeds.id, breeds.target, breeds.task, breeds.metric, breeds.submission, breeds.labels) == \
        ("id", "breed", "multiclass", "logloss", "probabilities", "labels.csv")
    assert breeds.kaggle == "dog-breed-identification" and breeds.sample_submission == "sample_submission.csv"
    # by name, as a registry finds them; each one's default config loads
    assert specs.find("cifar-10") == cifar and specs.find("dog-breed-identification") == breeds
    assert specs.find("house-prices") is None
    assert task.load_config(cifar).name == task.DEFAULT_CONFIG == "cnn"
    assert task.load_config(breeds).recipe == "features"
    assert spec_verbs("cifar-10").name == "cifar-10"


@pytest.mark.parametrize("change, expected", [
    ({"kind": "tabular"}, "kind: 'tabular' is not read by the image engine"),
    ({"labels_file": "x.csv"}, "unknown key 'labels_file' (did you mean 'labels'?)"),
    ({"metric": "rmse"}, "metric: rmse does not fit task: multiclass"),
    ({"metric": "logloss", "submission": "label"}, "submission: label does not fit metric: logloss"),
    ({"submission": "probability"}, "submission: probability does not fit task: multiclass"),
    ({"train_images": "/data/train"}, "train_images: '/data/train' must be a path inside the data folder"),
    ({"hflip": "no"}, "hflip: expected true or false"),
    ({"test_images": "train"}, "test_images: 'train' is also the train_images folder"),
])
def test_bad_spec_is_one_line(tmp_path, change, expected):
    values = {**yaml.safe_load((SPECS / "cifar-10.yaml").read_text()), **change}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(UserError) as exc:
        specs.load(path)
    assert expected in one_line(exc) and str(path) in str(exc.value)


# --------------------------------------------------------------------------- round trips

def test_cifar_layout_train_predict_submit(home, cifar):
    spec = specs.load(SPECS / "cifar-10.yaml")
    cfg = task.load_config(spec, None, CNN_FAST)
    out = task.train(spec, cfg, cifar, "r1", "cpu")
    run_dir = out["run_dir"]
    assert run_dir == home / "runs" / "cifar-10" / "r1"
    for name in ("run_state.json", "folds.csv", "oof.csv", "test_predictions.csv", "run.json", "metrics.json",
                 "fold0/model.safetensors", "fold0/meta.json", "fold2/predictions.safetensors"):
        assert (run_dir / name).exists(), name
    run = json.loads((run_dir / "run.json").read_text())
    assert run["competition"] == "cifar-10" and run["metric"] == "accuracy" and run["greater_is_better"]
    assert run["classes"] == sorted(CIFAR_CLASSES) and run["engine"] == "images" and len(run["fold_scores"]) == 3
    meta = json.loads((run_dir / "fold0" / "meta.json").read_text())
    assert meta["classes"] == sorted(CIFAR_CLASSES) and len(meta["history"]) == 2

    labels = pd.read_csv(cifar / "trainLabels.csv", dtype=str)
    oof = pd.read_csv(run_dir / "oof.csv", dtype={"id": str})
    assert list(oof.columns) == ["id", "fold", "label"] + [f"oof_{c}" for c in sorted(CIFAR_CLASSES)]
    assert oof["id"].tolist() == labels["id"].tolist() and oof["label"].tolist() == labels["label"].tolist()
    np.testing.assert_allclose(oof.iloc[:, 3:].sum(axis=1), 1.0, atol=1e-9)

    stored = exact_predictions(run_dir, spec, cifar / "test")  # from the checkpoints alone, equal
    assert stored["id"].tolist() == [str(i) for i in range(1, 10)]  # numeric ids in numeric order

    verbs = ImageSpecVerbs(spec)
    assert verbs.submit(argparse.Namespace(run="r1", out=None)) == 0
    path = home / "submissions" / "cifar-10" / "r1.csv"
    written = pd.read_csv(path, dtype=str)
    sample = pd.read_csv(cifar / "sampleSubmission.csv", dtype=str)
    assert list(written.columns) == ["id", "label"] and written["id"].tolist() == sample["id"].tolist()
    assert set(written["label"]) <= set(CIFAR_CLASSES)
    probabilities = stored[sorted(CIFAR_CLASSES)].to_numpy()
    assert written["label"].tolist() == [sorted(CIFAR_CLASSES)[i] for i in probabilities.argmax(axis=1)]
    assert api.predict(verbs.spec.path, "r1", cifar / "test", home / "p.csv", device="cpu") == home / "p.csv"
    assert (home / "p.csv").read_text() == path.read_text()


@pytest.mark.parametrize("config", ["lenet", "lenet-modern"])
def test_the_scratch_ladder_trains_multiclass(home, cifar, config):
    """d2l's LeNet and its modern form, as shipped (fewer epochs), give ten-class runs."""
    spec = specs.load(SPECS / "cifar-10.yaml")
    cfg = task.load_config(spec, config, {"folds": 2, "epochs": 1, "threads": 1})
    assert cfg.arch == config
    out = task.train(spec, cfg, cifar, config, "cpu")
    oof = pd.read_csv(out["run_dir"] / "oof.csv")
    assert list(oof.columns[3:]) == [f"oof_{c}" for c in sorted(CIFAR_CLASSES)]
    np.testing.assert_allclose(oof.iloc[:, 3:].sum(axis=1), 1.0, atol=1e-6)
    assert 0.0 <= out["row"]["cv"] <= 1.0


def test_a_config_holds_only_its_recipes_keys():
    import dataclasses

    spec = specs.load(SPECS / "cifar-10.yaml")
    fields = {f.name for f in dataclasses.fields(task.ImageConfig)}
    assert task.COMMON_KEYS | task.TRAIN_KEYS | set().union(*task.HEAD_KEYS.values()) == fields
    for path in sorted(task.configs.CONFIG_ROOT.joinpath(task.CONFIG_FOLDER).glob("*.yaml")):
        task.load_config(spec, str(path))
    with pytest.raises(UserError, match="--set: key 'width' does not apply to recipe: features with head: "
                                        "mlp\\+logreg"):
        task.load_config(spec, "effnet-lite0-head", {"width": 8})
    with pytest.raises(UserError, match="--set: key 'epochs' does not apply to recipe: features with head: logreg"):
        task.load_config(spec, "effnet-lite0-head", {"head": "logreg", "epochs": 2})
    assert task.load_config(spec, "effnet-lite0-head", {"head": "logreg", "C": 0.5}).C == 0.5


def test_dog_breed_layout_features_head(home, dog_breed):
    spec = specs.load(SPECS / "dog-breed-identification.yaml")
    cfg = task.load_config(spec, None, HEAD_FAST)
    assert cfg.name == "effnet-lite0-head"
    out = task.train(spec, cfg, dog_breed, "h1", "cpu")
    run_dir = out["run_dir"]
    assert out["result"].cv["accuracy"] > 0.8  # frozen ImageNet features separate drawn shapes
    assert (home / "data" / "dog-breed-identification" / "features").is_dir()  # the stage is cached
    stored = exact_predictions(run_dir, spec, dog_breed / "test")
    assert list(stored.columns) == ["id", *sorted(BREEDS)]

    verbs = ImageSpecVerbs(spec)
    assert verbs.submit(argparse.Namespace(run="h1", out=None)) == 0
    written = pd.read_csv(home / "submissions" / spec.name / "h1.csv", dtype={"id": str})
    sample = pd.read_csv(dog_breed / "sample_submission.csv", dtype={"id": str})
    assert list(written.columns) == list(sample.columns) == ["id", "pug", "beagle", "collie"]
    assert written["id"].tolist() == sample["id"].tolist()
    by_id = stored.set_index("id").loc[written["id"]]
    np.testing.assert_array_equal(written[["pug", "beagle", "collie"]].to_numpy(float),
                                  by_id[["pug", "beagle", "collie"]].to_numpy(float))

    # a template naming a class that training never saw: one line, and no file
    moved = home / "moved"
    shutil.copytree(dog_breed, moved)
    sample.rename(columns={"collie": "corgi"}).to_csv(moved / "sample_submission.csv", index=False)
    bad = home / "bad.csv"
    with pytest.raises(UserError) as exc:
        task.write_submission(spec, stored, bad, sorted(BREEDS), moved / "sample_submission.csv")
    assert "column 'corgi' is a class that training never saw" in one_line(exc) and not bad.exists()


def test_resume_keeps_finished_folds(home, cifar):
    spec = specs.load(SPECS / "cifar-10.yaml")
    cfg = task.load_config(spec, None, CNN_FAST)
    first = task.train(spec, cfg, cifar, "part", "cpu", only_folds=[0])
    assert [s["fold"] for s in first["result"].fold_scores] == [0]
    weights = (first["run_dir"] / "fold0" / "model.safetensors").read_bytes()
    whole = task.train(spec, cfg, cifar, "part", "cpu")
    assert whole["result"].resumed_folds == [0] and len(whole["result"].fold_scores) == 3
    assert (whole["run_dir"] / "fold0" / "model.safetensors").read_bytes() == weights
    # a run trained in one go gives the same CV: resuming changes nothing
    straight = task.train(spec, cfg, cifar, "straight", "cpu")
    assert straight["result"].cv == whole["result"].cv


def test_binary_probability_submission(home, tmp_path):
    folder = write_cifar(tmp_path / "two", per_class=10, n_test=5, classes=("cat", "dog"))
    values = {**yaml.safe_load((SPECS / "cifar-10.yaml").read_text()), "name": "two", "task": "binary",
              "metric": "auc", "submission": "probability", "positive": "cat"}
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(values))
    spec = specs.load(path)
    pd.DataFrame({"id": range(1, 6), "label": 0.5}).to_csv(folder / "sampleSubmission.csv", index=False)
    out = task.train(spec, task.load_config(spec, None, CNN_FAST), folder, "b1", "cpu")
    stored = exact_predictions(out["run_dir"], spec, folder / "test")
    assert list(stored.columns) == ["id", "label"]  # P(cat), the positive class
    assert json.loads((out["run_dir"] / "run.json").read_text())["classes"] == ["dog", "cat"]
    assert ImageSpecVerbs(spec).submit(argparse.Namespace(run="b1", out=None)) == 0
    written = pd.read_csv(home / "submissions" / "two" / "b1.csv")
    assert list(written.columns) == ["id", "label"] and written["label"].between(0, 1).all()


# --------------------------------------------------------------------------- bad data

def _damaged(cifar, folder, damage):
    shutil.copytree(cifar, folder)
    damage(folder)
    return folder


def _drop_image(folder):
    (folder / "train" / "5.png").unlink()


def _one_class(folder):
    labels = pd.read_csv(folder / "trainLabels.csv")
    labels["label"] = "cat"
    labels.to_csv(folder / "trainLabels.csv", index=False)


def _test_id_twice(folder):
    Image.open(folder / "test" / "3.png").convert("RGB").save(folder / "test" / "3.jpg")


def _label_id_twice(folder):
    labels = pd.read_csv(folder / "trainLabels.csv")
    labels.loc[6, "id"] = 2
    labels.to_csv(folder / "trainLabels.csv", index=False)


def _no_target(folder):
    pd.read_csv(folder / "trainLabels.csv").rename(columns={"label": "class"}).to_csv(
        folder / "trainLabels.csv", index=False)


def _template_ids(folder):
    sample = pd.read_csv(folder / "sampleSubmission.csv")
    sample.loc[0, "id"] = 99
    sample.to_csv(folder / "sampleSubmission.csv", index=False)


def _corrupt_test_image(folder):
    (folder / "test" / "4.png").write_bytes(b"not a png")


def _packed(folder):
    shutil.rmtree(folder / "train")
    (folder / "train.7z").write_bytes(b"7z")


@pytest.mark.parametrize("damage, expected", [
    (_drop_image, "trainLabels.csv: row 6: id '5' has no image in"),
    (_one_class, "column label: a single class ('cat') in every row"),
    (_test_id_twice, "id '3' twice: 3.jpg and 3.png"),
    (_label_id_twice, "trainLabels.csv: row 8: id '2' appears twice (first on row 3)"),
    (_no_target, "trainLabels.csv: no target column 'label'"),
    (_template_ids, "sampleSubmission.csv: 1 id(s) with no image in"),
    (_corrupt_test_image, "1 test image(s) cannot be read"),
    (_packed, "train.7z: unpack it first"),
])
def test_bad_data_is_one_line_and_leaves_no_run(home, cifar, tmp_path, damage, expected):
    folder = _damaged(cifar, tmp_path / "damaged", damage)
    spec = specs.load(SPECS / "cifar-10.yaml")
    with pytest.raises(UserError) as exc:
        task.train(spec, task.load_config(spec, None, CNN_FAST), folder, None, "cpu")
    assert expected in one_line(exc)
    no_run_left(home, "cifar-10")
    with pytest.raises(UserError):  # prepare refuses it too
        ImageSpecVerbs(spec).prepare(argparse.Namespace(data=str(folder)))


def test_prepare_links_the_data_and_train_finds_it(home, cifar, capsys):
    spec = specs.load(SPECS / "cifar-10.yaml")
    verbs = ImageSpecVerbs(spec)
    with pytest.raises(UserError) as exc:
        verbs.train(argparse.Namespace())
    assert "no cifar-10 data in" in one_line(exc) and hints.prepare("cifar-10") in str(exc.value)
    assert verbs.prepare(argparse.Namespace(data=str(cifar), set=["threads=1"])) == 0
    target = home / "data" / "cifar-10"
    assert (target / "train").is_symlink() and (target / "trainLabels.csv").is_file()
    printed = capsys.readouterr().out
    assert "24 labelled images" in printed and "9 test images" in printed
    assert data.load(spec, target).train.ids.tolist() == [str(i) for i in range(1, 25)]
    # train and submit through the verbs, as the command line calls them, on the prepared data
    overrides = [f"{key}={value}" for key, value in CNN_FAST.items()]
    assert verbs.train(argparse.Namespace(set=overrides, name="v1", device="cpu")) == 0
    printed = capsys.readouterr().out
    assert "CV accuracy" in printed and f"next: {hints.submit('cifar-10', 'v1')}" in printed
    assert (home / "runs" / "cifar-10" / "v1" / "report" / "report.md").exists()
    assert verbs.submit(argparse.Namespace(run="v1")) == 0
    assert (home / "submissions" / "cifar-10" / "v1.csv").exists()


# --------------------------------------------------------------------------- real digits

def test_digits_cnn_learns(home, tmp_path):
    """Real handwritten digits (scikit-learn's), laid out as a competition, a short CNN run: well above
    chance (1 / classes) on the CV and on the held-out test labels."""
    laid = digits.write(tmp_path / "digits")
    spec = specs.load(laid["spec"])
    assert not spec.hflip
    cfg = task.load_config(spec, "cnn", {"folds": 3, "epochs": 3, "image_size": 16, "width": 16, "threads": 1})
    out = task.train(spec, cfg, laid["folder"], "d1", "cpu")
    assert not task.effective_config(spec, cfg).tta_flip
    assert json.loads((out["run_dir"] / "run.json").read_text())["config_values"]["hflip"] is False
    chance = 1.0 / len(json.loads((out["run_dir"] / "run.json").read_text())["classes"])
    assert out["result"].cv["accuracy"] > max(0.5, 3 * chance), out["result"].cv
    assert digits.held_out(out["run_dir"], laid["answers"])["accuracy"] > max(0.5, 3 * chance)


# --------------------------------------------------------------------------- the protocol and the command line

def _binary_spec(tmp_path, name="two"):
    values = {**yaml.safe_load((SPECS / "cifar-10.yaml").read_text()), "name": name, "task": "binary",
              "metric": "logloss", "submission": "probability", "kaggle": None}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("check", ["test_fields", "test_metric_direction_is_consistent",
                                   "test_submission_accepts_a_well_formed_frame_and_rejects_malformed_ones",
                                   "test_blend_space_round_trips", "test_verbs_exist"])
@pytest.mark.parametrize("which", ["cifar-10", "dog-breed-identification", "binary"])
def test_image_competitions_keep_the_protocol(which, check, tmp_path):
    import test_competition_protocol as protocol
    from pipelines.images.competition import from_file

    path = _binary_spec(tmp_path) if which == "binary" else SPECS / f"{which}.yaml"
    comp = from_file(path)
    assert comp.kind == "images" and comp.name == specs.load(path).name
    arguments = {"test_submission_accepts_a_well_formed_frame_and_rejects_malformed_ones": (comp, tmp_path)}
    getattr(protocol, check)(*arguments.get(check, (comp,)))


def test_every_verb_through_the_command_line(home, cifar, tmp_path, capsys, own_registry):
    from pipelines.cli import main

    def run(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    fast = [part for key, value in CNN_FAST.items() for part in ("--set", f"{key}={value}")]
    code, out, _ = run("train", "cifar-10", "--data", cifar, "--name", "c1", "--device", "cpu", *fast)
    assert code == 0 and "CV accuracy:" in out
    code, _, _ = run("predict", "cifar-10", "--run", "c1", "--test", cifar / "test", "--out", home / "p.csv")
    assert code == 0 and list(pd.read_csv(home / "p.csv").columns) == ["id", "label"]
    assert run("submit", "cifar-10", "--run", "c1")[0] == 0
    assert (home / "submissions" / "cifar-10" / "c1.csv").read_text() == (home / "p.csv").read_text()
    code, out, _ = run("leaderboard", "cifar-10")
    assert code == 0 and "c1" in out
    assert run("report", "cifar-10", "--run", "c1")[0] == 0
    assert "## Spec" in (home / "runs" / "cifar-10" / "c1" / "report" / "report.md").read_text()
    code, _, err = run("train", "cifar-10", "--data", tmp_path / "nowhere")
    assert code == 2 and err.count("\n") == 1 and "no trainLabels.csv there" in err

    # multiclass runs blend (log class probabilities), and the blend's label submission is what
    # predicting the test folder with the blend gives
    assert run("train", "cifar-10", "--data", cifar, "--name", "c2", "--device", "cpu", *fast,
               "--set", "width=12")[0] == 0
    code, out, err = run("blend", "cifar-10", "c1", "c2", "--method", "weights", "--name", "both")
    assert code == 0 and "blend CV" in out, err
    assert run("submit", "cifar-10", "--run", "both")[0] == 0
    assert run("predict", "cifar-10", "--run", "both", "--test", cifar / "test", "--out", home / "both.csv")[0] == 0
    assert (home / "submissions" / "cifar-10" / "both.csv").read_text() == (home / "both.csv").read_text()

    # a binary images spec: two runs blend (logits of P(positive)), and the blend predicts a folder
    two = write_cifar(tmp_path / "two", per_class=10, n_test=5, classes=("cat", "dog"))
    pd.DataFrame({"id": range(1, 6), "label": 0.5}).to_csv(two / "sampleSubmission.csv", index=False)
    spec_path = _binary_spec(tmp_path)
    for name, width in (("w8", 8), ("w12", 12)):
        assert run("train", spec_path, "--data", two, "--name", name, "--device", "cpu", *fast,
                   "--set", f"width={width}")[0] == 0
    code, out, _ = run("blend", spec_path, "w8", "w12", "--method", "mean", "--name", "mean")
    assert code == 0 and "blend CV" in out
    assert run("submit", spec_path, "--run", "mean")[0] == 0
    assert run("predict", spec_path, "--run", "mean", "--test", two / "test", "--out", home / "b.csv")[0] == 0
    pd.testing.assert_frame_equal(pd.read_csv(home / "b.csv"), pd.read_csv(home / "submissions" / "two" / "mean.csv"),
                                  rtol=1e-9)
