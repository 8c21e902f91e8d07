"""One rank of test_distributed_training: run by run_local_ranks, writes what the test checks.

argv: a TrainConfig JSON file, an output folder, the step to stop and save at. Each rank trains in a
run folder of its own, so the test sees which rank wrote; then each builds a new Trainer from its
folder (rank 1's is empty: the state must come from rank 0) and trains to the end. It also lists
the TCP sockets its process listens on, from /proc, for the loopback-only check.
"""

import ipaddress
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from lsi_ros.training.distributed import join_process_group, leave_process_group
from lsi_ros.training.train import TrainConfig, Trainer


def listening_addresses() -> list[str]:
    """``address:port`` of every TCP socket this process listens on (Linux /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the directory's own descriptor, closed by now
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            columns = line.split()
            if columns[3] != "0A" or columns[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = columns[1].split(":")
            raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append(f"{ipaddress.ip_address(raw)}:{int(port, 16)}")
    return found


def weights(trainer: Trainer) -> dict:
    return {name: p.detach().clone() for name, p in trainer.imager.named_parameters()}


def main():
    values = json.loads(Path(sys.argv[1]).read_text())
    config = TrainConfig(**values | {"photon_flux_range": tuple(values["photon_flux_range"])})
    out, stop_at = Path(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    join_process_group("cpu")
    rank = dist.get_rank()
    listeners = listening_addresses()
    run_dir = out / f"run-rank{rank}"
    trainer = Trainer(config, run_dir)
    trainer.train_step()
    first = {f"grad.{name}": p.grad for name, p in trainer.imager.named_parameters()}
    while trainer.step < stop_at:
        trainer.train_step()
    trainer._save_state()
    saved = weights(trainer)
    resumed = Trainer(config, run_dir)
    same = all(torch.equal(saved[k], v) for k, v in weights(resumed).items())
    metadata = {
        "resumed_step": str(resumed.step),
        "resumed_weights_equal": str(same),
        "listeners": json.dumps(listeners),
        "master_port": os.environ["MASTER_PORT"],
    }
    resumed.fit()
    tensors = first | {f"final.{k}": v for k, v in weights(resumed).items()}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / f"rank{rank}.safetensors"), metadata)


if __name__ == "__main__":
    main()
    leave_process_group()  # after main: its trainers hold the group
