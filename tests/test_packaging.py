"""What `pip install featspace` gives (torch alone: the heads, their math, PEDCC), what the extras add, and the
public names of every package."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

#: what `pip install featspace` does not install; the core must work with every one of them absent
NOT_CORE = ["lightning", "pytorch_lightning", "torchvision", "timm", "scipy", "sklearn", "matplotlib", "tensorboard",
            "tensorboardX", "yaml", "tqdm", "PIL", "numpy", "onnx", "onnxruntime", "wandb", "mlflow"]


def _run_without_extras(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter where importing any of NOT_CORE fails as it does when it is not installed."""
    prelude = f"import sys\nfor name in {NOT_CORE!r}:\n    sys.modules[name] = None\nsys.path.insert(0, {str(SRC)!r})\n"
    return subprocess.run([sys.executable, "-W", "ignore", "-c", prelude + code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_the_heads_functional_math_and_pedcc_need_torch_alone():
    done = _run_without_extras("""
import torch
import featspace
from featspace import functional, heads, pedcc

for name in heads.names():
    torch.manual_seed(0)
    head = heads.build(name, 6, 4)
    x = torch.randn(12, 6, requires_grad=True)
    out = head(x, torch.arange(12) % 4)
    out.loss.backward()
    assert torch.isfinite(out.loss) and x.grad is not None, name
    assert head.predict(x.detach()).shape == (12, 4), name
assert pedcc.generate(4, 6).shape == (4, 6)
assert functional.normalize_rows(torch.ones(2, 3)).shape == (2, 3)
loaded = sorted(m for m in sys.modules if m.startswith("featspace"))
assert not [m for m in loaded if m.split(".")[1:2] and m.split(".")[1] not in
            ("heads", "functional", "pedcc", "registry", "distributed")], loaded
print(len(heads.names()), "heads")
""")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("heads") and int(done.stdout.split()[0]) >= 20


def test_a_command_without_the_train_extra_says_so_in_one_line():
    commands = [["list"], ["train", "digits-demo"], ["predict", "runs/x", "image.png"],
                ["embed", "runs/x", "--split", "test"]]
    done = _run_without_extras(f"""
import contextlib, io
from featspace.cli import main
try:
    main(["--help"])
except SystemExit as end:  # argparse ends --help so
    assert end.code == 0
for command in {commands!r}:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(command)
    print(code, err.getvalue().strip().replace(chr(10), "|"))
""")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()[-len(commands):]
    for command, line in zip(commands, lines):
        assert line.startswith(f"2 featspace {command[0]}: error: this command needs featspace[train] ("), line
        assert line.endswith("is not installed): pip install 'featspace[train]'") and "|" not in line, line


def test_a_missing_module_that_is_no_extra_is_not_hidden():
    from featspace.cli import missing_extra

    assert missing_extra(ModuleNotFoundError("No module named 'wandb'", name="wandb")) == (
        "this command needs featspace[wandb] (wandb is not installed): pip install 'featspace[wandb]'")
    assert missing_extra(ModuleNotFoundError("No module named 'onnxruntime.x'", name="onnxruntime.x")).startswith(
        "this command needs featspace[export]")
    assert missing_extra(ModuleNotFoundError("No module named 'featspace.nothing'", name="featspace.nothing")) is None


def test_import_featspace_stays_light_and_load_run_is_the_trainers():
    done = subprocess.run([sys.executable, "-c", f"""
import sys
sys.path.insert(0, {str(SRC)!r})
import featspace
assert set(featspace.__all__) >= {{"load_run", "TrainedRun", "heads", "functional", "pedcc", "__version__"}}
assert not [m for m in sys.modules if m.startswith(("featspace.", "torch", "lightning"))], sorted(sys.modules)
"""], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    import featspace
    import featspace.train.inference as inference

    assert featspace.load_run is inference.load_run and featspace.TrainedRun is inference.TrainedRun
    assert featspace.heads.names() and featspace.pedcc.generate(3, 4).shape == (3, 4)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        featspace.nothing  # noqa: B018


PACKAGES = ["featspace", "featspace.heads", "featspace.functional", "featspace.data", "featspace.models",
            "featspace.metrics", "featspace.rundir", "featspace.train", "featspace.bench", "featspace.report",
            "featspace.commands", "featspace.config", "featspace.io", "featspace.pedcc", "featspace.registry",
            "featspace.suite", "featspace.cli"]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_exists(name):
    module = importlib.import_module(name)
    assert module.__all__, name
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ lists names it does not have: {missing}"
    assert len(set(module.__all__)) == len(module.__all__)


def test_every_package_has_an_all():
    packages = sorted(p.parent for p in (SRC / "featspace").rglob("__init__.py"))
    without = [str(p.relative_to(SRC)) for p in packages if "__all__" not in (p / "__init__.py").read_text()]
    assert not without, without


def test_pyproject_declares_torch_alone_and_the_extras():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [d.split(">")[0] for d in project["dependencies"]] == ["torch"]
    extras = project["optional-dependencies"]
    assert set(extras) >= {"train", "export", "wandb", "mlflow", "all", "dev"}
    names = {extra: {d.split(">")[0].split("=")[0].split("[")[0] for d in deps} for extra, deps in extras.items()}
    assert {"lightning", "torchvision", "timm", "scipy", "scikit-learn", "matplotlib", "tensorboard", "tqdm",
            "pyyaml", "numpy", "pillow"} <= names["train"]
    assert {"onnx", "onnxruntime", "onnxscript"} <= names["export"]
    assert extras["all"] == ["featspace[train,export,wandb,mlflow]"]
    assert (SRC / "featspace" / "py.typed").is_file()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["featspace"]
