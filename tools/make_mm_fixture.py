#!/usr/bin/python3
"""Writes tests/fixtures/models/mm_*.safetensors: an independent PyTorch implementation of
mtrank's "MM" model (type "mm": SNR-Trans, one tower per base task, then a learned fusion head
over the task outputs; /work/shared/models.md "SNR routing", "Score fusion: model fusion";
docs/models.md "MM model" for the reading of the seed), for tests/models/test_mm_torch.cpp.

  x        = [sparse embeddings; pooled sequences; dense]          (FeatureEmbedder)
  rep_k    = SNR-Trans(x)_k: stage-0 Mlps on x, routes v_j = sum_i c_ji W_ji u_i, upper Mlps,
             task k reads last-stage sub-network task_subnet[k]; c = hard-concrete codes
  z_k      = tower_k(rep_k)                                        (base tasks, schema order)
  q_k      = sigmoid(z_k) for binary base tasks, z_k for regression ones
  "mlp":           s = Mlp_fusion([q; u])                           u = the user field's embedding
  "user_weights":  s = sum_k softplus(Mlp_fusion(u))_k q_k + c
  out[:, base tasks] = z, out[:, fusion.task] = s
  detach = true: the head reads q.detach() (the fused loss trains the head and u only).

Seed-specific choices followed here, as documented in docs/models.md (the seed only says "SNR
followed by a learned fusion network"): the head fuses probabilities q rather than logits, the
fused score is one more schema task (here in the middle of the task list, so the output column
mapping is exercised), and the user input u is the embedding columns of fusion.user_field.

Two fixtures:
  mm_mlp.safetensors           inference context (deterministic codes); mode "mlp" with a user
                               field that is not the first sparse field, detach = true, a binary
                               and a regression base task.
  mm_user_weights.safetensors  training context with the hard-concrete noise u given
                               (input.noise.<r>, passed through SnrBackbone::Workspace::fixed_noise);
                               mode "user_weights", detach = false (the fused loss reaches the
                               base towers through q), three SNR stages with task_subnet [0, 1, 1],
                               two-layer PReLU towers, a two-layer fusion Mlp.
Run: /usr/bin/python3 tools/make_mm_fixture.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model_fixture_torch import (Params, embed_features, f32, hard_concrete, linear, make_sequences,  # noqa: E402
                                 mlp, sequence_vocab, write_fixture)

CODE_DEFAULTS = {"beta": 2.0 / 3.0, "gamma": -0.1, "zeta": 1.1}


def build_and_run(config, seed, B, training):
    schema, m = config["schema"], config["model"]
    fusion = m["fusion"]
    P = Params(seed)
    gen = P.gen
    tasks = schema["tasks"]
    K = len(tasks)
    fused = next(k for k, t in enumerate(tasks) if t["name"] == fusion["task"])
    base = [k for k in range(K) if k != fused]
    Kb = len(base)
    sparse, seqs = schema["sparse"], schema.get("sequences", [])
    dims = {f["name"]: f["dim"] for f in sparse}

    for f in sparse:
        P.add(f"embeddings.{f['name']}.weight", P.randn(f["vocab"], f["dim"], scale=0.6))
    for q in seqs:
        if not q.get("table"):
            P.add(f"embeddings.{q['name']}.weight", P.randn(q["vocab"], q["dim"], scale=0.6))
    in_width = sum(dims.values()) + sum(dims[q["table"]] if q.get("table") else q["dim"] for q in seqs) \
        + len(schema.get("dense", []))
    stages = m["stages"]
    widths = []
    for s_i, st in enumerate(stages):
        fan_in = in_width if s_i == 0 else (st.get("in", 0) or widths[-1])
        for j in range(st["num_subnets"]):
            P.mlp(f"subnets.{s_i}.{j}", fan_in, st["subnet"]["layers"])
        widths.append(st["subnet"]["layers"][-1])
    for r in range(len(stages) - 1):
        n_up, n_low = stages[r + 1]["num_subnets"], stages[r]["num_subnets"]
        P.add(f"routes.{r}.log_alpha", P.randn(n_up, n_low, scale=0.6, shift=1.0))
        in_up = stages[r + 1].get("in", 0) or widths[r]
        for j in range(n_up):
            for i in range(n_low):
                P.linear(f"routes.{r}.transforms.{j}.{i}", widths[r], in_up, bias=False)
    task_subnet = m.get("task_subnet", list(range(Kb)))
    tower = m["tower"]
    hidden, tact = tower["hidden"], tower.get("activation", "relu")
    for j in range(Kb):
        P.mlp(f"towers.{j}", widths[-1], hidden + [1], activation=tact, activate_last=False)
    mode = fusion.get("mode", "mlp")
    user_field = fusion.get("user_field", "user_id" if "user_id" in dims else "")
    u_width = dims[user_field] if user_field else 0
    head = fusion.get("hidden", [16])
    if mode == "mlp":
        P.mlp("fusion", Kb + u_width, head + [1], activate_last=False)
    else:
        P.add("fusion.bias", P.randn(1, scale=0.3))
        P.mlp("fusion", u_width, head + [Kb], activate_last=False)

    batch = {
        "sparse": torch.stack([torch.randint(0, f["vocab"], (B,), generator=gen) for f in sparse], dim=1),
        "dense": f32(torch.randn(B, len(schema.get("dense", [])), generator=gen, dtype=torch.float64)),
        "seq": {q["name"]: make_sequences(gen, B, sequence_vocab(schema, q), q["max_len"] + 2) for q in seqs},
    }
    noise = None
    if training:
        noise = [f32(P.uniform(stages[r + 1]["num_subnets"], stages[r]["num_subnets"], lo=0.15, hi=0.85))
                 for r in range(len(stages) - 1)]

    x, vecs = embed_features(P, schema, batch, m.get("sequence_pooling", "mean"))
    code = dict(CODE_DEFAULTS, **m.get("code", {}))
    u = [mlp(P, f"subnets.0.{j}", x, len(stages[0]["subnet"]["layers"])) for j in range(stages[0]["num_subnets"])]
    for r in range(len(stages) - 1):
        c = hard_concrete(P[f"routes.{r}.log_alpha"], code, noise[r] if training else None)
        u = [mlp(P, f"subnets.{r + 1}.{j}",
                 sum(c[j, i] * linear(P, f"routes.{r}.transforms.{j}.{i}", u[i]) for i in range(len(u))),
                 len(stages[r + 1]["subnet"]["layers"]))
             for j in range(stages[r + 1]["num_subnets"])]
    z = torch.stack([mlp(P, f"towers.{j}", u[task_subnet[j]], len(hidden) + 1, tact, activate_last=False)[:, 0]
                     for j in range(Kb)], dim=1)
    q = torch.stack([torch.sigmoid(z[:, j]) if tasks[base[j]].get("kind", "binary") == "binary" else z[:, j]
                     for j in range(Kb)], dim=1)
    if fusion.get("detach", True):
        q = q.detach()
    user = dict(vecs)[user_field] if user_field else None
    if mode == "mlp":
        s = mlp(P, "fusion", torch.cat([q, user], dim=1) if user is not None else q, len(head) + 1,
                activate_last=False)[:, 0]
    else:
        w = torch.nn.functional.softplus(mlp(P, "fusion", user, len(head) + 1, activate_last=False))
        s = (w * q).sum(1) + P["fusion.bias"]
    cols = [None] * K
    for j, k in enumerate(base):
        cols[k] = z[:, j]
    cols[fused] = s
    out = torch.stack(cols, dim=1)
    r = f32(torch.randn(B, K, generator=gen, dtype=torch.float64))
    return P, batch, r, out, noise


CONFIG_MLP = {
    "schema": {
        "sparse": [{"name": "item_id", "vocab": 9, "dim": 4}, {"name": "user_id", "vocab": 7, "dim": 3},
                   {"name": "author", "vocab": 5, "dim": 2}],
        "dense": ["x0", "x1"],
        "sequences": [{"name": "click_seq", "table": "item_id", "max_len": 3}],
        "tasks": [{"name": "click"}, {"name": "fused", "kind": "regression"}, {"name": "dwell", "kind": "regression"}],
    },
    "model": {"type": "mm",
              "stages": [{"num_subnets": 3, "subnet": {"layers": [6]}}, {"num_subnets": 2, "subnet": {"layers": [5]}}],
              "tower": {"hidden": [4]},
              "fusion": {"task": "fused", "mode": "mlp", "hidden": [5], "user_field": "user_id", "detach": True}},
}
CONFIG_USER_WEIGHTS = {
    "schema": {
        "sparse": [{"name": "user_id", "vocab": 6, "dim": 3}, {"name": "item_id", "vocab": 8, "dim": 3}],
        "dense": ["x0"],
        "sequences": [{"name": "tag_seq", "vocab": 5, "dim": 2, "max_len": 2}],
        "tasks": [{"name": "fused", "kind": "regression"}, {"name": "click"}, {"name": "like"},
                  {"name": "dwell", "kind": "regression"}],
    },
    "model": {"type": "mm", "sequence_pooling": "sum",
              "stages": [{"num_subnets": 2, "subnet": {"layers": [5]}}, {"num_subnets": 3, "subnet": {"layers": [4]}},
                         {"num_subnets": 2, "subnet": {"layers": [4]}, "in": 3}],
              "task_subnet": [0, 1, 1],
              "code": {"beta": 0.5, "gamma": -0.2, "zeta": 1.2},
              "tower": {"hidden": [4, 3], "activation": "prelu"},
              "fusion": {"task": "fused", "mode": "user_weights", "hidden": [4, 3], "detach": False}},
}

if __name__ == "__main__":
    src = "tools/make_mm_fixture.py"
    P, batch, r, out, _ = build_and_run(CONFIG_MLP, 31, 9, False)
    write_fixture("mm_mlp.safetensors", P, batch, r, out, CONFIG_MLP, "inference", source=src)
    P, batch, r, out, noise = build_and_run(CONFIG_USER_WEIGHTS, 38, 10, True)
    write_fixture("mm_user_weights.safetensors", P, batch, r, out, CONFIG_USER_WEIGHTS, "training", noise=noise,
                  source=src)
