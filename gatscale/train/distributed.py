"""Process-group setup: torchrun, submitit, or a single process. NCCL on GPU, gloo on CPU."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _export_submitit_env():
    """Inside a submitit SLURM job with several tasks, export RANK/WORLD_SIZE/MASTER_ADDR/... ."""
    if "RANK" in os.environ or "SUBMITIT_FOLDER" not in os.environ:
        return
    try:
        import submitit
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    except Exception:  # noqa: BLE001 - not in a distributed submitit job
        pass


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group described by the environment (torchrun or submitit), else run alone."""
    _export_submitit_env()
    use_cuda = torch.cuda.is_available() and device != "cpu"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        dev = torch.device("cuda", 0) if use_cuda else torch.device("cpu")
        return DistInfo(device=dev)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world_size,
                                **({"device_id": dev} if use_cuda else {}))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def all_reduce_max(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def barrier(info: DistInfo):
    if info.enabled:
        dist.barrier()


def parameter_checksums(params, info: DistInfo) -> list[float]:
    """Every rank's float64 sum of `params`, gathered (equal values: the replicas agree). A host sync."""
    checksum = torch.stack([p.detach().double().sum() for p in params]).sum()
    gathered = [torch.zeros_like(checksum) for _ in range(info.world_size)]
    dist.all_gather(gathered, checksum)
    return [s.item() for s in gathered]
