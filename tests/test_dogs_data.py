"""Tests for the Dogs vs. Cats prepare stage (pipelines.competitions.dogs_vs_cats.data)."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipelines.competitions.dogs_vs_cats import data as dd
from pipelines.images import cache
from pipelines.errors import UserError

# --------------------------------------------------------------------------- helpers

def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def solid(color, size=(64, 48), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def noise(size=(300, 300), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def png_header_only(w: int, h: int) -> bytes:
    """A PNG that declares w x h pixels but holds none: a cheap decompression bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def palette_png() -> bytes:
    img = Image.new("P", (40, 40), 0)
    img.putpalette([0, 0, 255] + [0, 255, 0] + [0, 0, 0] * 254)
    img.paste(1, (0, 20, 40, 40))                   # top blue, bottom green
    return encode(img, "PNG")


def rgba_png() -> bytes:
    a = np.zeros((40, 80, 4), np.uint8)
    a[:, :40] = (255, 0, 0, 255)                    # left opaque red, right fully transparent
    return encode(Image.fromarray(a, "RGBA"), "PNG")


def png16(value=40000) -> bytes:
    return encode(Image.fromarray(np.full((32, 48), value, np.uint16)), "PNG")


def truncated_jpeg() -> bytes:
    full = encode(noise(), "JPEG", quality=95)
    return full[: len(full) // 2]


GOOD = {                                            # name -> bytes, all decodable
    "cat.1.jpg": encode(solid((200, 40, 40)), "JPEG", quality=95),
    "cat.2.jpg": encode(solid(90, mode="L"), "JPEG"),                    # grayscale
    "cat.3.jpg": palette_png(),                                          # PNG named .jpg
    "cat.4.png": rgba_png(),
    "dog.1.jpg": encode(solid((20, 200, 30)).convert("CMYK"), "JPEG", quality=95),
    "dog.2.jpg": png16(),                                                # 16-bit PNG
    "dog.3.JPG": encode(solid((10, 10, 250)), "GIF"),                   # GIF named .JPG
    "dog.10.jpeg": encode(noise((900, 500), seed=1), "JPEG"),           # big: draft mode
}
BAD = {                                             # name -> bytes, all refused
    "cat.5.jpg": b"",
    "cat.6.jpg": truncated_jpeg(),
    "dog.4.jpg": b"this is not an image\n",
    "dog.5.png": png_header_only(30000, 30000),
}


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture
def mixed(tmp_path) -> Path:
    """A train folder with every kind of good and bad file, plus names to ignore."""
    return write_files(tmp_path / "train", {**GOOD, **BAD, "notes.txt": b"x",
                                            "cat.x.jpg": GOOD["cat.1.jpg"], ".DS_Store": b""})


def build(entries, cache, size=32, workers=1):
    return dd.build_cache(entries, cache, size, workers=workers, progress=False)


# --------------------------------------------------------------------------- decode

def test_decode_rgb_jpeg_keeps_colour():
    out = dd.decode(GOOD["cat.1.jpg"], 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - (200, 40, 40)).max() <= 3


def test_decode_grayscale_gives_three_equal_channels():
    out = dd.decode(GOOD["cat.2.jpg"], 16)
    assert out.shape == (16, 16, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert abs(int(out[0, 0, 0]) - 90) <= 2


def test_decode_palette_png_named_jpg_by_content():
    out = dd.decode(GOOD["cat.3.jpg"], 20)
    assert tuple(out[2, 10]) == (0, 0, 255)          # top stays blue
    assert tuple(out[17, 10]) == (0, 255, 0)         # bottom stays green


def test_decode_rgba_composites_over_white():
    out = dd.decode(GOOD["cat.4.png"], 20)
    assert tuple(out[10, 1]) == (255, 0, 0)
    assert tuple(out[10, 18]) == (255, 255, 255)     # transparent -> white, not black


def test_decode_cmyk_jpeg_to_rgb():
    out = dd.decode(GOOD["dog.1.jpg"], 16)
    assert np.abs(out.astype(int) - (20, 200, 30)).max() <= 8


def test_decode_16bit_png_is_scaled_not_clipped():
    out = dd.decode(png16(40000), 8)
    assert (out == 156).all()                        # 40000 / 257 = 155.6; PIL's convert gives 255
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    out = dd.decode(encode(Image.fromarray(ramp), "PNG"), 64)
    row = out[4, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and (np.diff(row) >= 0).all() and 100 < row[32] < 160


def test_decode_gif_and_other_modes():
    assert np.abs(dd.decode(GOOD["dog.3.JPG"], 8).astype(int) - (10, 10, 250)).max() <= 2
    one = Image.new("1", (16, 16), 0)
    one.paste(1, (0, 0, 16, 8))
    out = dd.decode(encode(one, "PNG"), 16)
    assert tuple(out[2, 2]) == (255, 255, 255) and tuple(out[13, 2]) == (0, 0, 0)
    la = Image.new("LA", (16, 16), (50, 0))          # fully transparent grey
    assert (dd.decode(encode(la, "PNG"), 8) == 255).all()


def test_decode_squashes_instead_of_cropping():
    img = Image.new("RGB", (400, 100), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 100, 100))         # left quarter red
    out = dd.decode(encode(img, "PNG"), 40)
    assert tuple(out[20, 2]) == (255, 0, 0)          # a centre crop would have no red
    assert tuple(out[20, 30]) == (0, 0, 255)


def test_decode_is_deterministic_and_draft_is_close():
    data = GOOD["dog.10.jpeg"]
    a, b = dd.decode(data, 64), dd.decode(data, 64)
    assert np.array_equal(a, b)
    ref = dd.decode(data, 64, draft=False)
    assert not np.array_equal(a, ref)                # draft really changes the path taken
    assert np.abs(a.astype(int) - ref).mean() < 6


@pytest.mark.parametrize("name, words", [
    ("cat.5.jpg", "empty"),
    ("cat.6.jpg", "truncated"),
    ("dog.4.jpg", "not an image"),
    ("dog.5.png", "decompression bomb"),
])
def test_decode_refuses_bad_files(name, words):
    with pytest.raises(dd.BadImage) as err:
        dd.decode(BAD[name], 32)
    assert words in err.value.reason and "\n" not in err.value.reason


def test_decode_refuses_images_over_our_pixel_limit_before_decoding():
    # 60 Mpx is under PIL's own bomb limit (89 Mpx) but over ours (50 Mpx)
    with pytest.raises(dd.BadImage, match="50,000,000 limit"):
        dd.decode(png_header_only(10_000, 6_000), 32)
    # 90 Mpx: PIL only warns; the warning must become a refusal
    with pytest.raises(dd.BadImage, match="decompression bomb"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(cache, "MAX_PIXELS", 10**9)
            dd.decode(png_header_only(9_500, 9_500), 32)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(["cat.1.jpg", "cat.3.jpg", "dog.10.jpeg", "cat.4.png"]),
       cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                            max_size=4))
def test_decode_damaged_bytes_give_an_image_or_badimage(which, cut, flips):
    data = bytearray(GOOD[which][: max(0, int(len(GOOD[which]) * cut))] if cut < 0.98
                     else GOOD[which])
    for pos, value in flips:
        if data:
            data[int(pos * (len(data) - 1))] = value
    try:
        out = dd.decode(bytes(data), 12)
    except dd.BadImage as e:
        assert e.reason and "\n" not in e.reason
    else:
        assert out.shape == (12, 12, 3) and out.dtype == np.uint8


# --------------------------------------------------------------------------- scan

@pytest.fixture
def kaggle(tmp_path) -> Path:
    root = tmp_path / "kaggle"
    write_files(root / "train", {"cat.2.jpg": GOOD["cat.1.jpg"], "cat.1.jpg": GOOD["cat.2.jpg"],
                                 "dog.10.JPG": GOOD["dog.1.jpg"], "dog.2.png": GOOD["cat.4.png"],
                                 "notes.txt": b"x", "cat.x.jpg": b"", ".DS_Store": b""})
    write_files(root / "test1", {"10.jpg": GOOD["cat.1.jpg"], "2.jpg": GOOD["cat.2.jpg"],
                                 "1.jpg": GOOD["dog.1.jpg"], "README.txt": b"hi"})
    return root


def kaggle_zips(folder: Path, out: Path) -> Path:
    out.mkdir()
    for split, zname in (("train", "train.zip"), ("test1", "test1.zip")):
        with zipfile.ZipFile(out / zname, "w") as zf:
            for f in sorted((folder / split).iterdir()):
                zf.write(f, f"{split}/{f.name}")
    return out


def test_scan_kaggle_folder(kaggle):
    train = dd.scan(kaggle, "train")
    assert [e.key for e in train] == ["cat.1.jpg", "cat.2.jpg", "dog.10.JPG", "dog.2.png"]
    assert [e.label for e in train] == [0, 0, 1, 1]
    assert [e.id for e in train] == [1, 2, 10, 2]
    assert train.ignored == ["cat.x.jpg", "notes.txt"]       # hidden files are not counted
    assert train[2].read_bytes() == GOOD["dog.1.jpg"] and train[2].nbytes == len(GOOD["dog.1.jpg"])
    test = dd.scan(kaggle, "test")
    assert [e.id for e in test] == [1, 2, 10]                # numeric order, not "1, 10, 2"
    assert {e.label for e in test} == {-1} and test.ignored == ["README.txt"]
    # the split folder itself works too ("any folder of N.jpg")
    assert [e.key for e in dd.scan(kaggle / "test1", "test")] == ["1.jpg", "2.jpg", "10.jpg"]


def test_scan_kaggle_zips_match_the_folder(kaggle, tmp_path):
    zips = kaggle_zips(kaggle, tmp_path / "download")
    for split in ("train", "test"):
        from_dir, from_zip = dd.scan(kaggle, split), dd.scan(zips, split)
        assert [(e.key, e.label, e.id, e.nbytes) for e in from_zip] == \
               [(e.key, e.label, e.id, e.nbytes) for e in from_dir]
        assert all(z.member and z.read_bytes() == d.read_bytes()
                   for z, d in zip(from_zip, from_dir))
    direct = dd.scan(zips / "test1.zip", "test")
    assert [e.id for e in direct] == [1, 2, 10]


def test_scan_one_zip_holding_both_splits(kaggle, tmp_path):
    archive = tmp_path / "both.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(kaggle.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(kaggle).as_posix())
    assert len(dd.scan(archive, "train")) == 4
    assert [e.id for e in dd.scan(archive, "test")] == [1, 2, 10]


def test_scan_refuses_nested_competition_zip(kaggle, tmp_path):
    zips = kaggle_zips(kaggle, tmp_path / "download")
    outer = tmp_path / "dogs-vs-cats.zip"
    with zipfile.ZipFile(outer, "w") as zf:
        zf.write(zips / "train.zip", "train.zip")
    with pytest.raises(UserError, match="unzip"):
        dd.scan(outer, "train")


def one_line_error(source, split) -> str:
    with pytest.raises(UserError) as err:
        dd.scan(source, split)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_scan_errors(tmp_path):
    missing = tmp_path / "nope"
    assert str(missing) in one_line_error(missing, "train") and "not found" in \
        one_line_error(missing, "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "empty" in one_line_error(empty, "train") and str(empty) in one_line_error(empty, "test")
    other = write_files(tmp_path / "other", {"a.jpg": b"1", "b.txt": b"2"})
    message = one_line_error(other, "train")
    assert str(other) in message and "cat.N.jpg" in message and "a.jpg" in message
    with pytest.raises(UserError, match="split"):
        dd.scan(other, "valid")


def test_scan_test_names_must_be_numeric(tmp_path):
    folder = write_files(tmp_path / "t", {"1.jpg": b"", "cat.1.jpg": b"", "abc.PNG": b"",
                                          "notes.txt": b""})
    message = one_line_error(folder, "test")
    assert str(folder) in message and "abc.PNG" in message and "cat.1.jpg" in message
    assert "notes.txt" not in message and "2 are not" in message
    many = write_files(tmp_path / "many", {f"img{i}.jpg": b"" for i in range(8)})
    message = one_line_error(many, "test")
    assert "img0.jpg" in message and "img7.jpg" not in message and "8 in all" in message


def test_scan_duplicate_test_ids(tmp_path):
    folder = write_files(tmp_path / "t", {"1.jpg": b"a", "01.jpg": b"b", "2.jpg": b"c"})
    message = one_line_error(folder, "test")
    assert "duplicate" in message and "01.jpg 1.jpg" in message and "2.jpg" not in message


# --------------------------------------------------------------------------- cache

def test_build_cache_skips_bad_files_and_rows_match_decode(mixed, tmp_path):
    entries = dd.scan(mixed, "train")
    info = build(entries, tmp_path / "cache", size=24, workers=2)
    cache = dd.load_cache(tmp_path / "cache")
    good = sorted(GOOD)
    assert info.count == len(good) and cache.keys == good
    assert cache.images.shape == (len(good), 24, 24, 3) and cache.images.dtype == np.uint8
    assert list(cache.labels) == [0 if k.startswith("cat") else 1 for k in good]
    assert list(cache.ids) == [int(k.split(".")[1]) for k in good]
    for i, key in enumerate(good):                  # compaction kept every row in its place
        assert np.array_equal(cache.images[i], dd.decode(GOOD[key], 24)), key
    assert {s["key"] for s in info.skipped} == set(BAD)
    m = cache.manifest
    assert m["counts"] == {"entries": 12, "images": 8, "skipped": 4, "ignored": 2,
                           "labels": {"cat": 4, "dog": 4}}
    assert m["size"] == 24 and m["format_version"] == dd.FORMAT_VERSION
    assert m["fingerprint"].startswith("sha256:") and m["fingerprint"] == dd.fingerprint(entries)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]
    text = dd.summary(cache)
    assert "8 of 12 images" in text and "cat 4, dog 4" in text
    for name in BAD:
        assert name in text
    assert "empty file" in text and "notes.txt" in text and "cat.x.jpg" in text


def test_cache_is_a_read_only_memmap(mixed, tmp_path):
    build(dd.scan(mixed, "train"), tmp_path / "c")
    cache = dd.load_cache(tmp_path / "c")
    assert isinstance(cache.images, np.memmap) and not cache.images.flags.writeable
    with pytest.raises(ValueError):
        cache.images[0, 0, 0, 0] = 1


def test_workers_give_the_same_cache(mixed, tmp_path):
    entries = dd.scan(mixed, "train")
    build(entries, tmp_path / "one", workers=1)
    build(entries, tmp_path / "two", workers=2)
    a, b = dd.load_cache(tmp_path / "one"), dd.load_cache(tmp_path / "two")
    assert np.array_equal(a.images, b.images) and a.keys == b.keys
    assert a.manifest["fingerprint"] == b.manifest["fingerprint"]


def test_zip_and_folder_sources_give_the_same_cache(kaggle, tmp_path):
    zips = kaggle_zips(kaggle, tmp_path / "download")
    build(dd.scan(kaggle, "test"), tmp_path / "dir")
    cache_zip = dd.ensure_cache(dd.scan(zips, "test"), tmp_path / "zip", 32, progress=False)
    cache_dir = dd.load_cache(tmp_path / "dir")
    assert np.array_equal(cache_dir.images, cache_zip.images)
    assert list(cache_zip.ids) == [1, 2, 10] and (cache_zip.labels == -1).all()
    # the fingerprint is by content: the unzipped folder reuses the zip's cache
    assert not dd.ensure_cache(dd.scan(kaggle, "test"), tmp_path / "zip", 32,
                               progress=False).rebuilt


def test_ensure_cache_reuses_and_rebuilds(mixed, tmp_path):
    cache_dir = tmp_path / "cache"
    entries = dd.scan(mixed, "train")
    first = dd.ensure_cache(entries, cache_dir, 16, progress=False)
    assert first.rebuilt and "manifest" in first.reason
    stamp = (cache_dir / "images.npy").stat()

    again = dd.ensure_cache(dd.scan(mixed, "train"), cache_dir, 16, progress=False)
    assert not again.rebuilt and again.reason is None
    assert (cache_dir / "images.npy").stat().st_mtime_ns == stamp.st_mtime_ns
    assert (cache_dir / "images.npy").stat().st_ino == stamp.st_ino

    (mixed / "cat.1.jpg").write_bytes(encode(solid((0, 0, 0)), "BMP"))    # edit in place
    changed = dd.ensure_cache(dd.scan(mixed, "train"), cache_dir, 16, progress=False)
    assert changed.rebuilt and "contents" in changed.reason
    assert changed.images[changed.keys.index("cat.1.jpg")].max() == 0

    size_before = (mixed / "cat.1.jpg").stat().st_size                      # same byte count,
    (mixed / "cat.1.jpg").write_bytes(encode(solid((255, 255, 255)), "BMP"))  # other pixels
    assert (mixed / "cat.1.jpg").stat().st_size == size_before
    same_size = dd.ensure_cache(dd.scan(mixed, "train"), cache_dir, 16, progress=False)
    assert same_size.rebuilt and "contents" in same_size.reason
    assert same_size.images[same_size.keys.index("cat.1.jpg")].min() == 255

    resized = dd.ensure_cache(dd.scan(mixed, "train"), cache_dir, 20, progress=False)
    assert resized.rebuilt and "size" in resized.reason and resized.images.shape[1:] == (20, 20, 3)

    (mixed / "dog.1.jpg").unlink()
    fewer = dd.ensure_cache(dd.scan(mixed, "train"), cache_dir, 20, progress=False)
    assert fewer.rebuilt and "number of files" in fewer.reason and "dog.1.jpg" not in fewer.keys

    (mixed / "cat.5.jpg").write_bytes(GOOD["cat.1.jpg"])     # a bad file repaired
    fixed = dd.ensure_cache(dd.scan(mixed, "train"), cache_dir, 20, progress=False)
    assert fixed.rebuilt and "cat.5.jpg" in fixed.keys


def test_half_built_cache_is_rebuilt_never_read(mixed, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    entries = dd.scan(mixed, "train")
    build(entries, cache_dir)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:                # a build killed half way
        mp.setattr(cache, "_decode_all", crash)
        with pytest.raises(KeyboardInterrupt):
            build(entries, cache_dir)
    assert not (cache_dir / "manifest.json").exists()
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".")]
    with pytest.raises(UserError, match="manifest.json"):
        dd.load_cache(cache_dir)
    assert "manifest" in dd.cache_status(entries, cache_dir, 32)
    assert dd.ensure_cache(entries, cache_dir, 32, progress=False).rebuilt

    (cache_dir / "manifest.json").write_text("{not json")
    assert dd.ensure_cache(entries, cache_dir, 32, progress=False).rebuilt

    with open(cache_dir / "images.npy", "r+b") as fh:          # array cut short
        fh.truncate(1000)
    assert "images.npy" in dd.cache_status(entries, cache_dir, 32)
    with pytest.raises(UserError, match="images.npy"):
        dd.load_cache(cache_dir)
    assert dd.ensure_cache(entries, cache_dir, 32, progress=False).images.shape[0] == 8

    manifest = json.loads((cache_dir / "manifest.json").read_text())
    manifest["format_version"] = dd.FORMAT_VERSION + 1
    (cache_dir / "manifest.json").write_text(json.dumps(manifest))
    assert "format" in dd.cache_status(entries, cache_dir, 32)


