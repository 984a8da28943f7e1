"""Shared pytest fixtures."""

from __future__ import annotations

import logging
import os
import resource
import time
from pathlib import Path

import numpy as np
import pytest

from translearn.data.build import RawDomain, build_cross_domain
from translearn.data.schema import CrossDomainData


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs one worker per core), each worker and the runs it starts get
    their share of the cores, so that torch does not start one thread per core in every worker."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        share = str(max(1, (os.cpu_count() or 1) // int(workers)))
        os.environ.setdefault("OMP_NUM_THREADS", share)
        os.environ.setdefault("MKL_NUM_THREADS", share)
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# ---------------------------------------------------------------- test tiers (the one place they are set)
# `make test` runs `-m "not slow"`: every module, in minutes. `make test-all` adds the slow tier below: real data,
# DDP, whole sweeps, the transfer evidence, the wheel and long end-to-end runs. A pattern is a substring of the
# node id (``tests/test_x.py::test_name[param]``); a pattern that no longer matches marks nothing.
SLOW = (
    # real data under ../shared/data (or TRANSLEARN_DATA_ROOT); each loads, and most train on, a whole data set
    "test_real_data.py::", "test_peer_split.py::", "test_peer_cdr_split.py::", "test_sources.py::test_real_",
    "test_history.py::test_arts_office_",
    "test_disjoint_users.py::test_disjoint_arts_office", "test_rating.py::test_rating_preset_beats",
    # two processes under DDP
    "::test_ddp_on_two_cpu_processes", "::test_under_ddp",
    # whole sweeps: seeds x strategies at the default budget, launchers with parallel jobs
    "test_compare_sweeps.py::", "test_sweeps.py::test_joblib_", "test_sweeps.py::test_a_failed_joblib_job",
    "test_sweeps.py::test_an_optuna_search", "test_stage_keys.py::test_a_sweep_mixing",
    # transfer evidence: comparisons of trained runs (thresholds measured over seeds)
    "test_transfer_evidence.py::", "test_text_transfer_evidence.py::",
    "test_strategies.py::test_joint_beats_target_only_when", "test_strategies.py::test_joint_shows_negative_transfer",
    # the wheel: built, installed into a fresh venv, its console scripts run
    "test_wheel.py::",
    # long end-to-end runs: a fresh translearn-train interpreter, a 4-job sweep, the packaged MiniLM loaded for
    # features (MiniLM stays in the fast tier through test_content_text.py and test_content_towers.py)
    "test_cli.py::test_console_script_smoke", "test_cli.py::test_multirun_sweeps_strategies_and_seeds",
    "test_outputs_encoder.py::test_features_of_the_pretrained_text_encoder_alone",
    "test_tabular_runs.py::test_mapping_predicts_ratings_of_cold_start_users",  # 20 + 20 stage epochs, 5 s CPU
    "test_lightgcn.py::test_real_arts_office_graph", "test_bitgcf.py::test_real_arts_office_model",
    "test_sparsify_after_split.py::test_sparsifying_training_rows",
    # several launchers as nodes of one job (torchrun, SLURM's srun variables), gloo on CPU
    "test_cluster.py::test_two_torchrun_nodes", "test_cluster.py::test_slurm_tasks_share",
    # sweeps whose jobs fail on purpose (error.json and the summary of each)
    "test_failure_records.py::test_a_sweep_",
)

# The longest tests start first, so that under xdist they run beside the short ones instead of after them.
LONG_FIRST = ("test_compare_sweeps.py", "test_ddp_on_two_cpu_processes", "test_under_ddp", "test_wheel.py",
              "test_text_transfer_evidence.py", "test_transfer_evidence.py", "test_real_data.py")

# An unmarked test whose own run (the call phase: not the first build of a shared fixture) takes longer than this
# fails: it belongs in SLOW, or should get faster. The time is the smaller of wall-clock and CPU seconds (this
# process and the child processes it waited for), so that other jobs on the machine do not fail a test, nor
# torch's threads. TRANSLEARN_TEST_LIMIT_S=<seconds> sets the limit (0: off).
LIMIT_ENV = "TRANSLEARN_TEST_LIMIT_S"
_CPU_S = pytest.StashKey[float]()


