"""train.threads: a run's share of the machine's CPUs, counted among the live runs on the host
through a registry of locked files (digitexp/engine/cpus.py), applied to torch's threads and
the loader workers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import REPO

from digitexp import presets
from digitexp.config import apply_overrides, seed_config
from digitexp.data import load_data
from digitexp.engine import Trainer
from digitexp.engine.cpus import (
    REGISTRY_ENV,
    HostRegistry,
    cpu_budget,
    pool_key,
    share,
)
from digitexp.engine.runtime import loader_workers, native_bf16
from digitexp.errors import ConfigError

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from digitexp.engine.cpus import HostRegistry
    registry = HostRegistry(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
    print("registered", flush=True)
    sys.stdin.read()  # hold the entry until the test closes stdin or kills this process
    """
)


class Holder:
    """Another process holding a registry entry (a second run on this host)."""

    def __init__(self, folder: Path, key: str | None = None) -> None:
        args = [sys.executable, "-c", HOLDER, str(folder)] + ([key] if key else [])
        self.proc = subprocess.Popen(
            args, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "registered"

    def kill(self) -> None:
        self.proc.kill()  # no clean-up: the kernel drops its lock
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.communicate("", timeout=30)


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "cpus"
    monkeypatch.setenv(REGISTRY_ENV, str(folder))
    threads = torch.get_num_threads()
    yield folder
    torch.set_num_threads(threads)


def test_share_splits_the_budget_and_keeps_integers() -> None:
    assert share("auto", 16, 4).threads == 4
    assert share("auto", 16, 3).threads == 5
    assert share("auto", 2, 5).threads == 1  # never zero
    assert share(6, 16, 4).threads == 6  # an integer is used as is


def test_a_live_run_counts_and_a_killed_one_is_removed(tmp_path: Path) -> None:
    mine = HostRegistry(tmp_path, "pool")
    other = Holder(tmp_path, "pool")
    elsewhere = Holder(tmp_path, "another-pool")  # another CPU set: not a peer
    try:
        assert mine.count() == 2
        other.kill()
        assert mine.count() == 1
        assert sorted(p.name.split(".")[0] for p in tmp_path.glob("*.lock")) == [
            "another-pool",
            "pool",
        ]
    finally:
        other.stop()
        elsewhere.stop()
    mine.close()
    assert mine.count() == 0 and not mine.path.exists()


def test_slurm_allotment_is_the_budget_and_its_job_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    whole, key = cpu_budget(), pool_key()
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert cpu_budget() == 1
    assert pool_key() != key  # runs of another Slurm job do not share this one's CPUs
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", str(whole + 8))
    assert cpu_budget() == whole  # never more than the CPUs the process may run on


def test_trainer_takes_its_share_each_epoch(
    registry: Path, synth_root: Path, tmp_path: Path
) -> None:
    cfg = apply_overrides(
        seed_config(), {**presets.SMOKE, "data.root": str(synth_root), "train.workers": -1}
    )
    budget = cpu_budget()
    other = Holder(registry, pool_key())
    try:
        trainer = Trainer(cfg, load_data(cfg.data), tmp_path / "run", progress=False)
        assert trainer.workers == loader_workers(-1, max(1, budget // 2))
        trainer.train_epoch(1, steps=1)
        assert torch.get_num_threads() == max(1, budget // 2)
        other.stop()
        trainer.train_epoch(2, steps=1)
        assert torch.get_num_threads() == budget
    finally:
        other.stop()
    trainer.close()
    assert list(registry.glob("*.lock")) == []
    fixed = apply_overrides(cfg, {"train.threads": 1})
    Trainer(fixed, load_data(fixed.data), tmp_path / "fixed", progress=False).close()
    assert torch.get_num_threads() == 1


def test_threads_setting_is_validated() -> None:
    assert apply_overrides(seed_config(), {"train.threads": 3}).train.threads == 3
    with pytest.raises(ConfigError, match=r"train\.threads"):
        apply_overrides(seed_config(), {"train.threads": 0})
    with pytest.raises(ConfigError, match=r"train\.threads"):
        apply_overrides(seed_config(), {"train.threads": "all"})


def test_loader_workers_follow_the_allotment() -> None:
    assert loader_workers(-1, cpus=3) == 3
    assert loader_workers(-1, cpus=32) == 8
    assert loader_workers(2, cpus=1) == 2


def test_bf16_only_where_the_gpu_has_it_natively() -> None:
    assert not native_bf16((7, 0))  # V100: emulated, torch.cuda.is_bf16_supported() says yes
    assert not native_bf16((7, 5))  # T4
    assert native_bf16((8, 0)) and native_bf16((9, 0))
