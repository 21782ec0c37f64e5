"""7z archives (pipelines/archives.py): CIFAR-10 as Kaggle ships it (train.7z, test.7z), unpacked by
`make data` (kaggle.unpack) and by `prepare --data DIR` (images.data.locate), on small real archives
written here with py7zr."""

import errno
import io
import zipfile
from pathlib import Path

import pandas as pd
import py7zr
import pytest
from PIL import Image

from pipelines import archives, kaggle
from pipelines.cli import main
from pipelines.errors import UserError
from pipelines.images import data

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]
CLASSES = ["airplane", "cat"]


def png(color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, "PNG")
    return buffer.getvalue()


def make_7z(path: Path, members: dict, monkeypatch=None) -> Path:
    """A real 7z archive of these members (name -> bytes). With monkeypatch, py7zr's own check of
    member names is off, so that an archive with a '..' or absolute member can be written."""
    if monkeypatch is not None:
        monkeypatch.setattr(py7zr.py7zr, "check_archive_path", lambda name: True)
    with py7zr.SevenZipFile(path, "w") as seven:
        for name, content in members.items():
            seven.writestr(content, name)
    if monkeypatch is not None:
        monkeypatch.undo()
    return path


def images(split: str, n: int, offset: int = 0) -> dict:
    return {f"{split}/{i}.png": png(COLORS[(i + offset) % len(COLORS)]) for i in range(1, n + 1)}


def one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


