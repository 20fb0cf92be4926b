#!/usr/bin/env python3
"""Side-by-side end-to-end comparison of mtrank and PyTorch eager on the same machine.

Builds the configurations of bench/model_cases.hpp in PyTorch (same layer shapes, PyTorch
conventions), keeps `bench_models --stdin` (mtrank) running next to this process, and runs
every cell interleaved: for each repetition, the mtrank measurement of a cell is immediately
followed by the PyTorch measurement of the same cell (the order alternates between
repetitions), so both see the same machine load. Reports per cell the median samples/s of each
side, the median of the per-repetition ratios mtrank/PyTorch, mtrank's model GFLOP/s and its
share of the measured FMA peak (bench_machine_limits).

Rates are given per wall-clock second and per CPU second of the process (`--clock`): on a
machine shared with other jobs, wall-clock rates of a single-threaded cell mostly measure how
much of a core the scheduler gave it, so the CPU-time rates (and ratios) are the primary ones
for 1-thread cells; thread-scaling cells can only be judged by wall time.

PyTorch setup: torch.set_num_threads(n) per cell, eager mode, torch.inference_mode() for
inference; training = zero_grad(set_to_none=True), forward, BCEWithLogitsLoss, backward,
torch.optim.Adam (dense) and torch.optim.SparseAdam for nn.Embedding(sparse=True) tables.
torch's fp32 GEMM comes from the system BLAS: Debian's python3-torch links libblas.so.3,
which must be OpenBLAS (apt-get install libopenblas0-openmp). OpenBLAS's DYNAMIC_ARCH does
not recognise some virtualised CPUs and falls back to SSE3 kernels ("Prescott"); this script
therefore sets OPENBLAS_CORETYPE (default Cooperlake, the newest AVX-512 core OpenBLAS 0.3.21
knows) unless it is already set, and refuses to report (exit 3) when a 2048^3 fp32 matmul on
one thread runs below 80 GFLOP/s per CPU second: a comparison against a slow BLAS is
meaningless.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_CORETYPE", "Cooperlake")

import torch  # noqa: E402  (after OPENBLAS_CORETYPE: OpenBLAS reads it when it is loaded)
import torch.nn as nn  # noqa: E402

TORCH_GEMM_FLOOR = 80.0  # GFLOP/s, 2048^3 fp32 matmul, one thread

# ----------------------------------------------------------------------------------------------
# Models (same shapes as bench/model_cases.hpp)


def mlp(sizes, act=nn.ReLU, last_act=True, prelu=False):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes) or last_act:
            layers.append(nn.PReLU(sizes[i + 1]) if prelu else act())
    return nn.Sequential(*layers)


def mix(gate_logits, experts):
    """softmax(gate) weighted sum of expert outputs: [B, E] x E * [B, h] -> [B, h]."""
    w = torch.softmax(gate_logits, dim=-1).unsqueeze(1)  # [B, 1, E]
    return torch.bmm(w, torch.stack(experts, dim=1)).squeeze(1)


class MMoE(nn.Module):
    def __init__(self, d_in=512, n_experts=8, n_tasks=2):
        super().__init__()
        self.experts = nn.ModuleList([mlp([d_in, 256, 128]) for _ in range(n_experts)])
        self.gates = nn.ModuleList([nn.Linear(d_in, n_experts, bias=False) for _ in range(n_tasks)])
        self.towers = nn.ModuleList([mlp([128, 64, 1], last_act=False) for _ in range(n_tasks)])

    def forward(self, x):
        f = [e(x) for e in self.experts]
        return torch.cat([t(mix(g(x), f)) for g, t in zip(self.gates, self.towers)], dim=1)


class CGCLevel(nn.Module):
    def __init__(self, d_in, n_tasks=2, nt=2, ns=2, hidden=(256, 128), shared_gate=True):
        super().__init__()
        self.n_tasks, self.nt = n_tasks, nt
        self.task_experts = nn.ModuleList(
            [nn.ModuleList([mlp([d_in, *hidden]) for _ in range(nt)]) for _ in range(n_tasks)])
        self.shared_experts = nn.ModuleList([mlp([d_in, *hidden]) for _ in range(ns)])
        self.task_gates = nn.ModuleList([nn.Linear(d_in, nt + ns, bias=False) for _ in range(n_tasks)])
        self.shared_gate = nn.Linear(d_in, n_tasks * nt + ns, bias=False) if shared_gate else None

    def forward(self, task_in, shared_in):
        tf = [[e(task_in[k]) for e in self.task_experts[k]] for k in range(self.n_tasks)]
        sf = [e(shared_in) for e in self.shared_experts]
        outs = [mix(self.task_gates[k](task_in[k]), tf[k] + sf) for k in range(self.n_tasks)]
        shared = None
        if self.shared_gate is not None:
            shared = mix(self.shared_gate(shared_in), [f for fk in tf for f in fk] + sf)
        return outs, shared


class PLE(nn.Module):
    def __init__(self, d_in=512, n_tasks=2):
        super().__init__()
        self.n_tasks = n_tasks
        self.levels = nn.ModuleList([CGCLevel(d_in, shared_gate=True), CGCLevel(128, shared_gate=False)])
        self.towers = nn.ModuleList([mlp([128, 64, 1], last_act=False) for _ in range(n_tasks)])

    def forward(self, x):
        task_in, shared = [x] * self.n_tasks, x
        for level in self.levels:
            task_in, shared = level(task_in, shared)
        return torch.cat([t(m) for t, m in zip(self.towers, task_in)], dim=1)


class MMoEFull(nn.Module):
    def __init__(self, n_sparse=26, vocab=100000, dim=16, n_dense=96):
        super().__init__()
        self.embeddings = nn.ModuleList([nn.Embedding(vocab, dim, sparse=True) for _ in range(n_sparse)])
        self.mmoe = MMoE(n_sparse * dim + n_dense)

    def forward(self, ids, dense):
        x = torch.cat([e(ids[:, i]) for i, e in enumerate(self.embeddings)] + [dense], dim=1)
        return self.mmoe(x)


class DIN(nn.Module):
    def __init__(self, users=100000, items=1000000, cats=10000, d=32):
        super().__init__()
        self.user = nn.Embedding(users, d, sparse=True)
        self.item = nn.Embedding(items, d, sparse=True, padding_idx=0)
        self.cat = nn.Embedding(cats, d, sparse=True, padding_idx=0)
        self.att = mlp([8 * d, 80, 40, 1], last_act=False, prelu=True)
        self.top = mlp([5 * d, 200, 80, 1], last_act=False, prelu=True)

    def forward(self, user, cand_item, cand_cat, seq_item, seq_cat, mask):
        B, L = seq_item.shape
        q = torch.cat([self.item(cand_item), self.cat(cand_cat)], dim=-1)  # [B, 64]
        k = torch.cat([self.item(seq_item), self.cat(seq_cat)], dim=-1)  # [B, L, 64]
        qe = q.unsqueeze(1).expand_as(k)
        z = torch.cat([qe, k, qe - k, qe * k], dim=-1).reshape(B * L, -1)
        s = self.att(z).view(B, L) * mask  # no softmax, masked
        pooled = torch.bmm(s.unsqueeze(1), k).squeeze(1)
        return self.top(torch.cat([self.user(user), pooled, q], dim=1))


# ----------------------------------------------------------------------------------------------
# Cases: model + cycled batches + optimisers


N_BATCHES = 4


class TorchCase:
    def __init__(self, config, batch, seed=1):
        g = torch.Generator().manual_seed(seed + batch)
        self.batch = batch
        if config in ("mmoe", "ple"):
            self.model = MMoE() if config == "mmoe" else PLE()
            self.inputs = [(torch.randn(batch, 512, generator=g),) for _ in range(N_BATCHES)]
            n_out = 2
        elif config == "mmoe_full":
            self.model = MMoEFull()
            self.inputs = [(torch.randint(0, 100000, (batch, 26), generator=g), torch.randn(batch, 96, generator=g))
                           for _ in range(N_BATCHES)]
            n_out = 2
        elif config in ("din_L50", "din_L200"):
            L = 50 if config == "din_L50" else 200
            self.model = DIN()
            self.inputs = []
            for _ in range(N_BATCHES):
                lengths = torch.randint(1, L + 1, (batch,), generator=g)
                mask = (torch.arange(L).unsqueeze(0) < lengths.unsqueeze(1))
                seq_item = torch.randint(1, 1000000, (batch, L), generator=g) * mask
                seq_cat = torch.randint(1, 10000, (batch, L), generator=g) * mask
                self.inputs.append((torch.randint(1, 100000, (batch,), generator=g),
                                    torch.randint(1, 1000000, (batch,), generator=g),
                                    torch.randint(1, 10000, (batch,), generator=g), seq_item, seq_cat,
                                    mask.float()))
            n_out = 1
        else:
            raise SystemExit(f"compare_torch: unknown configuration {config!r}")
        self.labels = [(torch.rand(batch, n_out, generator=g) < 0.3).float() for _ in range(N_BATCHES)]
        sparse = [p for n, p in self.model.named_parameters() if n.endswith("weight") and is_embedding(self.model, n)]
        dense = [p for n, p in self.model.named_parameters() if not is_embedding(self.model, n)]
        self.optimizers = [torch.optim.Adam(dense, lr=1e-3)]
        if sparse:
            self.optimizers.append(torch.optim.SparseAdam(sparse, lr=1e-3))
        self.loss = nn.BCEWithLogitsLoss()
        self.i = 0

    def infer(self):
        with torch.inference_mode():
            self.out = self.model(*self.inputs[self.i % N_BATCHES])
        self.i += 1

    def train_step(self):
        j = self.i % N_BATCHES
        self.i += 1
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)
        loss = self.loss(self.model(*self.inputs[j]), self.labels[j])
        loss.backward()
        for o in self.optimizers:
            o.step()


def is_embedding(model, name):
    module = model.get_submodule(name.rsplit(".", 1)[0])
    return isinstance(module, nn.Embedding)


def time_loop(fn, batch, min_time):
    """Samples/s per wall second and per process CPU second over >= min_time s and >= 2 iterations."""
    w0, c0, it = time.perf_counter(), time.process_time(), 0
    while True:
        fn()
        it += 1
        wall = time.perf_counter() - w0
        if wall >= min_time and it >= 2:
            break
    cpu = time.process_time() - c0
    return it * batch / wall, it * batch / max(cpu, 1e-9)


class TorchRunner:
    def __init__(self):
        self.cases = {}

    def run(self, config, batch, threads, mode, min_time):
        torch.set_num_threads(threads)
        key = (config, batch, "infer" if mode.startswith("infer") else mode)
        fresh = key not in self.cases
        if fresh:
            for k in [k for k in self.cases if k[0] != config]:
                del self.cases[k]
            self.cases[key] = TorchCase(config, batch)
        case = self.cases[key]
        # infer_bf16 / infer_int8 are mtrank weight formats; PyTorch runs its f32 inference.
        fn = case.infer if mode.startswith("infer") else case.train_step
        if fresh:
            time_loop(fn, batch, min(0.2, min_time))
        else:
            fn()
        return time_loop(fn, batch, min_time)


class MtrankRunner:
    def __init__(self, exe):
        self.proc = subprocess.Popen([exe, "--stdin"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1)

    def run(self, config, batch, threads, mode, min_time):
        self.proc.stdin.write(f"{config} {batch} {threads} {mode} {min_time} 1\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("compare_torch: bench_models --stdin exited unexpectedly")
        j = json.loads(line)
        if "error" in j:
            raise SystemExit(f"compare_torch: bench_models: {j['error']}")
        return j

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


# ----------------------------------------------------------------------------------------------


def torch_gemm_check():
    torch.set_num_threads(1)
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best_cpu = best_wall = 0.0
    for _ in range(3):
        w0, c0 = time.perf_counter(), time.process_time()
        a @ b
        best_wall = max(best_wall, 2 * n ** 3 / (time.perf_counter() - w0) / 1e9)
        best_cpu = max(best_cpu, 2 * n ** 3 / max(time.process_time() - c0, 1e-9) / 1e9)
    return best_wall, best_cpu


def grid(quick):
    cells = []  # (config, batch, threads, mode)
    configs = ["mmoe", "ple", "mmoe_full", "din_L50", "din_L200"]
    for c in configs:
        if quick:
            if c == "din_L200":
                continue
            cells += [(c, 1, 1, "infer"), (c, 256, 1, "infer"), (c, 256, 1, "train")]
            if c == "mmoe":
                cells += [(c, 1024, 1, "infer"), (c, 1024, 2, "infer")]
        else:
            cells += [(c, b, 1, "infer") for b in (1, 32, 256, 1024)]
            if c in ("mmoe", "ple"):
                cells += [(c, b, 1, m) for m in ("infer_bf16", "infer_int8") for b in (1, 256)]
            cells += [(c, 1024, 2, "infer")]
            cells += [(c, b, 1, "train") for b in (256, 1024)]
            if c in ("mmoe", "ple", "mmoe_full"):  # built models: data-parallel Trainer steps
                cells += [(c, 1024, 2, "train")]
    return cells


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench-dir", default="build/bench/bench", help="directory with bench_models and bench_machine_limits")
    ap.add_argument("--quick", action="store_true", help="a smaller grid, 3 repetitions")
    ap.add_argument("--reps", type=int, default=None, help="interleaved repetitions per cell (default 3)")
    ap.add_argument("--min-time", type=float, default=None, help="seconds per measurement (default 0.2)")
    ap.add_argument("--cells", default="", help="only cells whose 'config/batch/threads/mode' contains this text")
    ap.add_argument("--json", default="", help="write every measurement to this JSON file")
    args = ap.parse_args()
    reps = args.reps or 3
    min_time = args.min_time or 0.2
    exe = os.path.join(args.bench_dir, "bench_models")
    limits_exe = os.path.join(args.bench_dir, "bench_machine_limits")
    for p in (exe, limits_exe):
        if not os.access(p, os.X_OK):
            raise SystemExit(f"compare_torch: {p} not found (build with -DMTRANK_BUILD_BENCH=ON, see scripts/bench.sh)")

    wall, cpu = torch_gemm_check()
    print(f"torch {torch.__version__}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}: "
          f"2048^3 fp32 matmul, 1 thread: {cpu:.1f} GFLOP/s per CPU second ({wall:.1f} per wall second)")
    if cpu < TORCH_GEMM_FLOOR:
        print(f"compare_torch: refusing to report: torch's fp32 matmul runs at {cpu:.1f} GFLOP/s < {TORCH_GEMM_FLOOR:.0f} "
              "on one thread, so torch is not using a fast BLAS. Install OpenBLAS (apt-get install -y "
              "libopenblas0-openmp) and check OPENBLAS_CORETYPE for this CPU.", file=sys.stderr)
        return 3

    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    limits = {}
    for t in (1, 2):
        out = subprocess.run([limits_exe, "--json", "--reps", "3", "--threads", str(t)], check=True,
                             capture_output=True, text=True).stdout
        limits[t] = json.loads(out)
    l1 = limits[1]
    print("machine limits (best of 3; per wall second / per CPU second):")
    for key, what, unit in (("fma_avx512_gflops", "fp32 FMA peak AVX-512, 1 thread", "GFLOP/s"),
                            ("fma_avx2_gflops", "fp32 FMA peak AVX2, 1 thread", "GFLOP/s"),
                            ("gemm_gflops", "mtrank sgemm 2048^3, 1 thread", "GFLOP/s"),
                            ("triad_gbs", "STREAM triad, 1 thread", "GB/s"),
                            ("read_6mib_gbs", "read bandwidth, 6 MiB buffer (L3)", "GB/s"),
                            ("gather_rows_per_s", "random 128-B rows, 1M-row table", "rows/s")):
        if key in l1:
            print(f"  {what:36s} {l1[key]:12.4g} / {l1[key + '_cpu']:12.4g} {unit}")
    print(f"  {'fp32 FMA peak AVX-512, 2 threads':36s} {limits[2]['fma_avx512_gflops']:12.4g} / "
          f"{limits[2]['fma_avx512_gflops_cpu']:12.4g} GFLOP/s")
    print(f"  {'STREAM triad, 2 threads':36s} {limits[2]['triad_gbs']:12.4g} GB/s")
    peak_key = "fma_avx512_gflops" if "fma_avx512_gflops" in l1 else "fma_avx2_gflops"

    cells = [c for c in grid(args.quick) if args.cells in "/".join(map(str, c))]
    mt, tr = MtrankRunner(exe), TorchRunner()
    results = {c: {"mtrank": [], "torch": [], "mtrank_cpu": [], "torch_cpu": [], "gflops_per_sample": 0.0} for c in cells}
    med = statistics.median
    peak_cpu = l1[peak_key + "_cpu"]
    rows, scaling = [], []

    def summarize(cell):
        r = results[cell]
        ratio_w = med([a / b for a, b in zip(r["mtrank"], r["torch"])])
        ratio_c = med([a / b for a, b in zip(r["mtrank_cpu"], r["torch_cpu"])])
        gf = med(r["mtrank_cpu"]) * r["gflops_per_sample"]
        return {"config": cell[0], "batch": cell[1], "threads": cell[2], "mode": cell[3],
                "mtrank_wall": med(r["mtrank"]), "torch_wall": med(r["torch"]), "ratio_wall": ratio_w,
                "mtrank_cpu": med(r["mtrank_cpu"]), "torch_cpu": med(r["torch_cpu"]), "ratio_cpu": ratio_c,
                "mtrank_gflops_cpu": gf, "pct_peak": 100 * gf / (peak_cpu * cell[2]), "runs": r}

    def save():
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"torch": torch.__version__, "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
                           "torch_gemm_gflops": {"wall": wall, "cpu": cpu}, "limits": limits,
                           "load_before": load_before, "reps": reps, "min_time": min_time, "cells": rows,
                           "scaling": scaling}, f, indent=1)

    print(f"\n{reps} interleaved repetitions of {min_time} s per cell and side; samples/s are medians; "
          "ratio = median over repetitions of mtrank/PyTorch; GFLOP/s and % of peak from mtrank's CPU-time rate "
          "(peak = FMA peak per CPU second x threads)\n")
    print("| config | mode | batch | threads | mtrank /s (wall) | PyTorch /s (wall) | ratio (wall) | "
          "mtrank /s (CPU) | PyTorch /s (CPU) | ratio (CPU) | mtrank GFLOP/s | % FMA peak |")
    print("|" + " --- |" * 12, flush=True)
    t_start = time.time()
    # Group by configuration (each side keeps one configuration's models in memory); the rows
    # of a configuration are printed (and the JSON rewritten) as soon as it is done.
    configs = list(dict.fromkeys(c[0] for c in cells))
    for config in configs:
        ccells = [c for c in cells if c[0] == config]
        for r in range(reps):
            for cell in ccells:
                order = ("mtrank", "torch") if (r + ccells.index(cell)) % 2 == 0 else ("torch", "mtrank")
                for side in order:
                    if side == "mtrank":
                        j = mt.run(*cell, min_time)
                        results[cell]["mtrank"].append(j["samples_per_s"])
                        results[cell]["mtrank_cpu"].append(j["cpu_samples_per_s"])
                        results[cell]["gflops_per_sample"] = j["flops_per_sample"] / 1e9
                    else:
                        w, c = tr.run(*cell, min_time)
                        results[cell]["torch"].append(w)
                        results[cell]["torch_cpu"].append(c)
            print(f"  [{time.time() - t_start:6.1f} s] {config}: repetition {r + 1}/{reps} done", file=sys.stderr)
        for cell in ccells:
            row = summarize(cell)
            rows.append(row)
            print(f"| {cell[0]} | {cell[3]} | {cell[1]} | {cell[2]} | {row['mtrank_wall']:.0f} | {row['torch_wall']:.0f} | "
                  f"{row['ratio_wall']:.2f} | {row['mtrank_cpu']:.0f} | {row['torch_cpu']:.0f} | {row['ratio_cpu']:.2f} | "
                  f"{row['mtrank_gflops_cpu']:.1f} | {row['pct_peak']:.0f}% |", flush=True)
        save()
    mt.close()
    with open("/proc/loadavg") as f:
        load_after = f.read().split()[:3]
    print(f"\nload average before: {' '.join(load_before)}, after: {' '.join(load_after)}")

    # Thread scaling (wall clock): 2 threads vs 1 thread at the same batch.
    for cell in cells:
        if cell[2] == 2:
            one = (cell[0], cell[1], 1, cell[3])
            if one in results:
                for side in ("mtrank", "torch"):
                    s2, s1 = med(results[cell][side]), med(results[one][side])
                    scaling.append({"config": cell[0], "mode": cell[3], "batch": cell[1], "side": side, "speedup": s2 / s1})
    if scaling:
        print("\nthread scaling, wall clock, 2 threads / 1 thread:")
        for s in scaling:
            print(f"  {s['config']:10s} {s['mode']:5s} batch {s['batch']:5d} {s['side']:7s} {s['speedup']:.2f}x")
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
