"""The ``preimage`` command line, exercised through subprocesses as a user would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

TINY = ["-m", "stages=2", "-m", "blocks_per_stage=1", "-m", "hidden=8"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault(
        "PREIMAGE_DATA", str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    )
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def preimage(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "preimage", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        check=False,
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit code 2, exactly one line on stderr, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("preimage: error:")
    for needle in needles:
        assert needle in lines[0], lines[0]


def train_digits(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return preimage(
        "train",
        "--dataset",
        "digits",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--max-steps-per-epoch",
        "3",
        "--no-progress",
        *TINY,
        *extra,
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    proc = train_digits(out)
    assert proc.returncode == 0, proc.stderr
    assert "report:" in proc.stdout
    return out


@pytest.mark.parametrize(
    "args", [["--help"], ["train", "--help"], ["eval", "--help"], ["demo", "--help"]]
)
def test_help(args: list[str]) -> None:
    proc = preimage(*args)
    assert proc.returncode == 0
    assert "Usage:" in proc.stdout


def test_train_writes_the_run_directory(trained_run: Path) -> None:
    config = json.loads((trained_run / "config.json").read_text())
    assert config["config"]["dataset"] == "digits"
    assert config["config"]["model_options"]["hidden"] == 8
    assert config["argv"] and config["versions"]["torch"] == torch.__version__
    metrics = json.loads((trained_run / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "epochs_completed", "max_inverse_error"):
        assert key in metrics
    assert metrics["epochs_completed"] == 1
    assert metrics["max_inverse_error"] < 1e-4
    assert (trained_run / "checkpoints" / "last.safetensors").is_file()
    figures = {p.name for p in (trained_run / "figures").glob("*.png")}
    assert {"training_curves.png", "reconstructions.png", "metamers.png"} <= figures
    html = (trained_run / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3


def test_eval_prints_accuracy_and_inverse_error(trained_run: Path) -> None:
    proc = preimage("eval", str(trained_run))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert result["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert result["max_inverse_error"] < 1e-4


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "--model", "resnet-9000", "--dataset", "digits"], "unknown model"),
        (["train", "--dataset", "cifar"], "cifar"),
        (["train", "--dataset", "mnist", "--data-dir", "/nonexistent/preimage"], "mnist"),
        (["train", "--dataset", "digits", "-m", "readout=middle"], "readout"),
        (["train", "--dataset", "digits", "-m", "colour=blue"], "colour"),
        (["train", "--dataset", "digits", "-m", "hidden=0"], "hidden"),
        (["train", "--dataset", "digits", "--device", "tpu"], "tpu"),
        (["train", "--dataset", "digits", "--epochs", "abc"], "epochs"),
        (["train", "--dataset", "digits", "--resume"], "resume"),
        (["frobnicate"], "frobnicate"),
        (["eval", "/nonexistent/run"], "run directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    out_args = [] if args[0] != "train" else ["--out", str(tmp_path / "out")]
    assert_clean_error(preimage(*args, *out_args), needle)


def test_corrupted_and_foreign_checkpoints(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained_run, broken)
    ckpt = broken / "checkpoints" / "last.safetensors"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    assert_clean_error(preimage("eval", str(broken)), "checkpoint")

    save_file({"weight": torch.zeros(3)}, str(ckpt))
    assert_clean_error(preimage("eval", str(broken)), "checkpoint")

    # A checkpoint that does not fit the configured model (shape mismatch).
    shutil.copy(trained_run / "checkpoints" / "last.safetensors", ckpt)
    config = json.loads((broken / "config.json").read_text())
    config["config"]["model_options"]["hidden"] = 12
    config["config"]["model_config"]["hidden"] = 12
    (broken / "config.json").write_text(json.dumps(config))
    assert_clean_error(preimage("eval", str(broken)))
    assert ckpt.read_bytes() == (trained_run / "checkpoints" / "last.safetensors").read_bytes()


def test_existing_run_is_never_overwritten(trained_run: Path) -> None:
    ckpt = trained_run / "checkpoints" / "last.safetensors"
    before = ckpt.read_bytes()
    assert_clean_error(train_digits(trained_run), "--resume")
    assert ckpt.read_bytes() == before


def test_nan_loss_stops_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "nan"
    proc = preimage(
        "train",
        "--dataset",
        "digits",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--lr",
        "1e30",
        "--no-progress",
        *TINY,
    )
    assert_clean_error(proc, "nan")
    assert (out / "config.json").is_file()


def _params(run: Path) -> dict[str, torch.Tensor]:
    return {
        k: v
        for k, v in load_file(str(run / "checkpoints" / "last.safetensors")).items()
        if k.startswith("model.")
    }


def test_killed_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    args = ["--dataset", "digits", "--epochs", "3", "--no-progress", "--seed", "3", *TINY]
    straight = tmp_path / "straight"
    assert preimage("train", "--out", str(straight), *args).returncode == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "preimage", "train", "--out", str(killed), *args],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpt = killed / "checkpoints" / "last.safetensors"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"

    resumed = preimage("train", "--out", str(killed), "--resume", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 3
    a, b = _params(straight), _params(killed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torchrun_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(_free_port()),
            "-m",
            "preimage",
            "train",
            "--dataset",
            "digits",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--max-steps-per-epoch",
            "3",
            "--no-progress",
            "--device",
            "cpu",
            *TINY,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 1
    assert (out / "report.html").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.safetensors"]


def test_train_a_non_invertible_baseline(tmp_path: Path) -> None:
    out = tmp_path / "cnn"
    proc = preimage(
        "train",
        "--model",
        "cnn",
        "--dataset",
        "digits",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--max-steps-per-epoch",
        "2",
        "--no-progress",
        "-m",
        "width=8",
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert "max_inverse_error" not in metrics
    assert "data:image/png;base64," in (out / "report.html").read_text()
