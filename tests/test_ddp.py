"""DDP on two CPU processes: replicas stay identical and equal one big-batch SGD run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data.distributed import DistributedSampler

from dlnotes import ddp, toy
from dlnotes.errors import DlnotesError, InputError

EPOCHS = 4


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[ddp.RankResult], Path]:
    out = tmp_path_factory.mktemp("ddp")
    return ddp.launch(nproc=2, num_epochs=EPOCHS, device="cpu", out_dir=out), out


def test_both_ranks_end_with_identical_weights(job) -> None:
    results, out = job
    assert [r.rank for r in results] == [0, 1]
    assert {r.backend for r in results} == {"gloo"}
    states = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert states[0].keys() == states[1].keys()
    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name]), name
    # the digests each rank gathered agree with the saved files and with each other
    assert results[0].digests == results[1].digests == [results[0].digest] * 2


def test_loss_fell_and_toy_problem_is_solved(job) -> None:
    results, _ = job
    for r in results:
        assert len(r.losses) == EPOCHS
        assert r.losses[-1] < 0.5 * r.losses[0]
        assert r.train_accuracy == r.test_accuracy == 1.0
    assert results[0].losses == results[1].losses  # all-reduced, so the same on every rank
    assert results[0].local_losses != results[1].local_losses  # ...but each rank saw other data


def test_ranks_train_on_a_partition_of_the_data(job) -> None:
    results, _ = job
    seen = [r.examples_seen for r in results]
    assert len(seen[0]) == len(seen[1]) == 3  # 5 examples padded to 6, 3 per rank
    assert set(seen[0]) | set(seen[1]) == set(range(5))


def test_ddp_equals_single_process_sgd_on_the_union_of_the_rank_batches(job) -> None:
    """Averaging two ranks' gradients of a batch-mean loss is the gradient of the mean
    over both batches, so one process doing that must land on the same weights."""
    _, out = job
    X, y, _, _ = toy.toy_data()
    dataset = toy.ToyDataset(X, y)
    torch.manual_seed(123)  # ddp.train's default seed
    model = toy.MLP(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    samplers = [DistributedSampler(dataset, num_replicas=2, rank=r, seed=123) for r in range(2)]
    for epoch in range(EPOCHS):
        shards = []
        for sampler in samplers:
            sampler.set_epoch(epoch)
            shards.append(list(sampler))
        for start in range(0, len(shards[0]) - 1, 2):  # batch_size 2, drop_last
            index = torch.tensor([i for shard in shards for i in shard[start : start + 2]])
            loss = F.cross_entropy(model(X[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    trained = torch.load(out / "rank0.pt", weights_only=True)
    for name, expected in model.state_dict().items():
        torch.testing.assert_close(trained[name], expected, rtol=1e-5, atol=1e-6)


def test_a_worker_error_comes_back_as_one_message(tmp_path: Path) -> None:
    with pytest.raises(DlnotesError, match=r"num_epochs >= 1.*got 0"):
        ddp.launch(nproc=1, num_epochs=0, device="cpu", out_dir=tmp_path)


def test_bad_arguments_fail_before_starting_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="nproc must be at least 1, got 0"):
        ddp.launch(nproc=0)
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        ddp.launch(device="tpu")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InputError, match="started by torchrun.*ddp.launch"):
        ddp.train()


def test_out_dir_that_is_a_file_fails_before_starting_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Defect 17: every worker failed to write there, and the error was "the DDP job failed
    # (exit code 1)" with twenty lines of torchrun's output and not the cause.
    blocker = tmp_path / "results"
    blocker.write_text("a file")
    monkeypatch.setattr(ddp.subprocess, "Popen", None)  # any start of a process would fail
    with pytest.raises(InputError, match="cannot use out_dir=.*results.*it is a file"):
        ddp.launch(nproc=1, num_epochs=1, device="cpu", out_dir=blocker)


def test_a_worker_crash_is_reported_by_its_exception_line(tmp_path: Path) -> None:
    worker = tmp_path / "worker.py"
    worker.write_text("raise FileExistsError(17, 'File exists', '/somewhere/rank0.pt')\n")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--local-addr=127.0.0.1", "--nproc-per-node=1", str(worker),
    ]  # fmt: skip
    with pytest.raises(DlnotesError) as info:
        ddp._run(command, {"OMP_NUM_THREADS": "1", **os.environ}, timeout=120)
    message = str(info.value)
    assert "\n" not in message
    assert "FileExistsError: [Errno 17] File exists: '/somewhere/rank0.pt'" in message
