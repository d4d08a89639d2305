# %% [markdown]
# # Appendix A — Training on several processes with DistributedDataParallel
#
# Source: Sebastian Raschka, *Build a Large Language Model (From Scratch)*, appendix A,
# the section on training with multiple GPUs.
#
# We train the toy model of `rk_ch01_and_appa-overview_and_setup.py` (the five-point,
# two-class problem and `toy.MLP(2, 2)`) on two processes at once with PyTorch's
# `DistributedDataParallel` (DDP), and check the property everything rests on: after
# training, every process holds bit-for-bit the same weights.
#
# Two ways to run it:
#
# * `torchrun --nproc_per_node=2 raschka/rk_appa-ddp.py` starts two copies of this script;
#   each is one *rank* and trains in the cell "Run the job" (add
#   `--local-ranks-filter=0` to see only rank 0's output).
# * `python raschka/rk_appa-ddp.py`, the VS Code interactive window or the notebook: there
#   is only one process, so "Run the job" calls `ddp.launch`, which starts a two-rank
#   torchrun job itself and collects both ranks' results.
#
# Library names used: `dlnotes.ddp` (`train`, `launch`, `under_torchrun`, `RankResult`)
# and `dlnotes.toy`. The backend is gloo on CPUs and nccl when each rank has its own
# GPU. Runtime: about 5-10 s, full or smoke; starting the processes is most of it.

# %%
import os

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from dlnotes import ddp, env, toy

# %%
SMOKE = env.SMOKE
DEVICE = env.device()
env.seed_everything(123)
RANKED = ddp.under_torchrun()  # True in each process that torchrun started
NPROC = 2
EPOCHS = 3  # the book's number; the job's cost is process start-up, so smoke mode keeps it
where = f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}" if RANKED else "launcher"
print(env.banner(DEVICE), "|", where)

# %% [markdown]
# ## How data parallelism works
#
# Each process (rank) holds a full replica of the model. Every epoch the data are split
# between the ranks, so each sees a different part of each epoch. After the backward
# pass the ranks *all-reduce* their gradients, replacing each rank's gradient with the
# average over all ranks; then every rank takes the same optimizer step from the same
# weights, so the replicas never drift apart. With $R$ ranks and batch size $B$ per rank
# this is one step on an effective batch of $R \cdot B$ examples, computed up to $R$
# times faster when each rank has its own GPU (less the time spent exchanging
# gradients).
#
# The pieces PyTorch provides:
#
# * **a process group** (`torch.distributed.init_process_group`): the ranks find each
#   other through an address and port. `torchrun` chooses them and passes `RANK`,
#   `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR` and `MASTER_PORT` to every process;
#   `ddp.launch` asks torchrun for a free port on 127.0.0.1 (`--standalone`), so two jobs
#   on one machine never collide. The *backend* moves the tensors: nccl between NVIDIA
#   GPUs, gloo on CPUs.
# * **`DistributedSampler`**: gives each rank its own share of the dataset indices,
#   reshuffled each epoch by `set_epoch`, identically on every rank so the shares stay
#   disjoint.
# * **`DistributedDataParallel`**: wraps the model, copies rank 0's initial weights to
#   all ranks, and hooks into `backward()` to average gradients in buckets while the rest
#   of the backward pass is still running.
#
# How `DistributedSampler` splits our five training examples between two ranks: it pads
# the list to a multiple of the number of ranks by repeating examples, then deals them out
# in turn. Each rank's `DataLoader` then batches its share; with the book's
# `batch_size=2` and `drop_last=True`, a share of 3 makes one batch of 2, and the third
# example waits for another epoch's shuffle. No process group is needed to ask them:

# %%
BATCH_SIZE = 2  # per rank, as ddp.train uses
X_train, y_train, _, _ = toy.toy_data()
train_ds = toy.ToyDataset(X_train, y_train)
shares, trained = [], []
for rank in range(NPROC):
    sampler = DistributedSampler(train_ds, num_replicas=NPROC, rank=rank, seed=123)
    sampler.set_epoch(0)
    loader = DataLoader(train_ds, batch_size=BATCH_SIZE, sampler=sampler, drop_last=True)
    shares.append(list(sampler))
    trained.append([i for batch in loader.batch_sampler for i in batch])
    print(f"rank {rank}: share {shares[-1]} in epoch 0, trains on {trained[-1]}")
assert all(len(share) == 3 for share in shares)  # ceil(5 / 2): one example is used twice
assert set(shares[0]) | set(shares[1]) == set(range(5))
assert all(t == share[:BATCH_SIZE] for t, share in zip(trained, shares, strict=True))

# %% [markdown]
# ## One rank's work
#
# `ddp.train` is what each rank runs: choose its device and backend, join the process
# group, build the model from the same seed, wrap it in DDP, train with a sampler-driven
# `DataLoader`, average the epoch losses over the ranks, and finally gather every rank's
# digest of its weights (a sha256 of the exact bytes) so the ranks can compare.

# %%
env.show(ddp.train)

# %% [markdown]
# ## Run the job
#
# Inside a torchrun process this cell trains this rank; anywhere else it launches two
# ranks and waits for them.

# %%
if RANKED:
    results = [ddp.train(num_epochs=EPOCHS)]  # torchrun started the other ranks
else:
    results = ddp.launch(nproc=NPROC, num_epochs=EPOCHS)
print(f"got results from {len(results)} rank(s) of a {results[0].world_size}-rank job")