def _limit_s() -> float:
    return float(os.environ.get(LIMIT_ENV, "5"))


def _cpu_s() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(pattern in item.nodeid for pattern in SLOW):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: not any(name in item.nodeid for name in LONG_FIRST))


@pytest.fixture(scope="session", autouse=True)
def _training_stack_imported() -> None:
    """Import the training stack (torch, Lightning, Hydra) once in the setup of the session's first test, so
    that its seconds do not count against whichever test happens to import it first."""
    import translearn.cli.train  # noqa: F401
    import translearn.train  # noqa: F401


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    start = _cpu_s()
    yield
    item.stash[_CPU_S] = _cpu_s() - start


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    limit = _limit_s()
    if call.when != "call" or not report.passed or limit <= 0 or item.get_closest_marker("slow") is not None:
        return
    cpu = item.stash.get(_CPU_S, report.duration)
    if min(report.duration, cpu) > limit:
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} took {report.duration:.1f} s ({cpu:.1f} s CPU), over the fast tier's "
                           f"{limit:g} s: make it faster, or add it to SLOW in tests/conftest.py "
                           f"({LIMIT_ENV}=<seconds> sets the limit, 0 turns it off)")


# ---------------------------------------------------------------- data layer (test_build.py ... test_datamodule.py)


def _make_data(**domains: dict) -> CrossDomainData:
    """``CrossDomainData`` from hand-written raw arrays: ``_make_data(s=dict(users=[...], items=[...], ...))``.

    Each domain takes the ``RawDomain`` fields (users, items, ratings, order, catalog, item_text,
    item_attributes) as plain lists; ids go through ``build_cross_domain`` exactly as a reader's would.
    """
    raw = {}
    for name, spec in domains.items():
        def arr(key: str, dtype: object = None, spec: dict = spec) -> np.ndarray | None:
            value = spec.get(key)
            if value is None:
                return None
            if dtype is None and any(v is None or isinstance(v, str) for v in value):
                dtype = object
            return np.asarray(value, dtype=dtype)

        raw[name] = RawDomain(users=arr("users"), items=arr("items"), ratings=arr("ratings", np.float32),
                              order=arr("order", np.float64), catalog=arr("catalog"),
                              item_text=arr("item_text", object), item_attributes=arr("item_attributes", object))
    return build_cross_domain(raw)


@pytest.fixture
def make_data():
    """The ``_make_data`` builder (a fixture so test modules need no import from conftest)."""
    return _make_data


@pytest.fixture
def tiny_data() -> CrossDomainData:
    """Two domains over users u1..u5. Source ``s``: u1..u4 (u5 is target-only); target ``t``: u1..u3 and u5,
    3 to 4 rows each with distinct order keys, ratings 1..5, and item text for every catalogue item."""
    return _make_data(
        s=dict(users=["u1", "u1", "u2", "u3", "u4", "u4"], items=["a", "b", "a", "c", "b", "c"],
               ratings=[5, 4, 3, 2, 1, 5], order=[1, 2, 3, 4, 5, 6],
               catalog=["a", "b", "c"], item_text=["alpha", "beta", "gamma"]),
        t=dict(users=["u1", "u1", "u1", "u2", "u2", "u2", "u2", "u3", "u3", "u3", "u5", "u5", "u5"],
               items=["x", "y", "z", "x", "w", "y", "v", "z", "x", "w", "v", "w", "y"],
               ratings=[1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3],
               order=[10, 20, 30, 11, 21, 31, 41, 12, 22, 32, 13, 23, 33],
               catalog=["v", "w", "x", "y", "z"], item_text=["vee", "double u", "ex", "why", "zed"]),
    )


class StaticSource:
    """A ``DataSource`` over ready data; counts ``load`` calls so cache tests can see a rebuild."""

    def __init__(self, data: CrossDomainData, name: str = "static") -> None:
        self.data, self.name, self.loads = data, name, 0

    def load(self) -> CrossDomainData:
        self.loads += 1
        return self.data

    def fingerprint(self) -> str:
        return f"static|{self.name}"


@pytest.fixture
def static_source():
    """Factory: ``static_source(data, name)`` -> a DataSource whose fingerprint is ``name``."""
    return StaticSource


