"""The ``preimage`` command line: the only place that parses argv.

Every command writes a run directory (see :mod:`preimage.runs`) that belongs to one kind of run:
a folder holding another run is refused unless ``--resume`` continues it or ``--overwrite``
replaces it. Options given as ``KEY=VALUE`` (``-m`` for a model, ``-o`` for a study) are typed
against the fields of the config they set (:mod:`preimage.options`). Bad input, a file that
cannot be written or a failed run ends with one line on stderr and exit code 2; nothing already
written is removed.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from preimage.allocator import tune_allocator
from preimage.errors import ConfigError, PreimageError

__all__ = ["cli", "main"]

_PATH = click.Path(path_type=Path)


def _out_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    # click turns "" into Path("."), the current folder: refuse it before that happens.
    if value is None:
        return None
    if value == "":
        raise ConfigError("--out must not be an empty path")
    return Path(value)


_RESUME_FIXED = (
    "model",
    "dataset",
    "seed",
    "batch_size",
    "lr",
    "max_steps_per_epoch",
    "model_option",
)


def _device_option(f: Any) -> Any:
    return click.option(
        "--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."
    )(f)


def _data_dir_option(f: Any) -> Any:
    return click.option(
        "--data-dir",
        type=_PATH,
        default=None,
        help="Data root or dataset folder (default: $PREIMAGE_DATA or ~/.cache/preimage).",
    )(f)


def _progress_option(f: Any) -> Any:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show progress bars (default: when stderr is a terminal).",
    )(f)


def _overwrite_option(f: Any) -> Any:
    return click.option(
        "--overwrite", is_flag=True, help="Replace a run that --out already holds."
    )(f)


def _progress(flag: bool | None) -> bool:
    return sys.stderr.isatty() if flag is None else flag


def _echo(text: str) -> None:
    # Under torchrun every rank runs the command; only the main process speaks.
    from preimage.train.distributed import is_main_process

    if is_main_process():
        click.echo(text)


def _model_help() -> str:
    from preimage.models.registry import CLASSIFIERS, MODEL_CONFIGS
    from preimage.options import option_table

    lines = ["Models and their -m options (KEY type = default):"]
    for name in CLASSIFIERS:
        table = option_table(MODEL_CONFIGS[name]())
        lines.append(f"  {name}: " + ", ".join(f"{k} {t} = {v!r}" for k, t, v in table))
    return "\n".join(lines)


class _TrainCommand(click.Command):
    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        for line in _model_help().splitlines():
            formatter.write_text(line)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="preimage")
def cli() -> None:
    """Make visible, measure and reduce what neural-network classifiers ignore."""


@cli.command(cls=_TrainCommand)
@click.option("--out", type=str, required=True, callback=_out_dir, help="Run directory to write.")
@click.option(
    "--model",
    default="fi-revnet",
    show_default=True,
    help="cnn, fi-revnet or i-resnet (options listed below).",
)
@click.option("--dataset", default="mnist", show_default=True, help="mnist, digits or spheres.")
@click.option("--epochs", type=int, default=None, help="Epochs (default: the recipe's 100).")
@click.option("--resume", is_flag=True, help="Continue the run in --out (only --epochs changes).")
@_overwrite_option
@click.option("--seed", type=int, default=None, help="Random seed (default 0).")
@_data_dir_option
@_device_option
@click.option("--batch-size", type=int, default=None, help="Batch size (default 64).")
@click.option("--lr", type=float, default=None, help="Learning rate (default 1e-3).")
@click.option("--max-steps-per-epoch", type=int, default=None, help="Truncate every epoch.")
@click.option(
    "--model-option",
    "-m",
    "model_option",
    multiple=True,
    metavar="KEY=VALUE",
    help="Model option, e.g. -m hidden=128 -m readout=dct (repeatable; listed below).",
)
@click.option(
    "--download/--no-download",
    default=True,
    show_default=True,
    help="Download missing MNIST files (checksummed) into the data root.",
)
@_progress_option
def train(
    out: Path,
    model: str,
    dataset: str,
    epochs: int | None,
    resume: bool,
    overwrite: bool,
    seed: int | None,
    data_dir: Path | None,
    device: str,
    batch_size: int | None,
    lr: float | None,
    max_steps_per_epoch: int | None,
    model_option: tuple[str, ...],
    download: bool,
    progress: bool | None,
) -> None:
    """Train a classifier; writes config.json, metrics.json, checkpoints/, figures/, report.html."""
    from preimage.models.registry import CLASSIFIERS, MODEL_CONFIGS
    from preimage.options import apply_overrides, parse_assignments
    from preimage.train import TrainConfig
    from preimage.workflow import DATASET_PRESETS, train_run

    ctx = click.get_current_context()
    if resume:
        given = [
            "--" + name.replace("_", "-")
            for name in _RESUME_FIXED
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise ConfigError(
                f"--resume continues the stored run; drop {', '.join(given)} "
                "(only --epochs and --device may be given)"
            )
        if overwrite:
            raise ConfigError("--resume and --overwrite exclude each other")
        metrics = train_run(
            out,
            resume=True,
            argv=sys.argv,
            progress=_progress(progress),
            data_dir=data_dir,
            resume_overrides={"epochs": epochs, "device": device},
        )
        _summary(out, metrics)
        return
    if model == "i-resnet-flow":
        raise ConfigError(
            "i-resnet-flow is a density model; train it with its likelihood through "
            "`preimage run iresnet-mnist-flow`"
        )
    if model not in MODEL_CONFIGS:
        raise ConfigError(f"unknown model {model!r}; known models: {', '.join(CLASSIFIERS)}")
    options = parse_assignments(model_option, flag="--model-option")
    preset = DATASET_PRESETS.get(dataset, {}).get("model", {}) if model == "fi-revnet" else {}
    typed = apply_overrides(MODEL_CONFIGS[model](**preset), options)
    model_options = {**preset, **{k: getattr(typed, k) for k in options}}
    if dataset == "mnist" and download:
        _fetch_mnist_if_missing(data_dir)
    train_preset = DATASET_PRESETS.get(dataset, {}).get("train", {})
    overrides = {
        "epochs": epochs,
        "seed": seed,
        "device": device,
        "batch_size": batch_size,
        "lr": lr,
        "max_steps_per_epoch": max_steps_per_epoch,
    }
    config = replace(
        TrainConfig(**train_preset), **{k: v for k, v in overrides.items() if v is not None}
    )
    metrics = train_run(
        out,
        model=model,
        dataset=dataset,
        model_options=model_options,
        train=config,
        data_dir=data_dir,
        argv=sys.argv,
        progress=_progress(progress),
        download=download,
        overwrite=overwrite,
    )
    _summary(out, metrics)


def _fetch_mnist_if_missing(data_dir: Path | None) -> None:
    """Download MNIST when a file is missing, and say where it went (the loader verifies it)."""
    from preimage.data.mnist import MNIST_FILES, download_mnist, mnist_dir

    folder = mnist_dir(data_dir)
    names = [name for pair in MNIST_FILES.values() for name in pair]
    if all((folder / n).is_file() or (folder / n.removesuffix(".gz")).is_file() for n in names):
        return
    click.echo(f"MNIST is not in {folder}; downloading it (checksummed) ...", err=True)
    download_mnist(data_dir)
    click.echo(f"MNIST downloaded to {folder.resolve()}", err=True)


@cli.command("eval")
@click.argument("run_dir", type=_PATH)
@_data_dir_option
@_device_option
def evaluate(run_dir: Path, data_dir: Path | None, device: str) -> None:
    """Test accuracy and max inverse error of RUN_DIR's checkpoint, printed as JSON."""
    from preimage.workflow import evaluate_run

    _echo(json.dumps(evaluate_run(run_dir, data_dir=data_dir, device=device), indent=2))


