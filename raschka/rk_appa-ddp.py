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
# this is one step on an effective batch of $R \cdot B$ examples, computed $R$ times
# faster when each rank has its own GPU.
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
# in turn. No process group is needed to ask it:

# %%
X_train, y_train, _, _ = toy.toy_data()
train_ds = toy.ToyDataset(X_train, y_train)
shares = []
for rank in range(NPROC):
    sampler = DistributedSampler(train_ds, num_replicas=NPROC, rank=rank, seed=123)
    sampler.set_epoch(0)
    shares.append(list(sampler))
    print(f"rank {rank} trains on examples {shares[-1]} in epoch 0")
assert all(len(share) == 3 for share in shares)  # ceil(5 / 2): one example is used twice
assert set(shares[0]) | set(shares[1]) == set(range(5))

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
# `local_losses` differ (each rank sees different examples), while `losses`, averaged over
# the ranks with an all-reduce, agree. The weight digests must be identical, the loss must
# fall, and, as in the book, three epochs solve the toy problem.

# %%
for r in results:
    print(
        f"rank {r.rank} on {r.device} ({r.backend}): epoch-0 examples {r.examples_seen}, "
        f"own losses {[round(v, 3) for v in r.local_losses]}, "
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