# %% [markdown]
# ## What each rank reports
#
# Each rank reports its epoch-0 share; it trains on the first `BATCH_SIZE` of them.
# `local_losses` differ (each rank sees different examples), while `losses`, averaged over
# the ranks with an all-reduce, agree. The weight digests must be identical, the loss must
# fall, and, as in the book, three epochs solve the toy problem.

# %%
for r in results:
    used = r.examples_seen[: len(r.examples_seen) // BATCH_SIZE * BATCH_SIZE]  # drop_last
    print(
        f"rank {r.rank} on {r.device} ({r.backend}): epoch-0 share {r.examples_seen}, "
        f"trained on {used}, own losses {[round(v, 3) for v in r.local_losses]}, "
        f"mean losses {[round(v, 3) for v in r.losses]}"
    )
    print(
        f"  train accuracy {r.train_accuracy:.0%}, test accuracy {r.test_accuracy:.0%}, "
        f"weights sha256 {r.digest[:16]}..."
    )
    assert len(set(r.digests)) == 1, "the replicas drifted apart"
    assert r.losses[-1] < r.losses[0]
    assert r.train_accuracy == r.test_accuracy == 1.0
assert len({r.digest for r in results}) == 1

# %% [markdown]
# ## Summary
#
# * DDP runs one process per device, each with a full model replica and a disjoint share
#   of every epoch (`DistributedSampler`); averaging the gradients in `backward()` keeps
#   the replicas identical, which the weight digests confirm.
# * `torchrun` starts the processes and tells each its rank; from a notebook or a plain
#   `python` run, `ddp.launch` starts a torchrun job on a free local port for you.
# * gloo works on CPUs (and with several ranks on one GPU); nccl is the choice when every
#   rank has its own NVIDIA GPU; Apple's MPS has no distributed backend.
#
# Now in the library (`dlnotes.ddp`): `train`, `launch`, `under_torchrun`,
# `state_digest`, `RankResult`.

# %% [markdown]
# ## Exercises
#
# **1 — Why averaging gradients is right.** DDP's all-reduce averages the ranks'
# gradients. Show, without any process group, that for two ranks with equal batch sizes
# the average of the two batch-mean gradients is exactly the gradient of the mean loss
# over both batches together: one step on an effective batch of $R \cdot B$ examples.
# Use two copies of `toy.MLP(2, 2)` with the same seed and the two ranks' epoch-0
# batches from above. Would it still hold if one rank had a batch of 1 and the other 2?


# %% tags=["solution"]
def grads(model: torch.nn.Module, index: list[int]) -> list[torch.Tensor]:
    model.zero_grad()
    F.cross_entropy(model(X_train[index]), y_train[index]).backward()
    return [p.grad.clone() for p in model.parameters()]


torch.manual_seed(123)
replica = toy.MLP(num_inputs=2, num_outputs=2)
per_rank = [grads(replica, t) for t in trained]  # each rank's gradient on its own batch
averaged = [(g0 + g1) / 2 for g0, g1 in zip(*per_rank, strict=True)]
together = grads(replica, trained[0] + trained[1])  # one process, the union of the batches
for a, b in zip(averaged, together, strict=True):
    torch.testing.assert_close(a, b)
uneven = [grads(replica, trained[0][:1]), grads(replica, trained[1])]
uneven_avg = [(g0 + g1) / 2 for g0, g1 in zip(*uneven, strict=True)]
uneven_union = grads(replica, trained[0][:1] + trained[1])
print("equal batches: average of rank gradients == gradient of the union")
# unequal batches: the mean of means weights the lone example twice as much
assert not all(torch.allclose(a, b) for a, b in zip(uneven_avg, uneven_union, strict=True))

# %% [markdown]
# **2 — How much of an epoch each rank trains on.** With $N$ examples, $R$ ranks, batch
# size $B$ and `drop_last=True`, each rank gets $\lceil N / R \rceil$ indices and
# trains on $\lfloor \lceil N/R \rceil / B \rfloor \cdot B$ of them. Check this
# formula against `DistributedSampler` and `DataLoader` for $N = 5$, $R = 1, 2, 3$ and
# $B = 1, 2$, and predict for each setting how many examples are trained on twice in
# one epoch (the sampler's padding) and how many not at all (the dropped last batch).

# %% tags=["solution"]
# (R, B) -> (trained twice, not trained), worked out by hand: the sampler pads the
# shuffled list with its first ceil(N/R)*R - N entries and deals it out round-robin
expected = {
    (1, 1): (0, 0),
    (1, 2): (0, 1),  # 4 of 5 fill two batches
    (2, 1): (1, 0),  # shares of 3: one example padded in twice
    (2, 2): (0, 1),  # each rank drops its third, which includes the padded repeat
    (3, 1): (1, 0),
    (3, 2): (1, 0),
}
for n_ranks in (1, 2, 3):
    for batch_size in (1, 2):
        per_rank = -(-len(train_ds) // n_ranks)  # ceil(N / R)
        formula = per_rank // batch_size * batch_size
        used = []
        for rank in range(n_ranks):
            sampler = DistributedSampler(train_ds, num_replicas=n_ranks, rank=rank, seed=123)
            loader = DataLoader(train_ds, batch_size=batch_size, sampler=sampler, drop_last=True)
            used.append([i for batch in loader.batch_sampler for i in batch])
            assert len(used[-1]) == formula
        flat = [i for u in used for i in u]
        twice, never = len(flat) - len(set(flat)), len(train_ds) - len(set(flat))
        print(f"R={n_ranks} B={batch_size}: {formula} per rank, {twice} twice, {never} never")
        assert (twice, never) == expected[(n_ranks, batch_size)]
