"""``ncp-search sweep`` on the Optuna backend (or Ray Tune's, ``--backend ray``) under
``ncp`` (ASHA on predicted finals, ``NCPPruner()``'s rule) and ``ncp_pause``
(successive halving that pauses, the sweeps' default), same config and seed.

Runs ``configs/pause.yaml`` three times in fresh processes: with its pruner replaced by
``{name: ncp}`` (reduction_factor 3, its default), as it is (``ncp_pause``, paused models
kept in memory), and as it is with ``NCP_SEARCH_PAUSED_MODELS_MB=0`` (every resume from
its checkpoint), after a one-trial warm-up sweep that
fills the model-zoo cache, and prints side by side: epochs trained (each epoch once; a
paused-then-resumed configuration counts once), the best final val_accuracy, the wall
seconds of each ``ncp-search sweep`` process, the Optuna trials started (a resume
is a trial of its own), the trial time (each trial's own wall time, summed) and the
seconds ``ncp_pause`` spent saving and loading checkpoints, with their share of the
trial time. The load average is printed too: on a busy machine the
seconds grow, the epochs and accuracies do not.

    python benchmarks/sweep_pausing.py                      # configs/pause.yaml
    python benchmarks/sweep_pausing.py --config my.yaml --keep runs/bench
    python benchmarks/sweep_pausing.py --trials 40 --epochs 8 --rows nop,ncp,ncp_pause
    python benchmarks/sweep_pausing.py --config configs/fashion_hpo.yaml --trials 40 \
        --epochs 8 --rows nop,ncp,ncp_pause     # longer epochs (Fashion-MNIST)
    python benchmarks/sweep_pausing.py --config configs/fashion_hpo.yaml --trials 40 \
        --epochs 8 --n-train 30000 --rows nop,ncp,ncp_pause   # 7.5x the images per epoch
    ... --sampler random    # every row samples the same configurations
    python benchmarks/sweep_pausing.py --backend ray --trials 24 --epochs 8 --workers 2

On Ray the rows are schedulers (``nop`` is ``fifo``; ``ncp_pause`` takes the config's
``min_resource`` as its ``grace_period``), every row samples the same configurations
(Tune's seeded random search), a trial that pauses and resumes is one Tune trial (so
``starts`` counts trials and resumes), and Tune saves the checkpoints inside its report,
so no checkpoint seconds are recorded; ``--workers`` is the concurrent trials, and a
pausing sweep runs as many at once as its local Ray's CPUs allow (at least 2).

With TPE (a config's usual sampler) the rows train different configurations after its 5
random start-up trials (TPE proposes from the results so far, which each pruner shapes),
and an epoch's cost depends on the configuration (its batch size above all). So the
table also shows the epochs' own seconds (each epoch's wall time, summed): trial
seconds over epoch seconds is what starts, resumes and checkpoints add; epoch seconds
over epochs is which epochs were trained.

A config whose pruner is not ``ncp_pause`` runs its ``ncp_pause`` row with that pruner's
defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
LIVE_MB_ENV = "NCP_SEARCH_PAUSED_MODELS_MB"  # ncp_search.app.sweep.trial


def sweep(config: dict[str, Any], folder: Path, name: str,
          env_extra: dict[str, str] | None = None,
          workers: int = 1, backend: str = "optuna") -> tuple[dict[str, Any], float, float]:
    """Run one sweep of ``config`` in a fresh process; its summary, wall seconds and CPU
    seconds (user + system of the sweep's process and its workers)."""
    import resource

    path = folder / f"{name}.yaml"
    # the keys in the config's order: the order of search_space's keys is part of the
    # sweep (it draws the configurations), and safe_dump would sort them
    path.write_text(yaml.safe_dump({**config, "name": name, "output": str(folder / name)},
                                   sort_keys=False), encoding="utf-8")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env_extra or {})}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ncp_search.app.cli", "sweep", str(path),
                    "--workers", str(workers), "--backend", backend], env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads((folder / name / "summary.json").read_text()), wall, cpu


