"""Command line: python -m pipelines VERB COMPETITION [options]."""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time

from . import __version__, competition, distributed, hints, registry as leaderboard
from .errors import UserError

VERBS = {
    "prepare": "check the raw data and build what training reads (folds, decoded caches)",
    "train": "train k folds, save a checkpoint per fold, predict the test set, record the run",
    "predict": "predict a test file or folder from a run's fold checkpoints (no retraining)",
    "submit": "write the run's validated Kaggle submission to submissions/<competition>/<run>.csv",
    "export": "write a run (a blend: with its members) as a bundle that predicts offline: wheels, predict.py, "
              "a notebook",
    "leaderboard": "print every recorded run, best CV first",
    "kaggle-scores": "read the public scores of this project's Kaggle submissions back into the registry",
    "report": "write the run's report (report.md and plots) to runs/<competition>/<run>/report/",
    "summary": "print each layer's output shape and parameter count for one input",
    "demo": "run the whole job on built-in data (for a competition that ships it)",
    "blend": "blend finished runs that share the same folds into a new run (mean, fitted weights or a stack)",
    "sweep": "search a config's keys with Optuna, each trial a run; prune, resume, re-run the best on other seeds",
    "compare": "runs side by side: the config values that differ, CV and per-fold scores, paired fold by fold",
}


# verbs that only some competitions offer: the others are not offered them (help, errors)
OPTIONAL_VERBS = ("summary", "demo")

# what --quiet changes on each verb (every verb takes it, so scripts can pass it to all of them)
QUIET_HELP = {
    "prepare": "no progress bars while images are decoded or Kaggle's download runs",
    "train": "no progress bars or heartbeats; the per-fold lines and the summary stay",
    "demo": "no progress bars or heartbeats; the per-fold lines and the summary stay",
    "sweep": "no progress bars or heartbeats; a line per trial and the summary stay",
    "predict": "no progress bars while test images are decoded (image competitions)",
    "submit": "with --kaggle: Kaggle's CLI output is not echoed",
    "kaggle-scores": "Kaggle's CLI output is not echoed",
}
QUIET_NOTHING = "accepted for scripts; this verb shows no progress, so it changes nothing"


def competition_help(verb: str | None = None) -> str:
    """What the COMPETITION argument takes: the built-ins (those offering `verb`), the known specs
    (shipped, in the user's folder of specs, used before by path), or a spec file's path."""
    builtins = [c for c in competition.registered() if verb is None or c.verb(verb) is not None]
    if verb in OPTIONAL_VERBS:
        return f"{', '.join(c.name for c in builtins)} ({verb} is offered by these competitions only)"
    from . import specs

    known = [n for n in competition.loadable() if n not in {c.name for c in builtins}]
    text = ", ".join(c.name for c in builtins)
    if known:
        text += f"; specs: {', '.join(known)}"
    return (f"{text}; or a spec file's path (*.yaml), which makes its name known from then on "
            f"(also: specs in {specs.USER_FOLDER}/ under PIPELINES_HOME)")


RUN_HELP = ("run name or run folder; `best`: the finished run with the best CV that has test predictions "
            "(a run named best comes first)")


def _common(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument("--quiet", action="store_true", help=QUIET_HELP.get(verb, QUIET_NOTHING))


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    defaults = ", ".join(f"{c.name} {c.default_config}" for c in competition.registered() if c.default_config)
    parser.add_argument("--config", help="config name in configs/<competition>/ or a YAML path "
                                         f"(default: the competition's default config: {defaults})")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                        help="override a config key, e.g. --set lr=3e-4 (repeatable)")
    parser.add_argument("--data", help="folder with the competition's files in Kaggle's layout "
                                       "(default: data/<competition>)")
    parser.add_argument("--name", help="run name (default: config name plus a timestamp)")
    parser.add_argument("--folds", help="train only these folds, e.g. 0,1 or 2-4 (default: all)")
    parser.add_argument("--restart", action="store_true",
                        help="start over: empty the run of that --name (or, without --name, make a new run) "
                             "instead of resuming it")
    parser.add_argument("--preset", choices=["best", "fast"],
                        help="train the competition's portfolio within --time-limit and blend it (best; fast: "
                             "about a tenth of the time); instead of --config")
    parser.add_argument("--time-limit", type=float, metavar="SECONDS",
                        help="the whole command's budget with --preset (default: best 600, fast 60)")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic algorithms only (torch.use_deterministic_algorithms, cuDNN "
                             "deterministic, CUBLAS_WORKSPACE_CONFIG); slower on GPUs. Also PIPELINES_DETERMINISTIC=1")


