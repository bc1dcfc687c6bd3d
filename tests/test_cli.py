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


# Every bad input a user can type: exit code 2, one line on stderr naming the problem, no
# traceback, and (for `train`) nothing left behind in --out. One row per case.
BAD_INPUT = [
    # (arguments, a word the one-line error must contain)
    (["train", "--model", "resnet-9000", "--dataset", "digits"], "unknown model"),
    (["train", "--model", "i-resnet-flow", "--dataset", "digits"], "iresnet-mnist-flow"),
    (["train", "--dataset", "cifar"], "cifar"),
    (
        ["train", "--dataset", "mnist", "--data-dir", "/nonexistent/preimage", "--no-download"],
        "--download",
    ),
    (["train", "--dataset", "digits", "-m", "readout=middle"], "readout"),
    (["train", "--dataset", "digits", "-m", "colour=blue"], "colour"),
    (["train", "--dataset", "digits", "-m", "hidden=0"], "hidden"),
    (["train", "--dataset", "digits", "-m", "hidden=abc"], "hidden takes an int"),
    (["train", "--dataset", "digits", "-m", "hidden=1.5"], "hidden takes an int"),
    (["train", "--dataset", "digits", "-m", "hidden=true"], "hidden takes an int"),
    (["train", "--dataset", "digits", "-m", "split=maybe"], "split takes true or false"),
    (["train", "--dataset", "digits", "-m", "in_shape=[3,8,8]"], "unknown option 'in_shape'"),
    (["train", "--dataset", "digits", "-m", "hidden"], "KEY=VALUE"),
    (["train", "--dataset", "digits", "--device", "tpu"], "tpu"),
    (["train", "--dataset", "digits", "--epochs", "abc"], "epochs"),
    (["train", "--dataset", "digits", "--resume"], "resume"),
    (["run", "logdet-estimator", "--budget", "smoke", "-o", "dim=abc"], "dim takes an int"),
    (["run", "logdet-estimator", "--budget", "smoke", "-o", "device=x"], "device"),
    (["run", "logdet-estimator", "--budget", "smoke", "-o", "colour=1"], "valid keys"),
    (["run", "logdet-estimator", "--budget", "smoke", "--seed", "1", "-o", "seed=2"], "disagree"),
    (["run", "no-such-study", "--budget", "smoke"], "unknown study"),
    (["studies", "no-such-study"], "unknown study"),
    (["frobnicate"], "frobnicate"),
    (["eval", "/nonexistent/run"], "run directory"),
]


