#!/usr/bin/python3
"""Writes tests/fixtures/models/multi_domain_*.safetensors: an independent PyTorch implementation
of mtrank's multi-domain model (type "multi_domain"; /work/shared/models.md "Slot-gate / EPNet",
"Embedding transform layer", "SNR routing", "Multi-domain model"; docs/models.md for the
seed-specific wiring), for the C++ test tests/models/test_multi_domain_torch.cpp.

The model, per row b of scene s = scene[b]:
  x      = [e_1 .. e_F (sparse fields, then pooled sequences) | rest = dense, dot products]
  se     = scene_embedding[s]
  E'_f   = A_{f,s} e_f + c_{f,s}                         embedding transform, per slot and scene
  delta  = GateNU([se; domain-field embeddings; sg(E')])  EPNet (one value per slot or per unit)
  O      = delta (.) E'
  z      = [O | rest]
  stage-0 SNR sub-network j:  u_j = Mlp_j(z) (.) GateNU_j([se; sg(O)])
  routes: v_j = sum_i c_ji W_ji u_i (Trans) or sum_i c_ji u_i (Aver), c = hard-concrete codes
  task k reads the last-stage sub-network task_subnet[k]: rep_k
  tower (s, k): h <- act(W h + b) (.) GateNU_kl([prior embeddings; sg(O)]) per hidden layer l,
                out[b, k] = w h + b
Only the row's scene's towers run (and receive gradient).

Documented seed choices followed here (docs/models.md "Deviations and open points"), which the
papers leave open or do differently:
  * "slot-gate into the experts": each stage-0 SNR sub-network output is scaled by its own
    Gate NU over [scene embedding; sg(O)] (PEPNet's PPNet mechanism applied to the experts).
  * PPNet gates are per task (shared by the task's S towers), as in PEPNet, not per tower.
  * The embedding transform is applied per slot, not to the concatenated embedding.
  * The scene embedding is the domain-side EPNet input (with the optional domain_fields).
  * SNR code defaults: log_alpha is given explicitly here (init does not matter for parity).

Two fixtures:
  multi_domain.safetensors            inference context (deterministic SNR codes, z = clamp(
                                      sigmoid(log_alpha)(zeta - gamma) + gamma)); SNR-Trans, 3
                                      scenes, slot-wise EPNet with a domain field, transform
                                      with bias, default PPNet priors, a sequence sharing the
                                      item table; one route code clamped at 1 and one at 0.
  multi_domain_train_aver.safetensors training context with the hard-concrete noise u given
                                      (input.noise.<r>, passed to the C++ net through
                                      SnrBackbone::Workspace::fixed_noise); SNR-Aver with 3
                                      stages and task_subnet [1, 0], unit-wise EPNet, transform
                                      to out_dim 3 without bias, explicit PPNet prior field,
                                      two PReLU tower layers, sum pooling, dot interactions.
  multi_domain_wiring_experts_towers.safetensors
                                      inference; no transform, wiring.features off (z holds E'; O
                                      is read only through sg by the expert gates and PPNet, so
                                      the EPNet gate gets no gradient, as documented).
  multi_domain_wiring_features.safetensors
                                      inference; wiring.features only (no expert gates, no
                                      PPNet), towers without hidden layers, SNR-Aver.
Run: /usr/bin/python3 tools/make_multi_domain_fixture.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model_fixture_torch import (Params, embed_features, f32, gate_nu, hard_concrete, linear,  # noqa: E402
                                 make_sequences, mlp, act, sequence_vocab, write_fixture)

CODE_DEFAULTS = {"beta": 2.0 / 3.0, "gamma": -0.1, "zeta": 1.1}


def build_and_run(config, seed, B, training, closed_routes=()):
    schema, m = config["schema"], config["model"]
    P = Params(seed)
    gen = P.gen
    S, K = schema["num_scenes"], len(schema["tasks"])
    sparse = schema["sparse"]
    seqs = schema.get("sequences", [])

    # ---- parameters, named as mtrank names them
    for f in sparse:
        P.add(f"embeddings.{f['name']}.weight", P.randn(f["vocab"], f["dim"], scale=0.6))
    for q in seqs:
        if not q.get("table"):
            P.add(f"embeddings.{q['name']}.weight", P.randn(q["vocab"], q["dim"], scale=0.6))
    sd = m["scene_dim"]
    P.add("scene_embedding.weight", P.randn(S, sd, scale=0.6))
    dims = {f["name"]: f["dim"] for f in sparse}
    slots = [(f["name"], f["dim"]) for f in sparse]
    for q in seqs:
        slots.append((q["name"], dims[q["table"]] if q.get("table") else q["dim"]))
    tr = m.get("embedding_transform", {})
    transform, tr_bias = tr.get("enabled", True), tr.get("bias", True)
    slot_out = [tr.get("out_dim", 0) or d if transform else d for _, d in slots]
    if transform:
        for (name, d), o in zip(slots, slot_out):
            # Near-identity maps plus noise (a pure random map would hide nothing either).
            eye = torch.zeros(S, o, d, dtype=torch.float64)
            for i in range(min(o, d)):
                eye[:, i, i] = 1.0
            P.add(f"transform.{name}.weight", eye + P.randn(S, o, d, scale=0.3))
            if tr_bias:
                P.add(f"transform.{name}.bias", P.randn(S, o, scale=0.1))
    E_width = sum(slot_out)
    sg = m.get("slot_gate", {})
    domain_fields = sg.get("domain_fields", [])
    unit_wise = sg.get("unit_wise", False)
    domain_in = sd + sum(dims[f] for f in domain_fields)
    wiring = {k: m.get("wiring", {}).get(k, True) for k in ("features", "experts", "towers")}
    if any(wiring.values()):  # EPNet exists when anything reads O
        P.gate_nu("epnet.gate", domain_in + E_width, sg.get("hidden", 0), E_width if unit_wise else len(slots))

    n_dense = len(schema.get("dense", []))
    vec_dims = [d for _, d in slots]
    n_dots = sum(1 for i in range(len(vec_dims)) for j in range(i + 1, len(vec_dims)) if vec_dims[i] == vec_dims[j]) \
        if m.get("dot_interactions", False) else 0
    rest = n_dense + n_dots
    z_width = E_width + rest
    eg = m.get("expert_gate", {})
    stages = m["stages"]
    widths = []  # output width of each stage's sub-networks
    for s_i, st in enumerate(stages):
        layers = st["subnet"]["layers"]
        fan_in = z_width if s_i == 0 else (st.get("in", 0) or widths[-1])
        for j in range(st["num_subnets"]):
            P.mlp(f"subnets.{s_i}.{j}", fan_in, layers)
            if s_i == 0 and wiring["experts"]:
                P.gate_nu(f"subnets.0.{j}.gate", sd + E_width, eg.get("hidden", 0), layers[-1])
        widths.append(layers[-1])
    kind = m.get("snr_kind", "trans")
    for r in range(len(stages) - 1):
        n_up, n_low = stages[r + 1]["num_subnets"], stages[r]["num_subnets"]
        la = P.randn(n_up, n_low, scale=0.6, shift=1.0)
        for (rr, j, i, v) in closed_routes:  # codes clamped at 0 or 1 by construction
            if rr == r:
                la[j, i] = v
        P.add(f"routes.{r}.log_alpha", la)
        if kind == "trans":
            in_up = stages[r + 1].get("in", 0) or widths[r]
            for j in range(n_up):
                for i in range(n_low):
                    P.linear(f"routes.{r}.transforms.{j}.{i}", widths[r], in_up, bias=False)
    task_subnet = m.get("task_subnet", list(range(K)))
    pp = m.get("ppnet", {})
    priors = pp.get("prior_fields") or [n for n in ("user_id", "item_id", "author") if n in dims]
    prior_w = sum(dims[n] for n in priors)
    tower = m["tower"]
    hidden, tact = tower["hidden"], tower.get("activation", "relu")
    for k in range(K if wiring["towers"] else 0):
        for l, w in enumerate(hidden):
            P.gate_nu(f"ppnet.gates.{k}.{l}", prior_w + E_width, pp.get("hidden", 0), w)
    for s in range(S):
        for k in range(K):
            fan_in = widths[-1]
            for l, w in enumerate(hidden):
                P.linear(f"towers.{s}.{k}.layers.{l}", fan_in, w)
                if tact == "prelu":
                    P.add(f"towers.{s}.{k}.acts.{l}.weight", P.uniform(w, lo=0.1, hi=0.4))
                fan_in = w
            P.linear(f"towers.{s}.{k}.layers.{len(hidden)}", fan_in, 1)

    # ---- batch: every scene present, rows of a scene not contiguous
    scene = torch.tensor([b % S for b in range(B)], dtype=torch.int64)
    scene = scene[torch.randperm(B, generator=gen)]
    batch = {
        "sparse": torch.stack([torch.randint(0, f["vocab"], (B,), generator=gen) for f in sparse], dim=1),
        "dense": f32(torch.randn(B, n_dense, generator=gen, dtype=torch.float64)),
        "scene": scene,
        "seq": {q["name"]: make_sequences(gen, B, sequence_vocab(schema, q), q["max_len"] + 2) for q in seqs},
    }
    noise = None
    if training:
        noise = [f32(P.uniform(stages[r + 1]["num_subnets"], stages[r]["num_subnets"], lo=0.15, hi=0.85))
                 for r in range(len(stages) - 1)]

    # ---- forward
    x, vecs = embed_features(P, schema, batch, m.get("sequence_pooling", "mean"), m.get("dot_interactions", False))
    emb = dict(vecs)
    se = P["scene_embedding.weight"][scene]
    Ep = []
    for (name, _), (vname, e) in zip(slots, vecs):
        assert name == vname
        if transform:
            y = torch.einsum("boi,bi->bo", P[f"transform.{name}.weight"][scene], e)
            if tr_bias:
                y = y + P[f"transform.{name}.bias"][scene]
            Ep.append(y)
        else:
            Ep.append(e)
    Ep = torch.cat(Ep, dim=1)
    if any(wiring.values()):
        gate_in = torch.cat([se] + [emb[f] for f in domain_fields] + [Ep.detach()], dim=1)
        delta = gate_nu(P, "epnet.gate", gate_in, sg.get("gamma", 2.0))
        if not unit_wise:
            delta = torch.repeat_interleave(delta, torch.tensor(slot_out), dim=1)
        O = delta * Ep
    z = torch.cat([O if wiring["features"] else Ep, x[:, sum(vec_dims):]], dim=1)  # [O or E' | rest]
    assert z.shape[1] == z_width
    expert_ctx = torch.cat([se, O.detach()], dim=1) if wiring["experts"] else None
    u = []
    for j in range(stages[0]["num_subnets"]):
        h = mlp(P, f"subnets.0.{j}", z, len(stages[0]["subnet"]["layers"]))
        u.append(h * gate_nu(P, f"subnets.0.{j}.gate", expert_ctx, eg.get("gamma", 2.0)) if wiring["experts"] else h)
    code = dict(CODE_DEFAULTS, **m.get("code", {}))
    for r in range(len(stages) - 1):
        c = hard_concrete(P[f"routes.{r}.log_alpha"], code, noise[r] if training else None)
        v_up = []
        for j in range(stages[r + 1]["num_subnets"]):
            v = 0
            for i in range(stages[r]["num_subnets"]):
                t = linear(P, f"routes.{r}.transforms.{j}.{i}", u[i]) if kind == "trans" else u[i]
                v = v + c[j, i] * t
            v_up.append(mlp(P, f"subnets.{r + 1}.{j}", v, len(stages[r + 1]["subnet"]["layers"])))
        u = v_up
    reps = [u[task_subnet[k]] for k in range(K)]
    if wiring["towers"]:
        prior_ctx = torch.cat([emb[n] for n in priors] + [O.detach()], dim=1)
        deltas = [[gate_nu(P, f"ppnet.gates.{k}.{l}", prior_ctx, pp.get("gamma", 2.0)) for l in range(len(hidden))]
                  for k in range(K)]
    out = torch.zeros(B, K, dtype=torch.float64)
    for s in range(S):
        rows = torch.nonzero(scene == s)[:, 0]
        for k in range(K):
            h = reps[k][rows]
            for l in range(len(hidden)):
                h = act(tact, linear(P, f"towers.{s}.{k}.layers.{l}", h), P.p.get(f"towers.{s}.{k}.acts.{l}.weight"))
                if wiring["towers"]:
                    h = h * deltas[k][l][rows]
            out = out.index_put((rows, torch.full_like(rows, k)), linear(P, f"towers.{s}.{k}.layers.{len(hidden)}", h)[:, 0])
    r = f32(torch.randn(B, K, generator=gen, dtype=torch.float64))
    return P, batch, r, out, noise


SCHEMA_A = {
    "sparse": [{"name": "user_id", "vocab": 7, "dim": 4}, {"name": "item_id", "vocab": 9, "dim": 4},
               {"name": "author", "vocab": 5, "dim": 3}, {"name": "device", "vocab": 3, "dim": 2}],
    "dense": ["watch_time", "age"],
    "sequences": [{"name": "click_seq", "table": "item_id", "max_len": 3}],
    "tasks": [{"name": "click"}, {"name": "dwell", "kind": "regression"}],
    "num_scenes": 3,
}
CONFIG_A = {
    "schema": SCHEMA_A,
    "model": {"type": "multi_domain", "scene_dim": 3,
              "embedding_transform": {"enabled": True, "out_dim": 0, "bias": True},
              "slot_gate": {"hidden": 5, "gamma": 2.0, "unit_wise": False, "domain_fields": ["device"]},
              "wiring": {"features": True, "experts": True, "towers": True},
              "expert_gate": {"hidden": 4, "gamma": 1.5},
              "ppnet": {"hidden": 6, "gamma": 2.0},
              "snr_kind": "trans",
              "stages": [{"num_subnets": 3, "subnet": {"layers": [6]}}, {"num_subnets": 2, "subnet": {"layers": [5]}}],
              "code": {"log_alpha_mean": 2.0},
              "tower": {"hidden": [4], "activation": "relu"}},
}
SCHEMA_B = {
    "sparse": [{"name": "user_id", "vocab": 6, "dim": 3}, {"name": "item_id", "vocab": 8, "dim": 3},
               {"name": "city", "vocab": 4, "dim": 2}],
    "dense": ["x0"],
    "sequences": [{"name": "tag_seq", "vocab": 5, "dim": 3, "max_len": 2}],
    "tasks": [{"name": "click"}, {"name": "like"}],
    "num_scenes": 2,
}
CONFIG_B = {
    "schema": SCHEMA_B,
    "model": {"type": "multi_domain", "scene_dim": 2, "sequence_pooling": "sum", "dot_interactions": True,
              "embedding_transform": {"out_dim": 3, "bias": False},
              "slot_gate": {"gamma": 1.8, "unit_wise": True},
              "expert_gate": {"gamma": 2.0},
              "ppnet": {"prior_fields": ["item_id"], "gamma": 2.5},
              "snr_kind": "aver",
              "stages": [{"num_subnets": 3, "subnet": {"layers": [5]}}, {"num_subnets": 2, "subnet": {"layers": [5]}},
                         {"num_subnets": 2, "subnet": {"layers": [4]}}],
              "task_subnet": [1, 0],
              "code": {"beta": 0.5, "gamma": -0.2, "zeta": 1.2},
              "tower": {"hidden": [4, 3], "activation": "prelu"}},
}
# The wiring ablations, in inference context.
CONFIG_C = {  # E' (no transform) feeds the backbone; O reaches only the expert gates and PPNet
    "schema": dict(SCHEMA_A, num_scenes=2),
    "model": {"type": "multi_domain", "scene_dim": 2,
              "embedding_transform": {"enabled": False},
              "wiring": {"features": False, "experts": True, "towers": True},
              "stages": [{"num_subnets": 2, "subnet": {"layers": [5]}}, {"num_subnets": 2, "subnet": {"layers": [4]}}],
              "tower": {"hidden": [3]}},
}
CONFIG_D = {  # O feeds the backbone only: no expert gates, no PPNet, towers without hidden layers
    "schema": dict(SCHEMA_B, num_scenes=3),
    "model": {"type": "multi_domain", "scene_dim": 3,
              "embedding_transform": {"out_dim": 2},
              "slot_gate": {"hidden": 3, "domain_fields": ["city"]},
              "wiring": {"features": True, "experts": False, "towers": False},
              "snr_kind": "aver",
              "stages": [{"num_subnets": 2, "subnet": {"layers": [4]}}, {"num_subnets": 2, "subnet": {"layers": [4]}}],
              "tower": {"hidden": []}},
}

if __name__ == "__main__":
    src = "tools/make_multi_domain_fixture.py"
    # Route 0: connection 1 -> 0 has log_alpha 3 (z clamped at 1), 2 -> 1 has -3 (z = 0, closed).
    P, batch, r, out, _ = build_and_run(CONFIG_A, 2024, 10, False, closed_routes=[(0, 0, 1, 3.0), (0, 1, 2, -3.0)])
    write_fixture("multi_domain.safetensors", P, batch, r, out, CONFIG_A, "inference", source=src)
    P, batch, r, out, noise = build_and_run(CONFIG_B, 73, 12, True)
    write_fixture("multi_domain_train_aver.safetensors", P, batch, r, out, CONFIG_B, "training", noise=noise, source=src)
    P, batch, r, out, _ = build_and_run(CONFIG_C, 5, 8, False)
    write_fixture("multi_domain_wiring_experts_towers.safetensors", P, batch, r, out, CONFIG_C, "inference", source=src)
    P, batch, r, out, _ = build_and_run(CONFIG_D, 6, 9, False)
    write_fixture("multi_domain_wiring_features.safetensors", P, batch, r, out, CONFIG_D, "inference", source=src)