@cli.command()
@click.option("--out", type=str, default="runs/demo", show_default=True, callback=_out_dir)
@click.option("--epochs", type=int, default=None, help="Epochs (default 20).")
@click.option("--seed", type=int, default=0, show_default=True)
@_overwrite_option
@_device_option
@_progress_option
def demo(
    out: Path, epochs: int | None, seed: int, overwrite: bool, device: str, progress: bool | None
) -> None:
    """Train a small fi-RevNet on the embedded 8x8 digits; report with metamers."""
    from preimage.studies.demo import DemoConfig, run

    config = DemoConfig(seed=seed, device=device, progress=_progress(progress))
    if epochs is not None:
        config = replace(config, epochs=epochs)
    _summary(out, run(config, out, argv=sys.argv, overwrite=overwrite))


@cli.command()
@click.argument("dataset", type=click.Choice(["mnist"]))
@_data_dir_option
def data(dataset: str, data_dir: Path | None) -> None:
    """Download DATASET (checksummed) into the data root, or verify a local copy."""
    from preimage.data import download_mnist

    folder = download_mnist(data_dir)
    _echo(f"{dataset}: verified files in {Path(folder).resolve()}")


@cli.command("run")
@click.argument("study")
@click.option("--out", type=str, required=True, callback=_out_dir, help="Run directory to write.")
@click.option(
    "--budget",
    type=click.Choice(["smoke", "cpu", "paper"]),
    default="cpu",
    show_default=True,
    help="smoke: seconds (tests); cpu: <= 45 min on 2 cores; paper: the paper's settings.",
)
@click.option("--seed", type=int, default=None, help="Random seed (default 0).")
@_data_dir_option
@click.option("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps.")
@click.option(
    "--option",
    "-o",
    "option",
    multiple=True,
    metavar="KEY=VALUE",
    help="Study option overriding the budget's value, dotted for nested configs "
    "(-o train.epochs=3); `preimage studies STUDY` lists them (repeatable).",
)
@_overwrite_option
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON on stdout.")
@_progress_option
def run_study(
    study: str,
    out: Path,
    budget: str,
    seed: int | None,
    data_dir: Path | None,
    device: str | None,
    option: tuple[str, ...],
    overwrite: bool,
    as_json: bool,
    progress: bool | None,
) -> None:
    """Run STUDY, an experiment of the papers; see `preimage studies` for the list."""
    from preimage.options import parse_assignments
    from preimage.runs import RunDir
    from preimage.studies import get_study

    module = get_study(study)
    overrides: dict[str, Any] = dict(parse_assignments(option, flag="--option"))
    flags = {"seed": seed, "device": device, "overwrite": overwrite or None}
    if data_dir is not None:
        flags["data_dir"] = str(data_dir)
    for key, value in flags.items():
        if value is None:
            continue
        if key in overrides and str(overrides[key]) != str(value):
            raise ConfigError(f"--{key.replace('_', '-')} and -o {key} disagree; give one")
        overrides[key] = value
    if progress is not None or "progress" not in overrides:
        overrides["progress"] = _progress(progress)
    config = module.Config.for_budget(budget, **overrides)
    # Refuse a folder that holds another run before any data is loaded or model trained.
    RunDir.open(out, kind=f"run {study}", overwrite=config.overwrite)
    if as_json:
        # stdout carries the JSON alone, so that it can be piped; the summary goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            metrics = module.run(config, out, argv=sys.argv)
        _echo(json.dumps(_printable(metrics), indent=2))
    else:
        module.run(config, out, argv=sys.argv)