def _track(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--track", choices=["mlflow"],
                        help="also log each run (config, fold and CV figures, curves, report) to MLflow: "
                             "MLFLOW_TRACKING_URI, else mlflow.db in the project home (the extra: "
                             "pip install -e '.[track]')")


def _device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | mps | cuda | cuda:N (default: auto)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines", description="Kaggle competitions from raw download to a scored submission.",
        epilog=f"COMPETITION: {competition_help()}. `{hints.pipelines('VERB --help')}` lists a verb's options.")
    parser.add_argument("--version", action="version", version=f"pipelines {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, text in VERBS.items():
        sub = verbs.add_parser(verb, help=text, description=text)
        if verb == "leaderboard":
            sub.add_argument("competition", nargs="?", help="only this competition")
            sub.add_argument("--markdown", action="store_true", help="print a Markdown table")
            sub.add_argument("--config", help="only the runs of this config")
            sub.add_argument("--public", action="store_true",
                             help="with COMPETITION: the submitted runs' CV against their Kaggle public scores "
                                  "(correlations, a plot, a warning when the orders disagree)")
            _common(sub, verb)
            continue
        sub.add_argument("competition", help=competition_help(verb))
        _common(sub, verb)
        if verb == "prepare":
            sub.add_argument("--data", help="raw data folder (Kaggle layout or Kaggle's zip files)")
            sub.add_argument("--config", help="config whose image size the cache is built for")
            sub.add_argument("--set", action="append", metavar="KEY=VALUE", default=[])
            sub.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
        elif verb in ("train", "demo"):
            _add_train_options(sub)
            _device(sub)
            _track(sub)
        elif verb == "compare":
            sub.add_argument("runs", nargs="+", metavar="RUN",
                             help="run names or run folders (at least 2; the first is the one the others "
                                  "are paired with); `best`: the best CV")
        elif verb == "predict":
            sub.add_argument("--run", required=True, help=RUN_HELP)
            sub.add_argument("--test", required=True, help=" or ".join(f"{c.test_input} ({c.name})"
                                                                        for c in competition.registered()))
            sub.add_argument("--out", required=True, help="where to write the submission CSV")
            _device(sub)
        elif verb == "report":
            sub.add_argument("--run", required=True, help=RUN_HELP)
        elif verb == "export":
            sub.add_argument("--run", required=True, help=RUN_HELP)
            sub.add_argument("--out", required=True, help="the bundle's folder (new or empty)")
            sub.add_argument("--base", metavar="FREEZE.txt",
                             help="`pip freeze --all` of the machine that will predict (e.g. Kaggle's image): wheels "
                                  "only for what it lacks or pins to another version")
            sub.add_argument("--no-wheels", action="store_true",
                             help="no wheels/ (the machine already has this version of the package installed)")
        elif verb == "submit":
            sub.add_argument("--run", required=True, help=RUN_HELP)
            sub.add_argument("--out", help="default: submissions/<competition>/<run>.csv")
            sub.add_argument("--kaggle", action="store_true",
                             help="then upload it with Kaggle's CLI and record its public score when scored")
            sub.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                             help="with --kaggle: wait up to this long for the score (default 0: read once)")
        elif verb == "blend":
            sub.add_argument("runs", nargs="+", metavar="RUN", help="run names or run folders (at least 2)")
            sub.add_argument("--method", choices=["mean", "weights", "stack"], default="weights",
                             help="mean; weights (non-negative, summing to 1, fitted on the out-of-fold "
                                  "predictions); stack (linear/logistic model) (default: weights)")
            sub.add_argument("--name", help="blend run name (default: blend-<method> plus a timestamp)")
            sub.add_argument("--restart", action="store_true", help="replace an existing run of that --name")
            _track(sub)
        elif verb == "sweep":
            from . import sweep
            sweep.add_arguments(sub)
            _device(sub)
            _track(sub)
        elif verb == "summary":
            sub.add_argument("--config", help="config name or YAML path")
            sub.add_argument("--set", action="append", metavar="KEY=VALUE", default=[])
    return parser