def cifar_download(folder: Path, n_train: int = 6, n_test: int = 4) -> dict:
    """The members of Kaggle's cifar-10.zip: train.7z, test.7z and the two CSVs, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = pd.DataFrame({"id": range(1, n_train + 1), "label": [CLASSES[i % 2] for i in range(n_train)]})
    labels.to_csv(folder / "trainLabels.csv", index=False)
    pd.DataFrame({"id": range(1, n_test + 1), "label": CLASSES[0]}).to_csv(folder / "sampleSubmission.csv",
                                                                            index=False)
    make_7z(folder / "train.7z", images("train", n_train))
    make_7z(folder / "test.7z", images("test", n_test, offset=3))
    return {name: (folder / name).read_bytes()
            for name in ("train.7z", "test.7z", "trainLabels.csv", "sampleSubmission.csv")}


# --------------------------------------------------------------------------- archives.extract

def test_extract_writes_the_regular_files_and_skips_hidden_ones(tmp_path):
    members = {**images("train", 3), "train/.DS_Store": b"x", "__MACOSX/train/._1.png": b"x",
               "train/empty.txt": b""}
    archive = make_7z(tmp_path / "train.7z", members)
    assert archives.extract(archive, tmp_path / "out") == 4
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written == ["train/1.png", "train/2.png", "train/3.png", "train/empty.txt"]
    assert (tmp_path / "out" / "train" / "2.png").read_bytes() == members["train/2.png"]


@pytest.mark.parametrize("member", ["../evil.png", "train/../../evil.png", "/tmp/evil.png"])
def test_a_member_escaping_the_folder_is_refused_before_anything_is_written(tmp_path, monkeypatch, member):
    archive = make_7z(tmp_path / "train.7z", {"train/1.png": png(COLORS[0]), member: b"evil"}, monkeypatch)
    with pytest.raises(UserError) as exc:
        archives.extract(archive, tmp_path / "out")
    assert f"train.7z: refusing member {member!r} (absolute path or '..')" in one_line(exc)
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.png").exists()


@pytest.mark.parametrize("damage", [lambda b: b"7z", lambda b: b[: len(b) // 2], lambda b: b[:-40] + b"\0" * 40,
                                    lambda b: b[:32] + bytes(x ^ 0xFF for x in b[32:64]) + b[64:]],
                         ids=["not-7z", "truncated", "header-zeroed", "data-flipped"])
def test_a_damaged_archive_is_unreadable_in_one_line(tmp_path, damage):
    good = make_7z(tmp_path / "good.7z", images("train", 4)).read_bytes()
    (tmp_path / "train.7z").write_bytes(damage(good))
    with pytest.raises(archives.Unreadable) as exc:
        archives.extract(tmp_path / "train.7z", tmp_path / "out")
    assert one_line(exc)


# --------------------------------------------------------------------------- make data: kaggle.unpack

def test_unpack_extracts_the_7z_archives_inside_kaggles_zip(tmp_path, capsys):
    members = cifar_download(tmp_path / "kaggle")
    downloaded, stage = tmp_path / "download", tmp_path / "stage"
    downloaded.mkdir()
    with zipfile.ZipFile(downloaded / "cifar-10.zip", "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    assert kaggle.unpack("cifar-10", downloaded, stage) == ["sampleSubmission.csv", "test", "train",
                                                            "trainLabels.csv"]
    assert sorted(p.name for p in (stage / "train").iterdir()) == [f"{i}.png" for i in range(1, 7)]
    assert sorted(p.name for p in (stage / "test").iterdir()) == [f"{i}.png" for i in range(1, 5)]
    assert (stage / "train" / "1.png").read_bytes() == png(COLORS[1])
    assert capsys.readouterr().out.splitlines() == ["unpacked test.7z (4 files)", "unpacked train.7z (6 files)"]
    assert data.locate(stage, "train") == stage / "train"


def test_unpack_extracts_7z_archives_at_the_top_of_the_download(tmp_path):
    downloaded = tmp_path / "download"
    cifar_download(downloaded)
    assert kaggle.unpack("cifar-10", downloaded, tmp_path / "stage") == ["sampleSubmission.csv", "test", "train",
                                                                         "trainLabels.csv"]


def test_unpack_refuses_a_7z_member_with_dotdot(tmp_path, monkeypatch):
    downloaded = tmp_path / "download"
    downloaded.mkdir()
    make_7z(downloaded / "train.7z", {"train/1.png": png(COLORS[0]), "../evil.png": b"evil"}, monkeypatch)
    with pytest.raises(UserError) as exc:
        kaggle.unpack("cifar-10", downloaded, tmp_path / "stage")
    assert "train.7z: refusing member '../evil.png'" in one_line(exc)
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "stage" / "train").exists()


def test_unpack_says_a_damaged_7z_in_one_line(tmp_path):
    downloaded = tmp_path / "download"
    downloaded.mkdir()
    with zipfile.ZipFile(downloaded / "cifar-10.zip", "w") as zf:
        zf.writestr("train.7z", b"7z")
    with pytest.raises(UserError) as exc:
        kaggle.unpack("cifar-10", downloaded, tmp_path / "stage")
    assert one_line(exc) == "train.7z: not a readable 7z archive (Bad7zFile: not a 7z file); download it again by rerunning the same command"


# --------------------------------------------------------------------------- prepare --data DIR: locate

def test_locate_unpacks_a_7z_once_into_the_folder_beside_it(tmp_path, capsys):
    members = images("train", 5)
    make_7z(tmp_path / "train.7z", members)
    assert data.locate(tmp_path, "train") == tmp_path / "train"
    assert capsys.readouterr().out == f"unpacked train.7z into {tmp_path / 'train'} (5 files)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train", "train.7z"]       # no temporary folder left
    assert (tmp_path / "train" / "3.png").read_bytes() == members["train/3.png"]
    assert data.locate(tmp_path, "train") == tmp_path / "train"                       # once: now the folder
    assert capsys.readouterr().out == ""


def test_locate_unpacks_a_7z_without_a_top_folder_into_the_folder(tmp_path, capsys):
    make_7z(tmp_path / "test.7z", {"1.png": png(COLORS[0]), "2.png": png(COLORS[1])})
    assert data.locate(tmp_path, "test") == tmp_path / "test"
    assert sorted(p.name for p in (tmp_path / "test").iterdir()) == ["1.png", "2.png"]
    assert (tmp_path / "test").stat().st_mode & 0o777 != 0o700                         # not mkdtemp's private mode


def test_locate_damaged_7z_is_one_line_and_leaves_nothing(tmp_path):
    (tmp_path / "train.7z").write_bytes(b"7z")
    with pytest.raises(UserError) as exc:
        data.locate(tmp_path, "train")
    assert "train.7z: unpack it first (`cd " in one_line(exc) and "not a readable 7z archive" in str(exc.value)
    assert [p.name for p in tmp_path.iterdir()] == ["train.7z"]


def test_locate_in_a_read_only_folder_says_how_to_unpack(tmp_path, monkeypatch):
    make_7z(tmp_path / "train.7z", images("train", 2))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(archives.tempfile, "mkdtemp", read_only)
    with pytest.raises(UserError) as exc:
        data.locate(tmp_path, "train")
    assert one_line(exc).startswith(f"cannot unpack {tmp_path / 'train.7z'} into {tmp_path / 'train'} "
                                    f"(Read-only file system): copy {tmp_path} somewhere you can write")
    assert "7z x train.7z" in str(exc.value) and not (tmp_path / "train").exists()


def test_prepare_with_data_holding_the_7z_archives(home, tmp_path, capsys):
    folder = tmp_path / "mine"
    cifar_download(folder)
    assert main(["prepare", "cifar-10", "--data", str(folder), "--workers", "0", "--set", "threads=1"]) == 0
    out = capsys.readouterr().out
    assert f"unpacked train.7z into {folder / 'train'} (6 files)\n" in out
    assert f"unpacked test.7z into {folder / 'test'} (4 files)\n" in out
    target = home / "data" / "cifar-10"
    assert (target / "train").resolve() == (folder / "train").resolve()
    assert sorted(p.name for p in (target / "train").iterdir()) == [f"{i}.png" for i in range(1, 7)]
    assert f"ready in {target}" in out
    # again: the folders are there, nothing is unpacked twice
    assert main(["prepare", "cifar-10", "--data", str(folder), "--workers", "0", "--set", "threads=1"]) == 0
    assert "unpacked" not in capsys.readouterr().out