# ---------------------------------------------------------------- runs (test_strategies.py, test_cli.py, ...)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One ``paths.cache_dir`` for the test session (per xdist worker): entries are content-keyed, so tests
    share prepared data, features and stages. A test of the cache itself appends its own
    ``paths.cache_dir=...`` (the last override wins)."""
    return tmp_path_factory.getbasetemp() / "session-cache"


def tiny_run_overrides(cache_dir: Path, log_dir: Path) -> list[str]:
    """Overrides for a seconds-long training run on small synthetic data."""
    return [
        "data.dataset.num_users=240", "data.dataset.num_items=[80,60]", "data.batch_size=128",
        "data.eval_batch_size=64", "trainer.max_epochs=2", f"paths.cache_dir={cache_dir}", f"paths.log_dir={log_dir}",
    ]


@pytest.fixture
def run_overrides(request, tmp_path, session_cache):
    """Overrides for a seconds-long training run on small synthetic data, logging under ``tmp_path``, with the
    session's cache (``paths.cache_dir``, item 5), or ``tmp_path / "cache"`` in a module that sets
    ``OWN_CACHE = True`` (its tests look into the cache, or need a stage trained by themselves)."""
    own = getattr(request.module, "OWN_CACHE", False)
    return tiny_run_overrides(tmp_path / "cache" if own else session_cache, tmp_path / "logs")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, session_cache) -> tuple[Path, list[str]]:
    """(run folder, overrides) of one finished tiny run (joint MF, 2 epochs, the ``run_overrides`` data), trained
    once per session through ``translearn-train`` in this process, so the folder holds ``.hydra/config.yaml``
    for the read-only tools. Shared: a test that changes the folder works on a copy."""
    root = tmp_path_factory.mktemp("trained")
    args = [*tiny_run_overrides(session_cache, root / "logs"), "logger=none"]
    with pytest.MonkeyPatch.context() as mp:
        code = call_console_script(mp, "translearn-train", [*args, f"hydra.run.dir={root / 'run'}"])
    assert code == 0 and (root / "run" / "metrics.json").is_file(), code
    return root / "run", args


@pytest.fixture
def fresh_root_logger(monkeypatch):
    """Each in-process console-script run (run_cli) lets Hydra add handlers to the root logger that write to
    that test's captured streams; a later test's log lines would then print '--- Logging error ---' and a
    traceback. A test that uses this starts with no root handlers and drops the ones its runs added (a module
    of many such runs: ``pytestmark = pytest.mark.usefixtures("fresh_root_logger")``)."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [])


# ---------------------------------------------------------------- the output tools' runs (test_outputs*.py)
OUTPUTS_TINY = ["data.dataset.num_users=120", "data.dataset.num_items=[50,40]", "data.batch_size=128",
                "data.eval_batch_size=64", "trainer.max_epochs=2", "logger=none"]
OUTPUTS_SASREC = ["model=sasrec", "model.max_history=8", "model.embedding_dim=16", "model.inner_size=32",
                  "data.dataset.sequential=0.9"]


def _finished_run(folder: Path, overrides: list[str]) -> Path:
    """A finished run folder with the ``.hydra/config.yaml`` the console script would save."""
    from omegaconf import OmegaConf

    from translearn.cli.config import compose
    from translearn.train import train

    cfg = compose([*overrides, f"paths.cache_dir={folder.parent / 'cache'}",
                   f"paths.log_dir={folder.parent / 'logs'}"], output_dir=folder)
    train(cfg)
    (folder / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, folder / ".hydra" / "config.yaml")
    return folder


@pytest.fixture(scope="session")
def mf_run(tmp_path_factory) -> Path:
    """A finished 2-epoch joint MF run (towers for target and source) for the output tools; shared, read-only."""
    return _finished_run(tmp_path_factory.mktemp("mf") / "run", OUTPUTS_TINY)


@pytest.fixture(scope="session")
def sas_run(tmp_path_factory) -> Path:
    """A finished 2-epoch target-only SASRec run for the output tools; shared, read-only."""
    return _finished_run(tmp_path_factory.mktemp("sas") / "run", [*OUTPUTS_TINY, *OUTPUTS_SASREC,
                                                                  "strategy=target_only"])