@pytest.mark.parametrize(("args", "needle"), BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "out"
    out_args = ["--out", str(out)] if args[0] in ("train", "run") else []
    assert_clean_error(preimage(*args, *out_args), needle)
    # A refused run leaves no empty run directory (nor checkpoints/, figures/) behind.
    assert not out.exists()


def test_unknown_command_names_the_program_once() -> None:
    proc = preimage("frobnicate")
    assert_clean_error(proc, "'preimage --help'")
    assert "preimage preimage" not in proc.stderr


@pytest.mark.parametrize(
    ("out", "needle"),
    [
        ("", "empty"),
        ("/proc/preimage-run", "preimage-run"),
        (str(Path(__file__)) + "/sub", "not a folder"),
    ],
)
def test_unwritable_out_is_one_line(out: str, needle: str) -> None:
    assert_clean_error(
        train_digits(Path(out)) if out else preimage("train", "--dataset", "digits", "--out", ""),
        needle,
    )


def test_non_utf8_out_is_one_line_or_works(tmp_path: Path) -> None:
    out = os.fsencode(tmp_path) + b"/run-\xff"
    proc = subprocess.run(
        [
            sys.executable.encode(),
            b"-m",
            b"preimage",
            b"train",
            b"--dataset",
            b"digits",
            b"--out",
            out,
            b"--epochs",
            b"1",
            b"--max-steps-per-epoch",
            b"2",
            b"--no-progress",
            *[a.encode() for a in TINY],
        ],
        capture_output=True,
        timeout=240,
        env=_env(),
        check=False,
    )
    stderr = proc.stderr.decode(errors="replace")
    assert "Traceback" not in stderr
    assert proc.returncode in (0, 2), stderr
    if proc.returncode == 2:
        assert len([ln for ln in stderr.splitlines() if ln.strip()]) == 1


def test_help_lists_models_options_and_study_keys() -> None:
    proc = preimage("train", "--help")
    assert proc.returncode == 0
    for word in ("fi-revnet", "i-resnet", "cnn", "hidden", "readout"):
        assert word in proc.stdout
    proc = preimage("studies", "logdet-estimator", "--budget", "smoke")
    assert proc.returncode == 0, proc.stderr
    assert "dim" in proc.stdout and "int" in proc.stdout
    listing = preimage("studies")
    assert listing.returncode == 0
    assert "``" not in listing.stdout and ":math:" not in listing.stdout


def test_crafted_deeply_nested_checkpoint_is_refused(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    crafted = tmp_path / "crafted"
    shutil.copytree(trained_run, crafted)
    tensors = load_file(str(crafted / "checkpoints" / "last.safetensors"))
    deep = "[" * 100_000 + "]" * 100_000
    save_file(tensors, str(crafted / "checkpoints" / "last.safetensors"), metadata={"state": deep})
    assert_clean_error(preimage("eval", str(crafted)), "checkpoint")


def test_a_run_directory_belongs_to_one_kind_of_run(trained_run: Path, tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in trained_run.rglob("*") if p.is_file()}
    # A study refuses a train run's folder, and leaves every file as it was.
    proc = preimage("run", "logdet-estimator", "--budget", "smoke", "--out", str(trained_run))
    assert_clean_error(proc, "'train' run", "--overwrite")
    assert {p: p.read_bytes() for p in trained_run.rglob("*") if p.is_file()} == before

    study = tmp_path / "study"
    args = ["run", "logdet-estimator", "--budget", "smoke", "--no-progress", "--out", str(study)]
    assert preimage(*args).returncode == 0
    first = (study / "metrics.json").read_bytes()
    # train refuses a study's folder; a second run of the study (another seed) refuses it too.
    assert_clean_error(train_digits(study), "'run logdet-estimator' run")
    assert_clean_error(preimage(*args, "--seed", "5"), "--overwrite")
    assert (study / "metrics.json").read_bytes() == first
    # --overwrite replaces it: the new config holds the new seed.
    (study / "figures" / ".old.png.0123.tmp").write_bytes(b"stale")
    proc = preimage(*args, "--seed", "5", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((study / "config.json").read_text())["seed"] == 5
    assert not list(study.rglob("*.tmp"))


def test_demo_runs_twice_with_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    for _ in range(2):
        proc = preimage("demo", "--out", str(out), "--epochs", "1", "--no-progress", "--overwrite")
        assert proc.returncode == 0, proc.stderr
    assert "Display clamped" in (out / "report.html").read_text()


def test_run_prints_json_only_when_asked(tmp_path: Path) -> None:
    base = ["run", "logdet-estimator", "--budget", "smoke", "--no-progress"]
    plain = preimage(*base, "--out", str(tmp_path / "a"))
    assert plain.returncode == 0, plain.stderr
    assert "report:" in plain.stdout and not plain.stdout.lstrip().startswith("{")
    # stdout is not a terminal here: no blank lines.
    assert all(line.strip() for line in plain.stdout.splitlines())
    piped = preimage(*base, "--json", "--out", str(tmp_path / "b"))
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["dim"] == 8


def test_resume_refuses_conflicting_flags_and_keeps_provenance(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train_digits(out).returncode == 0
    original = json.loads((out / "config.json").read_text())
    proc = preimage("train", "--out", str(out), "--resume", "--lr", "0.1", "--seed", "3")
    assert_clean_error(proc, "--seed", "--lr")
    proc = preimage("train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    resumed = json.loads((out / "config.json").read_text())
    assert resumed["argv"] == original["argv"] and resumed["created"] == original["created"]
    assert resumed["history"][-1]["changes"]["epochs"] == 2
    assert "--resume" in resumed["history"][-1]["argv"]
    assert json.loads((out / "metrics.json").read_text())["epochs_completed"] == 2


def test_a_full_disk_while_writing_the_report_keeps_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    from preimage import cli
    from preimage.report import html

    def full(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "report.html")

    monkeypatch.setattr(html.Report, "write", full)
    out = tmp_path / "full"
    code = cli.main(
        [
            "train",
            "--dataset",
            "digits",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--max-steps-per-epoch",
            "2",
            "--no-progress",
            *TINY,
        ]
    )
    assert code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "No space left" in err[0]
    assert (out / "checkpoints" / "last.safetensors").is_file()


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