@dataclass
class Row:
    """One sweep of the table: its summary, wall and CPU seconds, and what its study
    recorded (:func:`study_facts`)."""

    name: str
    summary: dict[str, Any]
    wall: float
    cpu: float
    checkpoint_s: float  # saving and loading checkpoints
    starts: int  # Optuna trials started (a resume is one)
    epoch_s: float  # the epochs' own seconds, summed
    from_memory: int  # resumes from the model its worker kept
    from_checkpoint: int  # resumes that built the model again and loaded its checkpoint
    steady: dict[str, list[float]]  # configuration (its params) -> its steady epochs' seconds


def config_key(params: dict[str, Any]) -> str:
    """One configuration's key across rows (its sampled parameters)."""
    return json.dumps(params, sort_keys=True, default=str)


def speed(row: Row, nop: Row) -> tuple[float, int]:
    """How much slower ``row``'s epochs ran than ``nop``'s on the same configurations:
    the median over the configurations both trained past their first epoch of the
    ratio of their median steady epoch seconds (1.0: the same speed), and how many
    configurations it rests on (NaN, 0 when none). With a random sampler every row
    trains the same configurations, so this is the machine's speed during the row
    against during ``nop`` (another load, another run), not which epochs were trained."""
    import statistics

    ratios = [statistics.median(row.steady[k]) / statistics.median(nop.steady[k])
              for k in row.steady.keys() & nop.steady.keys()
              if row.steady[k] and nop.steady[k]]
    return (statistics.median(ratios), len(ratios)) if ratios else (float("nan"), 0)


def ray_facts(output: Path) -> dict[str, Any]:
    """What a Ray sweep's trial records hold (``trials.jsonl``): as :func:`study_facts`,
    with the trials and their resumes as ``starts`` and no checkpoint seconds (Tune
    saves a checkpoint inside its report)."""
    records = [json.loads(line) for line in
               (output / "trials.jsonl").read_text(encoding="utf-8").splitlines() if line]
    resumed = [source for r in records for source in r.get("resumed_from") or ()]
    steady: dict[str, list[float]] = {}
    for r in records:
        skip = {0, *(r.get("resumed_at") or ())}  # the first epoch and each resume's first
        steady.setdefault(config_key(r.get("params") or {}), []).extend(
            float(x) for i, x in enumerate(r.get("epoch_seconds") or ())
            if i not in skip and x is not None)
    return {
        "steady": steady,
        "checkpoint_s": float("nan"),
        "starts": len(records) + len(resumed),
        "epoch_s": sum(float(x) for r in records for x in r.get("epoch_seconds") or ()
                       if x is not None),
        "from_memory": resumed.count("memory"),
        "from_checkpoint": resumed.count("checkpoint"),
    }


def study_facts(output: Path, study_name: str) -> dict[str, Any]:
    """What the sweep's study recorded: seconds its trials spent saving and loading
    checkpoints, how many Optuna trials it started (a resume is a trial of its own),
    its epochs' own seconds (each epoch's wall time as its trial recorded it, summed),
    and how its resumes began (from memory, from a checkpoint)."""
    import optuna

    from ncp_search.app.sweep.optuna_backend import (
        CHECKPOINT_SECONDS_ATTR,
        EPOCH_SECONDS_ATTR,
        RESUMED_FROM_ATTR,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name,
                              storage=f"sqlite:///{output / 'study.db'}")
    resumed = [t.user_attrs.get(RESUMED_FROM_ATTR) for t in study.trials]
    steady: dict[str, list[float]] = {}
    for t in study.trials:  # a resume is a trial of its own: its first epoch is left out too
        steady.setdefault(config_key(t.params), []).extend(
            float(x) for x in (t.user_attrs.get(EPOCH_SECONDS_ATTR) or ())[1:])
    return {
        "steady": steady,
        "checkpoint_s": sum(float(t.user_attrs.get(CHECKPOINT_SECONDS_ATTR) or 0.0)
                            for t in study.trials),
        "starts": len(study.trials),
        "epoch_s": sum(float(x) for t in study.trials
                       for x in (t.user_attrs.get(EPOCH_SECONDS_ATTR) or ())),
        "from_memory": resumed.count("memory"),
        "from_checkpoint": resumed.count("checkpoint"),
    }


