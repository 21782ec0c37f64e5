"""make bench: measured figures, written to benchmarks/RESULTS.md.

Each benchmark is a function `run(quick) -> Markdown` in its own module; run one alone with
`python -m benchmarks.run NAME [NAME ...] [--quick] [--out FILE]`.

* All benchmarks (the default, `make bench`): RESULTS.md is written anew.
* Some benchmarks: their sections of RESULTS.md are replaced, the others kept.
* --quick: small sizes, for development and tests; written to benchmarks/out/RESULTS-quick.md
  unless --out says otherwise, so RESULTS.md only ever holds full runs.

Each section records the load average (1/5/15 min) at its start and end, since other jobs
may share the CPU, and its wall time.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

from . import datapath, flops, house_prices, memory, prepare, recipes, time_to_accuracy
from .common import OUT, loadavg

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
QUICK_RESULTS = OUT / "RESULTS-quick.md"

BENCHMARKS: dict[str, Callable[[bool], str]] = {
    "datapath": datapath.run,
    "flops": flops.run,
    "prepare": prepare.run,
    "house_prices": house_prices.run,
    "time_to_accuracy": time_to_accuracy.run,
    "memory": memory.run,
    "recipes": recipes.run,
    "recipe_strongest": recipes.run_strongest,
}


def machine() -> str:
    import albumentations
    import numpy
    import onnxruntime
    import pandas
    import PIL
    import simplejpeg
    import sklearn
    import timm
    import torch
    import torchvision

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            mem = f", {int(fh.readline().split()[1]) / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        mem = ""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"- machine: {cpu} ({platform.machine()}), {os.cpu_count()} cores ({usable} usable){mem}, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}\n"
            f"- torch {torch.__version__} ({torch.get_num_threads()} threads by default, "
            f"{torch.__config__.parallel_info().splitlines()[-1].strip() or 'OpenMP'}), torchvision "
            f"{torchvision.__version__}, timm {timm.__version__}, onnxruntime {onnxruntime.__version__}\n"
            f"- numpy {numpy.__version__}, pandas {pandas.__version__}, scikit-learn {sklearn.__version__}, "
            f"Pillow {PIL.__version__}, simplejpeg {simplejpeg.__version__}, albumentations "
            f"{albumentations.__version__}\n")


def header(quick: bool) -> str:
    kind = "quick mode (small sizes; not for quoting)" if quick else "full run"
    return (f"# Benchmarks\n\nWritten by `make bench` (`python -m benchmarks.run`), {kind}, "
            f"{time.strftime('%Y-%m-%d %H:%M')}. Every ratio is measured in one run on this machine; "
            "other jobs may have shared the CPU (see each section's load average, 1/5/15 min).\n\n"
            f"{machine()}")


def run_one(name: str, quick: bool) -> str:
    started, load0 = time.perf_counter(), loadavg()
    stamp = time.strftime("%Y-%m-%d %H:%M")
    try:
        body = BENCHMARKS[name](quick).rstrip() + "\n"
    except Exception:
        body = f"## {name}\n\n**failed**:\n\n```\n{traceback.format_exc()}```\n"
    wall = time.perf_counter() - started
    note = (f"\n_{name}{' --quick' if quick else ''}: {stamp}, {wall:.0f} s; load average {load0} at the start, "
            f"{loadavg()} at the end._\n")
    return f"<!-- bench:{name} -->\n{body}{note}<!-- /bench:{name} -->\n"


_SECTION = re.compile(r"<!-- bench:(\w+) -->\n.*?<!-- /bench:\1 -->\n", re.S)


def merge(old: str, sections: dict[str, str], head: str) -> str:
    """The Markdown file: `head`, then the sections of `old` with `sections` replacing or joining
    them, in BENCHMARKS order."""
    kept = {m.group(1): m.group(0) for m in _SECTION.finditer(old)}
    kept.update(sections)
    ordered = [kept[n] for n in BENCHMARKS if n in kept] + [v for n, v in kept.items() if n not in BENCHMARKS]
    return head + "\n" + "\n".join(ordered)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default all: {', '.join(BENCHMARKS)})")
    parser.add_argument("--quick", action="store_true", help="small sizes, for development and tests")
    parser.add_argument("--out", type=Path, help="Markdown file to write (default RESULTS.md; with --quick "
                                                 "benchmarks/out/RESULTS-quick.md)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        print(f"error: unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    chosen = list(dict.fromkeys(args.names)) or list(BENCHMARKS)
    out = args.out or (QUICK_RESULTS if args.quick else RESULTS)
    # all of them: a new file; some: the other sections of the file stay
    old = out.read_text() if out.exists() and set(chosen) != set(BENCHMARKS) else ""
    os.environ.setdefault("PIPELINES_QUIET", "1")
    sections: dict[str, str] = {}
    for name in chosen:
        print(f"running {name}{' (quick)' if args.quick else ''} ...", flush=True)
        sections[name] = run_one(name, args.quick)
        print(sections[name], flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(merge(old, sections, header(args.quick)))   # after each: a crash keeps the rest
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