def main(argv: list[str] | None = None, started: float | None = None) -> int:
    """Run one command; `started` (a time.monotonic() value, default: now) is when it began, from
    which a preset's --time-limit counts (`python -m pipelines`: the start of the process)."""
    try:
        return _main(argv, time.monotonic() if started is None else started)
    except BrokenPipeError:  # the reader left (`leaderboard | head`): stop quietly, as `ls | head` does
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is no real file (a test's capture)
            pass
        return 141   # 128 + SIGPIPE, what a shell reports for a program stopped by a closed pipe


def _main(argv: list[str] | None, started: float) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.started = started
    if args.verb is None:   # a bare `python -m pipelines`: what there is to do
        parser.print_help()
        return 0
    from .progress import quieted
    from .tracking import tracked

    # --quiet and --track for this command only (main() may be called again)
    with quieted(bool(getattr(args, "quiet", False))), tracked(None):
        return _dispatch(args)


def _dispatch(args) -> int:
    from . import api

    rank = int(os.environ.get("RANK", "0") or 0) if distributed.launched() else 0
    if rank:  # torchrun: rank 0 speaks for the run (errors of the other ranks still reach stderr)
        sys.stdout = open(os.devnull, "w")
    try:
        if getattr(args, "deterministic", False) or os.environ.get("PIPELINES_DETERMINISTIC", "") not in ("", "0"):
            from .device import use_deterministic
            use_deterministic()
        if args.verb == "leaderboard":
            name = args.competition
            if name and name not in competition.names():  # a spec's name or path: its competition's name
                try:
                    name = competition.load(name).name
                except UserError:
                    if name.endswith((".yaml", ".yml")):
                        raise
            if args.public:
                if not name:
                    raise UserError(f"leaderboard --public needs a COMPETITION: "
                                    f"{hints.pipelines('leaderboard COMPETITION --public')}")
                from . import compare
                print("\n".join(compare.public_vs_cv(name, config=args.config)))
                return 0
            print(leaderboard.show(name, markdown=args.markdown, config=args.config))
            return 0
        comp = competition.load(args.competition)
        args.competition_given = args.competition   # export: a spec's path finds its file
        args.competition = comp.name  # a spec file's path names its competition from here on
        if getattr(args, "track", None):
            from . import tracking
            tracking.enable(args.track)  # before any training: a missing extra is one line, not a lost run
        if args.verb == "kaggle-scores":
            from . import kaggle
            kaggle.refresh(args.competition)
            return 0
        # the verbs of pipelines/api.py: one layer for the command line, the Makefile, sweeps and notebooks
        if args.verb == "prepare":
            api.prepare(comp.name, args.data, config=args.config, overrides=args.set, workers=args.workers,
                        quiet=args.quiet)
            return 0
        if args.verb == "train":
            api.train(comp.name, args.config, data=args.data, name=args.name, overrides=args.set, folds=args.folds,
                      device=args.device, restart=args.restart, quiet=args.quiet,
                      preset=getattr(args, "preset", None), time_limit=getattr(args, "time_limit", None),
                      started=args.started, track=getattr(args, "track", None))
            return 0
        if args.verb == "predict":
            api.predict(comp.name, args.run, args.test, args.out, device=args.device, quiet=args.quiet)
            return 0
        if args.verb == "export":
            api.export(args.competition_given, args.run, args.out, base=args.base, wheels=not args.no_wheels,
                       quiet=args.quiet)
            return 0
        if args.verb == "submit":
            api.submit(comp.name, args.run, out=args.out, kaggle=args.kaggle, wait=args.wait, quiet=args.quiet)
            return 0
        if args.verb == "blend":
            api.blend(comp.name, args.runs, method=args.method, name=args.name, restart=args.restart,
                      quiet=args.quiet, track=args.track)
            return 0
        if args.verb == "report":
            from . import runs
            args.run = runs.resolve_run(args.competition, args.run)  # `best`: the best CV's run
        if args.verb == "compare":
            from . import compare
            return compare.command(args)
        if args.verb == "report":
            from . import paths, report
            print(f"wrote {report.write(paths.find_run(args.competition, args.run))}")
            return 0
        if args.verb == "sweep":
            from . import sweep
            return sweep.command(args)
        handler = comp.verb(args.verb)
        if handler is None:
            offered = [c.name for c in competition.registered() if c.verb(args.verb) is not None]
            raise UserError(f"{args.competition} has no {args.verb!r} verb (its verbs: {', '.join(comp.verb_names)}); "
                            f"{args.verb} is offered by {', '.join(offered) or 'no competition'}")
        return int(handler(args) or 0)
    except UserError as exc:
        if not (rank and getattr(exc, "from_main", False)):  # rank 0 already said it
            print(f"error: {'' if not rank else f'[rank {rank}] '}{exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot write{where}: {exc.strerror or 'no space left on device'}; free some space and "
              f"rerun the same command (finished folds and epochs are kept)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        resumable = " (rerun the same command to resume)" if args.verb in ("train", "demo") else ""
        print(f"interrupted{resumable}", file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    sys.exit(main())