@cli.command("studies")
@click.argument("study", required=False)
@click.option("--budget", type=click.Choice(["smoke", "cpu", "paper"]), default="cpu")
def list_studies(study: str | None, budget: str) -> None:
    """List the studies `preimage run` knows, or STUDY's options with their defaults."""
    from preimage.studies import STUDIES, get_study

    if study is None:
        for name in sorted(STUDIES):
            _echo(f"{name:28s} {_plain_text(_first_line(get_study(name).__doc__))}")
        return
    module = get_study(study)
    config = module.Config.for_budget(budget)
    _echo(f"{study}: {_plain_text(_first_line(module.__doc__))}")
    _echo(f"options at --budget {budget} (set with -o KEY=VALUE):")
    for key, kind, value in config.options():
        _echo(f"  {key:32s} {kind:24s} {value!r}")


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else ""


def _plain_text(text: str) -> str:
    """A docstring line without reST markup: ``x`` -> x, :role:`~a.b.C` -> C, :math:`a` -> a."""
    text = re.sub(r":[a-z]+:`~?(?:[\w.]+\.)?([^`]+)`", r"\1", text)
    text = text.replace("``", "")
    return re.sub(r"`([^`]*)`", r"\1", text)


def _printable(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool, type(None)))}


def _summary(out: Path, metrics: dict[str, Any]) -> None:
    parts = [f"epochs {metrics.get('epochs_completed')}"]
    if metrics.get("test_accuracy") is not None:
        parts.append(f"test accuracy {100 * metrics['test_accuracy']:.2f}%")
    if metrics.get("max_inverse_error") is not None:
        parts.append(f"max inverse error {metrics['max_inverse_error']:.2e}")
    _echo(", ".join(parts))
    _echo(f"report: {(Path(out) / 'report.html').resolve()}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 success, 2 bad input or a failed run."""
    args = list(sys.argv[1:] if argv is None else argv)
    # The command line owns the process, so it (not the library) tunes the allocator.
    tune_allocator()
    try:
        cli.main(args=args, prog_name="preimage", standalone_mode=False)
    except click.exceptions.UsageError as err:
        where = err.ctx.command_path if err.ctx else "preimage"
        click.echo(
            f"preimage: error: {_one_line(err.format_message())} (see '{where} --help')", err=True
        )
        return 2
    except click.exceptions.Abort:
        click.echo("preimage: aborted", err=True)
        return 130
    except click.exceptions.Exit as err:
        return int(err.exit_code)
    except PreimageError as err:
        click.echo(f"preimage: error: {_one_line(str(err)) or type(err).__name__}", err=True)
        return 2
    except OSError as err:
        # A read-only or full disk, a path under /proc: input the user can fix, not a bug.
        where = f"{err.filename}: " if err.filename else ""
        click.echo(f"preimage: error: {where}{err.strerror or err}", err=True)
        return 2
    except UnicodeError as err:
        click.echo(f"preimage: error: a path or text is not valid UTF-8 ({err.reason})", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("preimage: interrupted; completed epochs are checkpointed", err=True)
        return 130
    finally:
        _close_process_group()
    return 0


def _close_process_group() -> None:
    """Tear down a torchrun process group the trainer opened, so torch exits cleanly."""
    if "torch" in sys.modules:
        from preimage.train.distributed import cleanup

        cleanup()


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
