"""Distributed data parallel (DDP) training of appendix A's toy model, on one machine.

Follows the DDP section of appendix A in Sebastian Raschka, *Build a Large Language
Model (From Scratch)* (https://github.com/rasbt/LLMs-from-scratch/tree/main/appendix-A),
in its `torchrun` form: every process is started by ``torchrun``, which sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.

* `train` is one rank's work: join the process group, wrap `toy.MLP` in
  `DistributedDataParallel`, read its shard of the data through a
  `DistributedSampler`, train, and gather every rank's weight digest so that any
  rank can check that the replicas stayed identical.
* `launch` starts a whole job from an ordinary Python process (a script, the
  VS Code interactive window, a notebook, a test) by running
  ``python -m torch.distributed.run --standalone ... -m dlnotes.ddp`` and reads
  back each rank's `RankResult`. ``--standalone`` lets torchrun pick a free port
  on 127.0.0.1, so concurrent jobs cannot collide.

Backend: nccl when every rank has its own CUDA device, gloo otherwise (CPU, or
several ranks sharing one GPU). torch.distributed has no MPS backend, so on a Mac
the ranks run on the CPU. Left out: multi-node jobs, fault tolerance, mixed precision.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from dlnotes import env, toy
from dlnotes.atomic import atomic_write
from dlnotes.errors import DlnotesError, InputError

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# "FileExistsError: [Errno 17] ...", "torch.distributed.DistBackendError: ...": the last
# line of a Python traceback (possibly prefixed by torchrun's "[rank0]:").
_EXCEPTION_LINE = re.compile(
    r"^(?:\[rank\d+\]:\s*)?(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception):"
)


@dataclass
class RankResult:
    """What one rank reports after training."""

    rank: int
    world_size: int
    device: str
    backend: str
    losses: list[float]  # per epoch, averaged over all ranks' batches
    local_losses: list[float]  # per epoch, this rank's batches only
    train_accuracy: float
    test_accuracy: float
    digest: str  # sha256 of this rank's final weights
    digests: list[str]  # every rank's digest, gathered: equal iff the replicas agree
    # This rank's share of the dataset in its first epoch; drop_last may keep a few out of
    # its batches.
    examples_seen: list[int]


def under_torchrun() -> bool:
    """True inside a process that torchrun started (its rendezvous variables are set)."""
    return all(name in os.environ for name in _TORCHRUN_VARS)


def state_digest(model: torch.nn.Module) -> str:
    """sha256 over a model's parameter names and exact bytes (equal digests: equal weights).

    >>> a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    >>> state_digest(a) == state_digest(b)
    False
    >>> _ = b.load_state_dict(a.state_dict())
    >>> state_digest(a) == state_digest(b)
    True
    """
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _rank_device(
    requested: str | None, local_rank: int, world_size: int
) -> tuple[torch.device, str]:
    """This rank's device and the process-group backend that suits it."""
    chosen = env.device(requested)
    if chosen.type == "cuda":
        count = torch.cuda.device_count()
        # nccl refuses two ranks on one GPU; gloo can all-reduce CUDA tensors, so it
        # lets a one-GPU machine still run a two-rank job.
        backend = "nccl" if count >= world_size else "gloo"
        return torch.device("cuda", local_rank % count), backend
    return torch.device("cpu"), "gloo"  # mps has no torch.distributed backend


def train(
    num_epochs: int = 3,
    device: str | None = None,
    out_dir: str | Path | None = None,
    seed: int = 123,
    batch_size: int = 2,
    lr: float = 0.5,
) -> RankResult:
    """Train this rank's replica of ``toy.MLP(2, 2)`` with DDP; must run under torchrun.

    With `out_dir`, also writes ``rank<r>.pt`` (the final ``state_dict``) and
    ``rank<r>.json`` (the `RankResult`) there.
    """
    if not under_torchrun():
        missing = [name for name in _TORCHRUN_VARS if name not in os.environ]
        raise InputError(
            f"ddp.train() must run in a process started by torchrun (missing "
            f"{', '.join(missing)}); use ddp.launch() to start a job from here"
        )
    if num_epochs < 1 or batch_size < 1:
        raise InputError(
            f"need num_epochs >= 1 and batch_size >= 1, got {num_epochs}, {batch_size}"
        )
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dev, backend = _rank_device(device, int(os.environ["LOCAL_RANK"]), world_size)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    try:
        env.seed_everything(seed)
        model = toy.MLP(num_inputs=2, num_outputs=2).to(dev)
        # DDP broadcasts rank 0's weights at construction and all-reduces (averages)
        # gradients during backward(), so every replica takes the same step.
        ddp_model = DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
        optimizer = torch.optim.SGD(ddp_model.parameters(), lr=lr)

        X_train, y_train, X_test, y_test = toy.toy_data()
        train_ds = toy.ToyDataset(X_train, y_train)
        sampler = DistributedSampler(train_ds, num_replicas=world_size, rank=rank, seed=seed)
        loader = DataLoader(
            train_ds,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=True,
            pin_memory=dev.type == "cuda",
        )
        if len(loader) == 0:
            raise InputError(
                f"each of {world_size} ranks gets {len(sampler)} of {len(train_ds)} examples, "
                f"fewer than batch_size={batch_size}: nothing to train on"
            )
        losses, local_losses = [], []
        for epoch in range(num_epochs):
            sampler.set_epoch(epoch)  # a different shuffle each epoch, the same on every rank
            batch_losses = toy.train_epoch(ddp_model, loader, optimizer, dev)
            local = sum(batch_losses) / len(batch_losses)
            mean = torch.tensor([local], device=dev)
            dist.all_reduce(mean)
            local_losses.append(local)
            losses.append(mean.item() / world_size)
        sampler.set_epoch(0)
        result = RankResult(
            rank=rank,
            world_size=world_size,
            device=str(dev),
            backend=backend,
            losses=losses,
            local_losses=local_losses,
            train_accuracy=toy.accuracy(model, [(X_train, y_train)], dev),
            test_accuracy=toy.accuracy(model, [(X_test, y_test)], dev),
            digest=state_digest(model),
            digests=[],
            examples_seen=list(sampler),
        )
        gathered: list[str | None] = [None] * world_size
        dist.all_gather_object(gathered, result.digest)
        result.digests = [str(d) for d in gathered]
        if out_dir is not None:
            out = Path(out_dir)
            with atomic_write(out / f"rank{rank}.pt") as fh:
                torch.save({k: v.cpu() for k, v in model.state_dict().items()}, fh)
            with atomic_write(out / f"rank{rank}.json", "w", encoding="utf-8") as fh:
                json.dump(asdict(result), fh)
        return result
    finally:
        # Free the DDP wrapper (it sits in reference cycles) while the process group is
        # alive: freed during interpreter shutdown instead, it sometimes aborts the process
        # with "terminate called without an active exception" (gloo, torch 2.13).
        ddp_model = None
        gc.collect()
        dist.destroy_process_group()


