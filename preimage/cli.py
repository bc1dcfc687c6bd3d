"""The ``preimage`` command line: the only place that parses argv.

Every command writes a run directory (see :mod:`preimage.workflow`). Bad input ends with one line
on stderr and exit code 2; nothing already written is removed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from preimage.errors import ConfigError, PreimageError

__all__ = ["cli", "main"]

_PATH = click.Path(path_type=Path)


def _parse_options(items: Sequence[str], *, flag: str = "--model-option") -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} takes KEY=VALUE, got {item!r}")
        try:
            options[key.replace("-", "_")] = json.loads(raw)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = raw
    return options


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="preimage")
def cli() -> None:
    """Make visible, measure and reduce what neural-network classifiers ignore."""


@cli.command()
@click.option("--out", type=_PATH, required=True, help="Run directory to write.")
@click.option("--model", default="fi-revnet", show_default=True, help="Model name.")
@click.option("--dataset", default="mnist", show_default=True, help="mnist, digits or spheres.")
@click.option("--epochs", type=int, default=None, help="Epochs (default: the recipe's 100).")
@click.option("--resume", is_flag=True, help="Continue the run in --out after its last epoch.")
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
    help="Model option, e.g. -m hidden=128 -m readout=dct (repeatable).",
)
@click.option("--download", is_flag=True, help="Download missing MNIST files (checksummed).")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
def train(
    out: Path,
    model: str,
    dataset: str,
    epochs: int | None,
    resume: bool,
    seed: int | None,
    data_dir: Path | None,
    device: str,
    batch_size: int | None,
    lr: float | None,
    max_steps_per_epoch: int | None,
    model_option: tuple[str, ...],
    download: bool,
    progress: bool,
) -> None:
    """Train a model; writes config.json, metrics.json, checkpoints/, figures/, report.html."""
    from preimage.train import TrainConfig
    from preimage.workflow import DATASET_PRESETS, train_run

    preset = DATASET_PRESETS.get(dataset, {}).get("train", {})
    overrides = {
        "epochs": epochs,
        "seed": seed,
        "device": device,
        "batch_size": batch_size,
        "lr": lr,
        "max_steps_per_epoch": max_steps_per_epoch,
    }
    config = replace(TrainConfig(**preset), **{k: v for k, v in overrides.items() if v is not None})
    if resume:
        metrics = train_run(
            out,
            resume=True,
            argv=sys.argv,
            progress=progress,
            data_dir=data_dir,
            resume_overrides={"epochs": epochs, "device": device},
        )
        _summary(out, metrics)
        return
    metrics = train_run(
        out,
        model=model,
        dataset=dataset,
        model_options=_parse_options(model_option),
        train=config,
        data_dir=data_dir,
        argv=sys.argv,
        progress=progress,
        download=download,
    )
    _summary(out, metrics)


@cli.command("eval")
@click.argument("run_dir", type=_PATH)
@_data_dir_option
@_device_option
def evaluate(run_dir: Path, data_dir: Path | None, device: str) -> None:
    """Test accuracy and max inverse error of RUN_DIR's checkpoint, printed as JSON."""
    from preimage.workflow import evaluate_run

    click.echo(json.dumps(evaluate_run(run_dir, data_dir=data_dir, device=device), indent=2))


@cli.command()
@click.option("--out", type=_PATH, default=Path("runs/demo"), show_default=True)
@click.option("--epochs", type=int, default=None, help="Epochs (default 20).")
@click.option("--seed", type=int, default=0, show_default=True)
@_device_option
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
def demo(out: Path, epochs: int | None, seed: int, device: str, progress: bool) -> None:
    """Train a small fi-RevNet on the embedded 8x8 digits; report with metamers."""
    from preimage.studies.demo import DemoConfig, run

    config = DemoConfig(seed=seed, device=device, progress=progress)
    if epochs is not None:
        config = replace(config, epochs=epochs)
    _summary(out, run(config, out, argv=sys.argv))


@cli.command("run")
@click.argument("study")
@click.option("--out", type=_PATH, required=True, help="Run directory to write.")
@click.option(
    "--budget",
    type=click.Choice(["smoke", "cpu", "paper"]),
    default="cpu",
    show_default=True,
    help="smoke: seconds (tests); cpu: <= 45 min on 2 cores; paper: the paper's settings.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@_data_dir_option
@_device_option
@click.option(
    "--option",
    "-o",
    "option",
    multiple=True,
    metavar="KEY=VALUE",
    help="Study option overriding the budget's value (repeatable).",
)
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
def run_study(
    study: str,
    out: Path,
    budget: str,
    seed: int,
    data_dir: Path | None,
    device: str,
    option: tuple[str, ...],
    progress: bool,
) -> None:
    """Run STUDY, an experiment of the papers; see `preimage studies` for the list."""
    from preimage.studies import get_study

    module = get_study(study)
    overrides = _parse_options(option, flag="--option")
    config = module.Config.for_budget(
        budget,
        seed=seed,
        device=device,
        progress=progress,
        data_dir=None if data_dir is None else str(data_dir),
        **overrides,
    )
    metrics = module.run(config, out, argv=sys.argv)
    click.echo(json.dumps(_printable(metrics), indent=2))
    click.echo(f"report: {(Path(out) / 'report.html').resolve()}")


@cli.command("studies")
def list_studies() -> None:
    """List the studies `preimage run` knows."""
    from preimage.studies import STUDIES, get_study

    for name in sorted(STUDIES):
        doc = (get_study(name).__doc__ or "").strip().splitlines()
        click.echo(f"{name:28s} {doc[0] if doc else ''}")


def _printable(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool, type(None)))}


def _summary(out: Path, metrics: dict[str, Any]) -> None:
    parts = [f"epochs {metrics.get('epochs_completed')}"]
    if metrics.get("test_accuracy") is not None:
        parts.append(f"test accuracy {100 * metrics['test_accuracy']:.2f}%")
    if metrics.get("max_inverse_error") is not None:
        parts.append(f"max inverse error {metrics['max_inverse_error']:.2e}")
    click.echo(", ".join(parts))
    click.echo(f"report: {(Path(out) / 'report.html').resolve()}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 success, 2 bad input or a failed run."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=args, prog_name="preimage", standalone_mode=False)
    except click.exceptions.UsageError as err:
        where = f"preimage {err.ctx.command_path.split(' ', 1)[-1]}" if err.ctx else "preimage"
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
