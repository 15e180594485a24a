"""Data-parallel SVI on torch.distributed, two processes on localhost (gloo).

The maths first: at fixed parameters and fixed reparameterisation noise, the gradient
summed over ranks (each on its shard of the global minibatch, weighted by its share) is
the one-process gradient of the same global batch, to 1e-10 in float64, for the VAE, the
diffusion model and the char-LM, and of the GAN's critic and generator. The noise is
fixed by drawing it as a pattern along the last dimension only, the same for every row,
so it cannot depend on which rank holds a row. Then the command line: a run started on 2
processes resumes on 1 from its checkpoint, and rank 0 alone writes files.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
GRADIENT_CASES = (("vae.bgm", 16), ("diffusion_moons.bgm", 16), ("charlm.bgm", 6))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pattern(shape: Any, dtype: torch.dtype | None = None, device: Any = None) -> torch.Tensor:
    """Fixed 'noise': a function of the position along the last dimension alone."""
    shape = tuple(shape)
    last = shape[-1] if shape else 1
    row = 0.7 * torch.sin(torch.arange(last, dtype=torch.float64) + 1.0)
    return row.expand(shape).to(dtype or torch.get_default_dtype()).to(device or "cpu")


@contextlib.contextmanager
def fixed_noise() -> Iterator[None]:
    """torch's random draws replaced by _pattern (the same for every row)."""
    saved = (torch.randn, torch.randn_like, torch.randint, torch.Tensor.normal_, torch.normal)

    def randn(*size: Any, dtype: Any = None, device: Any = None, **_: Any) -> torch.Tensor:
        return _pattern(size[0] if len(size) == 1 and not isinstance(size[0], int) else size,
                        dtype, device)

    def randint(low: int, high: int, size: Any, device: Any = None, **_: Any) -> torch.Tensor:
        return torch.full(tuple(size), (low + high) // 2, device=device)

    def normal_(self: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
        return self.copy_(_pattern(self.shape, self.dtype, self.device))

    torch.randn = randn
    torch.randn_like = lambda x, **kw: _pattern(x.shape, x.dtype, x.device)
    torch.randint = randint
    torch.Tensor.normal_ = normal_
    torch.normal = lambda mean, std, **_: mean + std * _pattern(  # type: ignore[assignment]
        torch.broadcast_shapes(mean.shape, std.shape), mean.dtype, mean.device)
    try:
        yield
    finally:
        (torch.randn, torch.randn_like, torch.randint, torch.Tensor.normal_,
         torch.normal) = saved


def _gradients(svi: Any, idx: torch.Tensor, shared: bool) -> list[torch.Tensor]:
    svi.optimizer.zero_grad()
    with fixed_noise():
        if shared:
            svi._shared_step(idx)
        else:
            (-svi.elbo(svi.settings.particles, idx)[0]).backward()
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for p in svi.parameters() if p.numel()]


def _gradient_worker(rank: int, world: int, port: int, out: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from compiler.api import compile_file
    from runtime.distributed import World
    from runtime.svi import Svi, SviSettings
    try:
        errors = []
        for name, batch in GRADIENT_CASES:
            model = compile_file(str(EXAMPLES / name)).bind(
                str(EXAMPLES / name.replace(".bgm", ".json")), device="cpu")
            svi = Svi(model, SviSettings(batch=batch, seed=3))
            assert svi.world == World(rank, world)
            idx = torch.randperm(int(svi.total), generator=torch.Generator().manual_seed(5))
            idx = idx[:batch]
            summed = _gradients(svi, idx, shared=True)
            svi.world = World()  # the same object, as one process
            alone = _gradients(svi, idx, shared=False)
            gap = max(float((a - b).abs().max()) for a, b in zip(summed, alone, strict=True))
            size = max(float(b.abs().max()) for b in alone)
            if not (gap <= 1e-10 and size > 1e-3):
                errors.append(f"{name}: gradients differ by {gap} (largest {size})")
        errors += _gan_gradients(rank, world)
        if rank == 0:
            Path(out).write_text("\n".join(errors) or "ok")
    finally:
        dist.destroy_process_group()


def _gan_gradients(rank: int, world: int) -> list[str]:
    """The GAN's critic and generator gradients of one step on 2 ranks and on 1: with
    the ns loss Adam's first moment after one step is the gradient itself (beta1 = 0)."""
    from compiler.api import compile_file
    from runtime.adversarial import Adversarial, AdversarialSettings
    from runtime.distributed import World
    model = compile_file(str(EXAMPLES / "gan_ring.bgm")).bind(
        str(EXAMPLES / "gan_ring.json"), device="cpu")
    moments = []
    for alone in (False, True):
        trainer = Adversarial(model, AdversarialSettings(critic="D", batch=16, seed=3))
        assert trainer.settings.adam_betas[0] == 0.0
        if alone:
            trainer.world = World()
        with fixed_noise():
            trainer.step()
        moments.append([opt.state[p]["exp_avg"] for opt in (trainer.opt_d, trainer.opt_g)
                        for p in opt.param_groups[0]["params"]])
    gap = max(float((a - b).abs().max()) for a, b in zip(*moments, strict=True))
    size = min(float(b.abs().max()) for b in moments[1])
    return [] if gap <= 1e-10 and size > 1e-6 else \
        [f"gan_ring.bgm: gradients differ by {gap} (smallest {size})"]


def test_summed_gradient_of_the_shards_is_the_one_process_gradient(tmp_path: Path) -> None:
    out = tmp_path / "result.txt"
    mp.spawn(_gradient_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    assert out.read_text() == "ok"


def _cli_worker(rank: int, world: int, port: int, workdir: str, argv: list[str]) -> None:
    """`bgmc <argv>` as rank `rank` of a torchrun group, recording the files it writes
    (every output goes through runtime.files.write_atomic, which ends in os.replace)."""
    sys.path.insert(0, str(ROOT))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    os.chdir(workdir)
    written: list[str] = []
    replace = os.replace

    def recording(src: Any, dst: Any) -> None:
        written.append(Path(dst).name)
        replace(src, dst)

    os.replace = recording
    from compiler.cli import main
    code = main(argv)
    os.replace = replace
    Path(workdir, f"rank{rank}.txt").write_text(f"{code}\n" + "\n".join(sorted(written)))


LINEAR = [str(EXAMPLES / "linear_regression.bgm"), "--data",
          str(EXAMPLES / "linear_regression.json"), "--method", "svi", "--batch", "8",
          "--draws", "20", "--no-progress", "--seed", "4"]


@pytest.mark.slow  # ~25 s: two processes each compile, fit and summarise
def test_two_processes_write_from_rank_zero_and_resume_on_one(tmp_path: Path) -> None:
    """A run on 2 processes: rank 0 alone writes (the fit, its checkpoints, the loss
    plot); its checkpoint then resumes on 1 process with its parameters and step."""
    argv = ["fit", *LINEAR, "--iter", "20", "--checkpoint-every", "10", "-o", "fit.nc"]
    mp.spawn(_cli_worker, args=(2, free_port(), str(tmp_path), argv), nprocs=2, join=True)
    rank0 = (tmp_path / "rank0.txt").read_text().splitlines()
    rank1 = (tmp_path / "rank1.txt").read_text().splitlines()
    assert rank0[0] == "0" and rank1 == ["0"]  # exit codes; rank 1 wrote nothing
    assert sorted(set(rank0[1:])) == ["fit.nc", "fit.nc.ckpt.safetensors", "fit.nc.loss.png"]
    assert rank0.count("fit.nc.ckpt.safetensors") == 2  # at step 10 and at the end

    from safetensors.torch import load_file

    from compiler.api import compile_file
    from runtime import checkpoint
    from runtime.svi import Svi, SviSettings
    ckpt = tmp_path / "fit.nc.ckpt.safetensors"
    saved = load_file(str(ckpt))
    model = compile_file(LINEAR[0]).bind(LINEAR[2], device="cpu")
    svi = Svi(model, SviSettings(steps=30, batch=8, seed=4, draws=20))
    assert svi.world.size == 1
    checkpoint.load(svi, ckpt)
    assert svi.state.step == 20 and svi.state.losses == saved["losses"].tolist()
    for name, value in svi.named_tensors().items():
        assert torch.equal(value.detach(), saved[name]), name
    svi.run()
    assert svi.state.step == 30 and svi.state.losses[:20] == saved["losses"].tolist()


def test_more_processes_than_rows_of_a_minibatch_is_one_clear_error(tmp_path: Path) -> None:
    import subprocess
    run = subprocess.run([sys.executable, "-m", "compiler.cli", "fit", *LINEAR[:5],
                          "--batch", "1", "--nproc", "2"], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr == ("error: --batch 1 is smaller than --nproc 2: every process needs "
                          "rows of each minibatch; use --batch 2 or more\n")


VAE_EPOCHS = 30  # the example trains 100; enough for held-out ELBOs to separate from -44


def _vae_heldout_elbos() -> list[float]:
    """The VAE trained at reduced settings for seeds 1, 2, 3 on the processes of this
    group: its held-out ELBO per image for each (as tests/test_svi.py measures it)."""
    from test_svi import _heldout_elbo_bgm

    from compiler.api import compile_file
    from runtime.svi import Svi, SviSettings
    program = compile_file(EXAMPLES / "vae.bgm")
    train = program.bind(str(EXAMPLES / "vae.json"), device="cpu", dtype="float32")
    out = []
    for seed in (1, 2, 3):
        svi = Svi(train, SviSettings(epochs=VAE_EPOCHS, batch=128, lr=1e-3, seed=seed))
        svi.run()
        out.append(_heldout_elbo_bgm(program, svi))
    return out


def _vae_worker(rank: int, world: int, port: int, out: str) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        elbos = _vae_heldout_elbos()
        if rank == 0:
            Path(out).write_text(" ".join(map(repr, elbos)))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_a_vae_trained_on_two_processes_is_as_good_as_on_one(tmp_path: Path) -> None:
    """Held-out ELBO per image, mean over 3 seeds: 2 processes within 2% of 1."""
    out = tmp_path / "two.txt"
    mp.spawn(_vae_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    two = [float(x) for x in out.read_text().split()]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = _vae_heldout_elbos()
    finally:
        torch.set_num_threads(threads)
    mean_one, mean_two = sum(one) / 3, sum(two) / 3
    assert abs(mean_two - mean_one) < 0.02 * abs(mean_one), (one, two)
    assert mean_two > -42.0, two  # it learned: an untrained decoder gives about -44


@pytest.mark.slow  # ~35 s each: three processes each compile, sample and summarise
@pytest.mark.parametrize("method, chains, warmup", [("nuts", 4, 150), ("chees", 8, 100)])
def test_chains_split_over_two_processes_give_the_one_process_netcdf(
        tmp_path: Path, method: str, chains: int, warmup: int) -> None:
    """Half the chains on each rank, each from its own stream keyed by (seed, chain
    index), gathered on rank 0: the same arrays as all the chains in one process. chees
    adapts one step size and trajectory length over all chains: each rank gathers every
    chain's acceptance and end points and computes the same adaptation."""
    import arviz as az

    from compiler.cli import main
    schools = [str(EXAMPLES / "eight_schools_noncentered.bgm"), "--data",
               str(EXAMPLES / "eight_schools.json"), "--method", method, "--chains",
               str(chains), "--warmup", str(warmup), "--draws", "100", "--seed", "7",
               "--no-progress"]
    argv = ["fit", *schools, "-o", "two.nc"]
    mp.spawn(_cli_worker, args=(2, free_port(), str(tmp_path), argv), nprocs=2, join=True)
    assert (tmp_path / "rank1.txt").read_text() == "0\n"  # rank 1 wrote nothing
    assert main(["fit", *schools, "-o", str(tmp_path / "one.nc")]) == 0
    one, two = az.from_netcdf(tmp_path / "one.nc"), az.from_netcdf(tmp_path / "two.nc")
    assert one.groups() == two.groups()
    for group in one.groups():
        a, b = getattr(one, group), getattr(two, group)
        assert set(a.data_vars) == set(b.data_vars), group
        for name in a.data_vars:
            assert a[name].shape == b[name].shape, (group, name)
            assert np.array_equal(a[name].values, b[name].values, equal_nan=True), \
                (group, name)


@pytest.mark.slow  # ~20 s: torchrun's launcher starts two processes, twice
def test_nproc_runs_the_command_on_two_processes_through_torchrun(tmp_path: Path) -> None:
    """`bgmc fit ... --nproc 2`: one report on stdout, nothing from the launcher on stderr,
    the fit written; an error met by every process is printed once, with status 1."""
    import subprocess

    def bgmc(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "compiler.cli", "fit", *LINEAR,
                               "--iter", "10", "--nproc", "2", *extra],
                              capture_output=True, text=True, cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    run = bgmc("-o", "fit.nc")
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert run.stdout.count("ELBO") == 1 and (tmp_path / "fit.nc").is_file()
    bad = bgmc("--resume", "--checkpoint", "missing.safetensors")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr == "error: --resume: no checkpoint at 'missing.safetensors'\n"