ROWS = {  # name: (pruner, extra environment)
    "ncp": ({"name": "ncp"}, {}),
    "ncp_pause": (None, {}),  # the config's own pruner if it is ncp_pause, else its default
    "ncp_pause_ck": (None, {LIVE_MB_ENV: "0"}),
    "nop": ({"name": "nop"}, {}),
}


def main(argv: list[str] | None = None) -> int:
    from ncp_search.app.sweep.config import SAMPLERS

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "pause.yaml"))
    parser.add_argument("--keep", default=None, help="keep the sweeps in this folder")
    parser.add_argument("--trials", type=int, default=None, help="override budget.trials")
    parser.add_argument("--epochs", type=int, default=None, help="override budget.epochs")
    parser.add_argument("--n-train", type=int, default=None,
                        help="override data.n_train (longer epochs, the same trial start)")
    parser.add_argument("--workers", type=int, default=1, help="--workers of every sweep")
    parser.add_argument("--backend", choices=("optuna", "ray"), default="optuna")
    parser.add_argument("--seed", type=int, default=None, help="override the config's seed")
    parser.add_argument("--sampler", choices=SAMPLERS, default=None,
                        help="override optuna.sampler (random: every row samples the same "
                        "configurations)")
    parser.add_argument("--rows", default="ncp,ncp_pause,ncp_pause_ck",
                        help=f"comma-separated, of {', '.join(ROWS)}; with nop the shares "
                        "of no pruning's epochs, trial seconds and CPU seconds are printed")
    args = parser.parse_args(argv)
    base = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    base.pop("output", None)
    budget = dict(base["budget"])
    budget.update({k: v for k, v in (("trials", args.trials), ("epochs", args.epochs))
                   if v is not None})
    base["budget"] = budget
    if args.n_train is not None:
        base["data"] = {**base["data"], "n_train": args.n_train}
    if args.seed is not None:
        base["seed"] = args.seed
    if args.sampler is not None:
        base["optuna"] = {**(base.get("optuna") or {}), "sampler": args.sampler}
    names = [n.strip() for n in args.rows.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    own = base.pop("pruner", None) or {}
    base.pop("scheduler", None)
    pause = own if own.get("name") == "ncp_pause" else {"name": "ncp_pause"}
    base["backend"] = args.backend
    key = "scheduler" if args.backend == "ray" else "pruner"
    if args.backend == "ray":
        pause = {"name": "ncp_pause", **{k: v for k, v in pause.items() if k == "predictor"},
                 **({"grace_period": pause["min_resource"]} if "min_resource" in pause
                    else {})}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.keep or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        load = os.getloadavg()
        sweep({**base, "budget": {"trials": 1, "epochs": 1}}, folder, "warmup")
        rows = []
        for name in names:
            choice, env = ROWS[name]
            if args.backend == "ray" and choice == {"name": "nop"}:
                choice = {"name": "fifo"}
            summary, wall, cpu = sweep({**base, key: choice or pause}, folder,
                                       name, env, args.workers, args.backend)
            facts = (ray_facts(folder / name) if args.backend == "ray"
                     else study_facts(folder / name, name))
            rows.append(Row(name, summary, wall, cpu, **facts))
        after = os.getloadavg()
    sampler = ((base.get("optuna") or {}).get("sampler", "tpe") if args.backend == "optuna"
               else "Tune's random search")
    print(f"{Path(args.config).name}: {budget['trials']} trials x {budget['epochs']} epochs, "
          f"{base['data'].get('n_train')} training images, "
          f"seed {base.get('seed', 0)}, sampler {sampler}, "
          f"backend {args.backend}, {args.workers} worker(s); load "
          f"average {load[0]:.1f} before, {after[0]:.1f} after, on {os.cpu_count()} CPUs")
    print(f"{'pruner':<12} {'epochs':>6} {'best final':>10} {'wall s':>7} {'CPU s':>7} "
          f"{'starts':>6} {'trial s':>8} {'checkpoint s':>12} {'share':>6} {'epoch s':>8} "
          f"{'resumed mem/ckpt':>16}")
    for row in rows:
        best = row.summary["best"]["final"] if row.summary["best"] else float("nan")
        used = row.summary.get("seconds_used") or float("nan")
        resumed = f"{row.from_memory}/{row.from_checkpoint}"
        print(f"{row.name:<12} {row.summary['epochs_used']:>6} {best:>10.4f} {row.wall:>7.1f} "
              f"{row.cpu:>7.1f} {row.starts:>6} {used:>8.1f} {row.checkpoint_s:>12.2f} "
              f"{100 * row.checkpoint_s / used:>5.1f}% {row.epoch_s:>8.1f} {resumed:>16}")
    print(f"epochs: trained, each once (of {budget['trials'] * budget['epochs']} without "
          "pruning); wall s: the ncp-search sweep process; CPU s: user + system seconds of "
          "that process and its workers; starts: trials started (Optuna: a "
          "resume is a trial; Ray: its trials and their resumes); ncp_pause keeps "
          "paused models in memory, ncp_pause_ck keeps none "
          f"({LIVE_MB_ENV}=0: each resume loads the source model, builds, loads its "
          "checkpoint and traces its first epoch again); "
          "trial s: each trial's own wall time, summed; checkpoint s: saving and loading "
          "checkpoints (share: of the trial time); epoch s: each epoch's own wall time, "
          "summed (trial s less starts, resumes and checkpoints); resumed mem/ckpt: resumes "
          "that trained on the model their worker kept in memory / that built it again and "
          "loaded its checkpoint")
    nop = next((row for row in rows if row.name == "nop"), None)
    if nop is not None:
        base_epochs = nop.summary["epochs_used"]
        base_trial = nop.summary.get("seconds_used") or float("nan")
        print(f"\nshares of no pruning (nop): {'epochs':>7} {'trial s':>8} {'CPU s':>7} "
              f"{'trial s / epochs':>16} {'epoch s':>8} {'epoch s / epochs':>16}")
        for row in rows:
            epochs = row.summary["epochs_used"] / base_epochs
            trial = (row.summary.get("seconds_used") or float("nan")) / base_trial
            own = row.epoch_s / nop.epoch_s if nop.epoch_s else float("nan")
            print(f"{row.name:<27} {epochs:>7.3f} {trial:>8.3f} {row.cpu / nop.cpu:>7.3f} "
                  f"{trial / epochs:>16.2f} {own:>8.3f} {own / epochs:>16.2f}")
        print("trial s / epochs: the seconds share over the epochs share (1.00: every epoch "
              "costs what it costs without pruning; checkpoints, resumes and each trial's "
              "start-up raise it); epoch s / epochs: the same for the epochs' own seconds "
              "(above 1.00: the epochs trained cost more than the average epoch of no "
              "pruning, e.g. configurations with smaller batches)")
        print(f"\nthe machine's speed, each row against nop: {'speed':>7} {'configs':>7} "
              f"{'trial s share at nop speed':>26} {'over epochs':>11}")
        for row in rows:
            factor, shared = speed(row, nop)
            epochs = row.summary["epochs_used"] / base_epochs
            trial = (row.summary.get("seconds_used") or float("nan")) / base_trial
            print(f"{row.name:<42} {factor:>7.3f} {shared:>7} {trial / factor:>26.3f} "
                  f"{trial / factor / epochs:>11.2f}")
        print("speed: the median, over the configurations both rows trained past their "
              "first epoch, of their steady epoch's seconds here over in nop (the same "
              "configuration, so what differs is the machine's load during the row; "
              "meaningful with a sampler that gives every row the same configurations: "
              "random); trial s share at nop speed: the trial s share divided by it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