def test_all_bad_files_is_a_user_error(tmp_path):
    folder = write_files(tmp_path / "bad", BAD)
    with pytest.raises(UserError, match="none of the 4 images"):
        build(dd.scan(folder, "train"), tmp_path / "cache")
    assert not (tmp_path / "cache" / "manifest.json").exists()


# --------------------------------------------------------------------------- whole images

def _train_with_originals(tmp_path: Path, source: Path, n_train: int, originals: list[str]) -> Path:
    """A train folder of links: the first n_train 200 px images of source (by name) and the given
    full-size originals renamed cat.(10**6 + N).jpg, as one folder of mixed sizes."""
    src = tmp_path / "train"
    src.mkdir()
    for name in sorted(os.listdir(source / "train"))[:n_train]:
        (src / name).symlink_to(source / "train" / name)
    for name in originals:
        animal, n, ext = name.split(".")
        (src / f"{animal}.{10**6 + int(n)}.{ext}").symlink_to(source / "originals" / name)
    return src


def _check_whole_images(tmp_path: Path, source: Path, n_train: int, originals: list[str]) -> None:
    """Scan, cache, reuse and rebuild on whole image files (200 px copies and originals of mixed
    sizes): every row equals decode() of its file."""
    src = _train_with_originals(tmp_path, source, n_train, originals)
    sizes = {Image.open(source / "originals" / n).size for n in originals}
    assert len(sizes) > 5                                                # really mixed sizes
    n = n_train + len(originals)

    entries = dd.scan(src, "train")
    assert len(entries) == n
    cache_dir = tmp_path / "cache"
    cache = dd.ensure_cache(entries, cache_dir, 64, workers=2, progress=False)
    assert cache.rebuilt and cache.images.shape == (n, 64, 64, 3)
    assert cache.manifest["counts"]["skipped"] == 0
    assert list(cache.labels) == [int(k.startswith("dog")) for k in cache.keys]
    assert {0, 1} == set(cache.labels.tolist())
    for i in range(n):
        assert np.array_equal(cache.images[i], dd.decode((src / cache.keys[i]).read_bytes(), 64)), \
            cache.keys[i]
    assert cache.images.std() > 20                                       # pictures, not blanks

    assert not dd.ensure_cache(dd.scan(src, "train"), cache_dir, 64, progress=False).rebuilt
    victim = src / cache.keys[3]
    target = victim.resolve()
    victim.unlink()
    shutil.copyfile(source / "train" / "dog.1.jpg", victim)             # same name, new picture
    assert target != victim.resolve()
    changed = dd.ensure_cache(dd.scan(src, "train"), cache_dir, 64, progress=False)
    assert changed.rebuilt and "contents" in changed.reason
    assert np.array_equal(changed.images[3], dd.decode(victim.read_bytes(), 64))
    assert not np.array_equal(changed.images[3], cache.images[3])
    resized = dd.ensure_cache(dd.scan(src, "train"), cache_dir, 48, progress=False)
    assert resized.rebuilt and resized.images.shape == (n, 48, 48, 3)


def test_whole_images_of_mixed_sizes_and_modes(dogs_data, tmp_path):
    """Drawn look-alikes: 40 of the 200 px copies and the 12 originals of mixed sizes, among them
    a greyscale, a CMYK and a progressive JPEG and a PNG with alpha named .jpg."""
    originals = sorted(os.listdir(dogs_data / "originals"))
    modes = set()
    for name in originals:
        with Image.open(dogs_data / "originals" / name) as im:
            modes.add((im.format, im.mode, bool(im.info.get("progressive"))))
    assert {("JPEG", "L", False), ("JPEG", "CMYK", False), ("JPEG", "RGB", True),
            ("PNG", "RGBA", False)} <= modes                              # the odd ones are there
    _check_whole_images(tmp_path, dogs_data, 40, originals)


@pytest.mark.real_data(needs="dogs-vs-cats/originals")
def test_real_images(real_dogs_data, tmp_path):
    """The real download: 40 of the 200 px copies and 20 full-size originals (cats and dogs)."""
    originals = sorted(os.listdir(real_dogs_data / "originals"))
    _check_whole_images(tmp_path, real_dogs_data, 40, originals[:10] + originals[-10:])