@pytest.fixture
def hand_facts():
    """Factory: ``hand_facts(num_users, target_items, sources=("s",), target="t", counts=None)`` -> ``DataFacts``
    for a hand-made model in which every user has training rows in every domain."""
    from translearn.data.facts import DataFacts

    def make(num_users: int, target_items: int, sources=("s",), target="t", counts=None) -> DataFacts:
        domains = (*sources, target)
        return DataFacts(target, tuple(sources), {d: np.ones(num_users, dtype=bool) for d in domains},
                         {s: num_users for s in sources},
                         np.zeros(target_items, dtype=np.int64) if counts is None else np.asarray(counts),
                         {d: False for d in domains})

    return make


@pytest.fixture(scope="session")
def lite0():
    """(backbone, identity) of the packaged EfficientNet-Lite0 image encoder, loaded once per test process."""
    from translearn.content import image

    return image.load_image_backbone()


# ---------------------------------------------------------------- console scripts, in this process


class CliResult:
    """What a console script did when run in-process: the ``subprocess.CompletedProcess`` fields tests read."""

    def __init__(self, args: list[str], returncode: int, stdout: str, stderr: str) -> None:
        self.args, self.returncode, self.stdout, self.stderr = args, returncode, stdout, stderr


def call_console_script(monkeypatch: pytest.MonkeyPatch, prog: str, args: list[str],
                        cwd: str | os.PathLike | None = None, env: dict[str, str] | None = None) -> int:
    """Run the console script ``prog`` (e.g. ``translearn-train``) in this process, as its entry point would
    (``sys.argv``, the exit status returned); ``HYDRA_FULL_ERROR`` unset (the scripts set it for themselves)
    unless ``env`` (set for the call) names it. An exception that the script lets through is raised."""
    import importlib
    from importlib.metadata import entry_points

    from translearn.errors import FORCED_FULL_ERROR_ENV

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts") if ep.name.startswith("translearn")}
    module_name, func_name = scripts[prog].split(":")
    module = importlib.import_module(module_name)
    for name in ("HYDRA_FULL_ERROR", FORCED_FULL_ERROR_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    if cwd is not None:
        monkeypatch.chdir(cwd)
    for state in ("_jobs", "_failed"):  # translearn-train's per-process record of its jobs
        if isinstance(getattr(module, state, None), list):
            getattr(module, state).clear()
    monkeypatch.setattr("sys.argv", [prog, *map(str, args)])
    # Hydra points the logging handlers at this call's stdout and run folder: put back the ones of before, so that
    # a later call does not log into a capture that is closed by then.
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in ("hydra", "translearn"))]
    saved = [(log, log.handlers[:], log.level, log.propagate) for log in loggers]
    try:
        code = getattr(module, func_name)()
        code = 0 if code is None else int(code)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        for name in ("HYDRA_FULL_ERROR", FORCED_FULL_ERROR_ENV):
            os.environ.pop(name, None)
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().cfg = None  # no Hydra job state leaks into later code of this process
        GlobalHydra.instance().clear()
        for log, handlers, level, propagate in saved:
            for handler in log.handlers:
                if handler not in handlers:
                    handler.close()
            log.handlers[:], log.level, log.propagate = handlers, level, propagate
    return code


@pytest.fixture
def run_cli(monkeypatch, capfd):
    """Factory: ``run_cli(prog, args, cwd=None, env=None)`` runs the console script ``prog`` (e.g. ``translearn-train``)
    in this process, as its entry point would (``sys.argv``, exit status, stdout/stderr) -> ``CliResult``.

    Seconds faster than a fresh interpreter per case; one real console-script start is kept in
    ``test_cli.py``. ``HYDRA_FULL_ERROR`` is unset (the scripts set it for themselves; restored afterwards).
    """

    def run(prog: str, args: list[str], cwd: str | os.PathLike | None = None,
            env: dict[str, str] | None = None) -> CliResult:
        capfd.readouterr()
        code = call_console_script(monkeypatch, prog, args, cwd, env)
        out, err = capfd.readouterr()
        return CliResult([prog, *map(str, args)], code, out, err)

    return run
