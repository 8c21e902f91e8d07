"""Data-parallel processes on one machine, with every socket on the loopback interface.

torchrun's rendezvous store listens on all interfaces (``*:port``), whatever ``--master-addr``
says. ``run_local_ranks`` starts the ranks itself instead: it binds the store's socket to
127.0.0.1, hands it to rank 0 (``TCPStore(master_listen_fd=...)``) and tells gloo to use ``lo``.
``join_process_group`` joins either way: through that store, or through torchrun's environment
(several machines, on a network you trust).
"""

from __future__ import annotations

import datetime
import gc
import os
import socket
import subprocess
import sys
import tempfile
import time

import torch
import torch.distributed as dist

LOOPBACK = "127.0.0.1"
RENDEZVOUS_ENV = "LSI_RENDEZVOUS"  # "loopback" when started by run_local_ranks
STORE_FD_ENV = "LSI_STORE_FD"  # rank 0 only: the listening socket's file descriptor
STORE_TIMEOUT = datetime.timedelta(minutes=5)


def rank_environment(rank: int, nproc: int, port: int) -> dict[str, str]:
    """The variables torch.distributed reads, for rank ``rank`` of ``nproc`` on this machine."""
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(nproc),
        "LOCAL_WORLD_SIZE": str(nproc),
        "MASTER_ADDR": LOOPBACK,
        "MASTER_PORT": str(port),
        "GLOO_SOCKET_IFNAME": "lo",
        RENDEZVOUS_ENV: "loopback",
    }


def run_local_ranks(
    nproc: int,
    args: list[str],
    *,
    env: dict | None = None,
    cwd=None,
    capture_output: bool = False,
    timeout: float | None = None,
) -> list[subprocess.CompletedProcess]:
    """Run ``python <args>`` as ranks 0..nproc-1; one result per rank, in rank order.

    When a rank fails the others are stopped (they would wait for it forever). Captured output goes
    through files, so a rank that prints a lot cannot block on a full pipe."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen(128)  # ranks that connect before rank 0's store is up wait in the backlog
    port = listener.getsockname()[1]
    base = {**(env if env is not None else os.environ)}
    with tempfile.TemporaryDirectory(prefix="lsi_ranks_") as folder:
        processes, outputs = [], []
        try:
            for rank in range(nproc):
                rank_env = base | rank_environment(rank, nproc, port)
                fds = ()
                if rank == 0:
                    rank_env[STORE_FD_ENV] = str(listener.fileno())
                    fds = (listener.fileno(),)
                streams = {}
                if capture_output:
                    streams = {
                        "stdout": open(os.path.join(folder, f"{rank}.out"), "w+"),
                        "stderr": open(os.path.join(folder, f"{rank}.err"), "w+"),
                    }
                outputs.append(streams)
                processes.append(
                    subprocess.Popen([sys.executable, *args], env=rank_env, cwd=cwd, pass_fds=fds, **streams)
                )
            listener.close()  # rank 0 holds its own copy
            _wait_all(processes, timeout)
        finally:
            listener.close()
            _stop(processes)
        results = []
        for process, streams in zip(processes, outputs, strict=True):
            text = {}
            for name, stream in streams.items():
                stream.seek(0)
                text[name] = stream.read()
                stream.close()
            results.append(
                subprocess.CompletedProcess(
                    [sys.executable, *args], process.returncode, text.get("stdout"), text.get("stderr")
                )
            )
    return results


def _wait_all(processes: list[subprocess.Popen], timeout: float | None) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        codes = [p.poll() for p in processes]
        if all(code is not None for code in codes) or any(code for code in codes):
            return  # all done, or one failed: the caller stops the rest
        if deadline is not None and time.monotonic() > deadline:
            raise subprocess.TimeoutExpired([p.args for p in processes], timeout)
        time.sleep(0.05)


def _stop(processes: list[subprocess.Popen], grace: float = 10.0) -> None:
    for p in processes:
        if p.poll() is None:
            p.terminate()
    for p in processes:
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _loopback_store() -> dist.TCPStore | None:
    """The store of a ``run_local_ranks`` group: rank 0 serves it on the socket it was handed."""
    if os.environ.get(RENDEZVOUS_ENV) != "loopback":
        return None
    address, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    world_size = int(os.environ["WORLD_SIZE"])
    if STORE_FD_ENV in os.environ:
        fd = int(os.environ[STORE_FD_ENV])
        return dist.TCPStore(address, port, world_size, True, STORE_TIMEOUT, master_listen_fd=fd)
    return dist.TCPStore(address, port, world_size, False, STORE_TIMEOUT)


def join_process_group(device: str) -> str:
    """With WORLD_SIZE > 1: join the process group (nccl on CUDA, gloo on CPU).

    Returns this rank's device (``cuda:<LOCAL_RANK>`` on CUDA); a no-op for a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    backend = "gloo"
    if torch.device(device).type == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
        backend = "nccl"
    store = _loopback_store()
    if store is None:  # torchrun's environment
        dist.init_process_group(backend)
    else:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size)
    return device


def leave_process_group() -> None:
    """Destroy the process group, once nothing of the run refers to it any more.

    Call it after the trainers are gone: DistributedDataParallel keeps the group, so a group destroyed
    while a trainer lives is only torn down at interpreter exit, when its worker threads can no longer
    take the GIL and the process aborts ("terminate called without an active exception")."""
    gc.collect()
    if dist.is_initialized():
        dist.destroy_process_group()