def launch(
    nproc: int = 2,
    num_epochs: int = 3,
    device: str | None = None,
    out_dir: str | Path | None = None,
    timeout: float = 300.0,
) -> list[RankResult]:
    """Start a `nproc`-rank `train` job with torchrun and return the ranks' results in order.

    Works from any process (no ``__file__`` needed): the workers run the
    ``dlnotes.ddp`` module. The device is checked here first, so a bad name fails fast.
    """
    if nproc < 1:
        raise InputError(f"nproc must be at least 1, got {nproc}")
    env.device(device)
    if out_dir is not None:
        try:  # here, not in every worker, so that a bad folder is one clear error
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"cannot use out_dir={str(out_dir)!r} for the results: {exc.strerror or exc}"
                + (" (it is a file, not a folder)" if Path(out_dir).is_file() else "")
            ) from None
    with tempfile.TemporaryDirectory(prefix="dlnotes-ddp-") as scratch:
        out = Path(out_dir) if out_dir is not None else Path(scratch)
        command = [
            sys.executable, "-m", "torch.distributed.run",
            "--standalone", "--local-addr=127.0.0.1", f"--nproc-per-node={nproc}",
            "-m", "dlnotes.ddp", "--epochs", str(num_epochs), "--out", str(out),
        ]  # fmt: skip
        if device:
            command += ["--device", device]
        # One thread per rank: the ranks already share the cores (and torchrun warns otherwise).
        child_env = {"OMP_NUM_THREADS": "1", **os.environ}
        _run(command, child_env, timeout)
        files = [out / f"rank{r}.json" for r in range(nproc)]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise DlnotesError(
                f"the DDP job exited cleanly but wrote no result to {', '.join(missing)}"
            )
        return [RankResult(**json.loads(f.read_text())) for f in files]


def _run(command: list[str], child_env: dict[str, str], timeout: float) -> None:
    """Run the launcher in its own process group, so a timeout also ends its workers."""
    posix = os.name == "posix"
    proc = subprocess.Popen(
        command,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=posix,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        if posix:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.communicate()
        raise DlnotesError(
            f"the DDP job did not finish within {timeout:g} s and was stopped"
        ) from None
    if proc.returncode != 0:
        # A worker that hit a DlnotesError printed it as one "error: ..." line: pass it on.
        errors = [
            line[len("error: ") :] for line in output.splitlines() if line.startswith("error: ")
        ]
        if errors:
            raise DlnotesError(f"a DDP worker failed: {errors[0]}")
        # Otherwise the cause is the exception line of a worker's traceback, above the
        # launcher's own summary.
        causes = [
            line.strip()
            for line in output.splitlines()
            if _EXCEPTION_LINE.match(line) and "ChildFailedError" not in line
        ]
        if causes:
            raise DlnotesError(f"the DDP job failed (exit code {proc.returncode}): {causes[0]}")
        tail = "\n".join(output.splitlines()[-20:])
        raise DlnotesError(
            f"the DDP job failed (exit code {proc.returncode}); its last output:\n{tail}"
        )


def main(argv: list[str] | None = None) -> None:
    """Entry point of each worker: ``torchrun ... -m dlnotes.ddp --epochs 3 --out DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=None, help="folder for rank<r>.pt and rank<r>.json")
    args = parser.parse_args(argv)
    train(num_epochs=args.epochs, device=args.device, out_dir=args.out)


if __name__ == "__main__":
    main()
