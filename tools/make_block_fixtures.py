#!/usr/bin/python3
"""Golden fixtures for the multi-task blocks, from an independent PyTorch implementation.

Writes tests/fixtures/blocks/<block>.bin (raw little-endian float32, tensors back to back) and
tests/fixtures/blocks/manifest.json ({block: {config, file, tensors: {key: {offset, shape}}}},
offsets in floats). Keys:
  param:<name>     parameter values (PyTorch state_dict names = mtrank arena names)
  input:<name>     inputs;  output:<k> outputs;  r:<k> the fixed weights of the loss
  grad:<name>      d loss / d parameter;  grad_input:<name>  d loss / d input
with loss = sum_k sum(output_k * r_k) (+ l0_weight * L0 penalty for SNR).

Every value is drawn in float32, then the reference is computed in float64 from those float32
values, so the fixtures hold the exact answer (rounded once) for the float32 inputs.

Run with Debian's torch:  /usr/bin/python3 tools/make_block_fixtures.py
CI uses the committed files and never needs PyTorch.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "blocks")
torch.set_default_dtype(torch.float64)


def f32(t):
    """Round to float32 and back to float64 (every stored value is exactly representable)."""
    return t.to(torch.float32).to(torch.float64)


def randn(*shape, scale=1.0):
    return f32(torch.randn(*shape) * scale)


def round_params(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(f32(p))


class Mlp(nn.Module):
    """mtrank nn::Mlp with activate_last = true: Linear -> act for every layer."""

    def __init__(self, in_f, layers, act="relu"):
        super().__init__()
        self.layers = nn.ModuleList()
        for w in layers:
            self.layers.append(nn.Linear(in_f, w))
            in_f = w
        self.act = {"relu": torch.relu, "tanh": torch.tanh}[act]

    def forward(self, x):
        for lin in self.layers:
            x = self.act(lin(x))
        return x


class MMoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.experts = nn.ModuleList([Mlp(cfg["in"], cfg["expert_layers"]) for _ in range(cfg["num_experts"])])
        self.gates = nn.ModuleList([nn.Linear(cfg["in"], cfg["num_experts"]) for _ in range(cfg["num_tasks"])])

    def forward(self, x):
        f = torch.stack([e(x) for e in self.experts], dim=1)  # [B, E, h]
        outs = []
        for gate in self.gates:
            g = torch.softmax(gate(x) / self.cfg["temperature"], dim=-1)
            outs.append((g.unsqueeze(-1) * f).sum(1))
        return outs


class CGC(nn.Module):
    def __init__(self, in_f, K, nt, ns, layers, shared_gate):
        super().__init__()
        self.K, self.nt, self.ns = K, nt, ns
        self.task_experts = nn.ModuleList([nn.ModuleList([Mlp(in_f, layers) for _ in range(nt)]) for _ in range(K)])
        self.shared_experts = nn.ModuleList([Mlp(in_f, layers) for _ in range(ns)])
        self.task_gates = nn.ModuleList([nn.Linear(in_f, nt + ns) for _ in range(K)])
        self.shared_gate = nn.Linear(in_f, K * nt + ns) if shared_gate else None

    def forward(self, task_in, shared_in):
        shared = [e(shared_in) for e in self.shared_experts]
        task = [[e(task_in[k]) for e in self.task_experts[k]] for k in range(self.K)]
        outs = []
        for k in range(self.K):
            f = torch.stack(task[k] + shared, dim=1)
            g = torch.softmax(self.task_gates[k](task_in[k]), dim=-1)
            outs.append((g.unsqueeze(-1) * f).sum(1))
        shared_out = None
        if self.shared_gate is not None:
            f = torch.stack([e for t in task for e in t] + shared, dim=1)
            g = torch.softmax(self.shared_gate(shared_in), dim=-1)
            shared_out = (g.unsqueeze(-1) * f).sum(1)
        return outs, shared_out


class PLE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.levels = nn.ModuleList()
        width = cfg["in"]
        for l, lv in enumerate(cfg["levels"]):
            last = l + 1 == len(cfg["levels"])
            self.levels.append(CGC(width, cfg["num_tasks"], lv["num_task_experts"], lv["num_shared_experts"],
                                   lv["layers"], not last))
            width = lv["layers"][-1]

    def forward(self, x):
        task_in, shared_in = [x] * self.cfg["num_tasks"], x
        for level in self.levels:
            task_in, shared_in = level(task_in, shared_in)
        return task_in


class Route(nn.Module):
    def __init__(self, n_low, n_up, w_low, w_up):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.zeros(n_up, n_low))
        self.transforms = nn.ModuleList(
            [nn.ModuleList([nn.Linear(w_low, w_up, bias=False) for _ in range(n_low)]) for _ in range(n_up)])


class SnrTrans(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.subnets = nn.ModuleList([
            nn.ModuleList([Mlp(cfg["in"], cfg["lower_layers"]) for _ in range(cfg["num_lower"])]),
            nn.ModuleList([Mlp(cfg["route_width"], cfg["upper_layers"]) for _ in range(cfg["num_upper"])]),
        ])
        self.routes = nn.ModuleList(
            [Route(cfg["num_lower"], cfg["num_upper"], cfg["lower_layers"][-1], cfg["route_width"])])

    def codes(self, u=None):
        c = self.cfg
        la = self.routes[0].log_alpha
        if u is None:
            s = torch.sigmoid(la)
        else:
            s = torch.sigmoid((torch.log(u) - torch.log(1 - u) + la) / c["beta"])
        return torch.clamp(s * (c["zeta"] - c["gamma"]) + c["gamma"], 0.0, 1.0)

    def penalty(self):
        c = self.cfg
        return torch.sigmoid(self.routes[0].log_alpha - c["beta"] * math.log(-c["gamma"] / c["zeta"])).sum()

    def forward(self, x, u=None):
        z = self.codes(u)
        low = [s(x) for s in self.subnets[0]]
        outs = []
        for j, sub in enumerate(self.subnets[1]):
            v = sum(z[j, i] * self.routes[0].transforms[j][i](low[i]) for i in range(len(low)))
            outs.append(sub(v))
        return outs


class EpNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        gin = cfg["domain_in"] + sum(cfg["slot_widths"])
        self.gate = nn.Module()
        self.gate.layers = nn.ModuleList([nn.Linear(gin, cfg["hidden"]), nn.Linear(cfg["hidden"], len(cfg["slot_widths"]))])

    def forward(self, domain, emb):
        gin = torch.cat([domain, emb.detach()], dim=1)  # stop_gradient(E)
        delta = self.cfg["gamma"] * torch.sigmoid(self.gate.layers[1](torch.relu(self.gate.layers[0](gin))))
        widths = torch.tensor(self.cfg["slot_widths"])
        return [delta.repeat_interleave(widths, dim=1) * emb]


def co_action(cfg, p, x, lengths):
    """CAN micro-MLP, reshape order as documented in include/mtrank/blocks/co_action.hpp."""
    B, L, d = x.shape
    outs = []
    for c in range(cfg["orders"]):
        h = x ** (c + 1)  # [B, L, d]
        off = 0
        layer_outs = []
        w_in = d
        for l, w_out in enumerate(cfg["layers"]):
            W = p[:, off:off + w_in * w_out].reshape(B, w_in, w_out)
            off += w_in * w_out
            b = p[:, off:off + w_out].reshape(B, 1, w_out)
            off += w_out
            h = torch.bmm(h, W) + b
            if l + 1 < len(cfg["layers"]):
                h = torch.tanh(h)
            layer_outs.append(h)
            w_in = w_out
        outs.append(torch.cat(layer_outs, dim=2))
    out = torch.cat(outs, dim=2)  # [B, L, C * sum(layers)]
    mask = (torch.arange(L).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).to(out.dtype)
    return [(out * mask.unsqueeze(-1)).sum(1)]


class Writer:
    def __init__(self):
        self.manifest = {}

    def block(self, name, config, params, inputs, outputs, rs, grads, grad_inputs):
        tensors, chunks, off = {}, [], 0

        def put(key, t):
            nonlocal off
            a = t.detach().to(torch.float32).contiguous().numpy().astype("<f4")
            tensors[key] = {"offset": off, "shape": list(a.shape)}
            chunks.append(a.reshape(-1))
            off += a.size

        for n, t in params.items():
            put("param:" + n, t)
        for n, t in inputs.items():
            put("input:" + n, t)
        for k, t in enumerate(outputs):
            put("output:%d" % k, t)
        for k, t in enumerate(rs):
            put("r:%d" % k, t)
        for n, t in grads.items():
            put("grad:" + n, t)
        for n, t in grad_inputs.items():
            put("grad_input:" + n, t)
        fname = name + ".bin"
        np.concatenate(chunks).tofile(os.path.join(OUT, fname))
        self.manifest[name] = {"config": config, "file": fname, "tensors": tensors}

    def save(self):
        with open(os.path.join(OUT, "manifest.json"), "w") as f:
            json.dump(self.manifest, f, indent=1, sort_keys=True)
            f.write("\n")


def run(writer, name, module, config, inputs, forward, extra_loss=None):
    """loss = sum_k sum(out_k * r_k) (+ extra_loss()); records everything the C++ test needs."""
    round_params(module)
    ins = {n: t.clone().requires_grad_(True) for n, t in inputs.items()}
    outs = forward(ins)
    rs = [randn(*o.shape) for o in outs]
    loss = sum((o * r).sum() for o, r in zip(outs, rs))
    if extra_loss is not None:
        loss = loss + extra_loss()
    module.zero_grad()
    loss.backward()
    params = dict(module.named_parameters())
    grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in params.items()}
    grad_inputs = {n: t.grad for n, t in ins.items() if t.grad is not None}
    writer.block(name, config, {n: p for n, p in params.items()}, inputs, outs, rs, grads, grad_inputs)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(20240531)
    w = Writer()
    B = 5

    cfg = {"in": 6, "num_experts": 3, "num_tasks": 2, "expert_layers": [8, 4], "temperature": 1.0}
    m = MMoE(cfg)
    run(w, "mmoe", m, cfg, {"x": randn(B, 6)}, lambda i: m(i["x"]))

    cfg = {"in": 6, "num_tasks": 2,
           "levels": [{"num_task_experts": 2, "num_shared_experts": 1, "layers": [5]},
                      {"num_task_experts": 1, "num_shared_experts": 2, "layers": [4]}]}
    p = PLE(cfg)
    run(w, "ple", p, cfg, {"x": randn(B, 6)}, lambda i: p(i["x"]))

    base = {"in": 6, "num_lower": 3, "num_upper": 2, "lower_layers": [5], "upper_layers": [4], "route_width": 7,
            "beta": 2.0 / 3.0, "gamma": -0.1, "zeta": 1.1, "l0_weight": 0.05}
    for mode in ("inference", "training"):
        torch.manual_seed(7)
        s = SnrTrans(base)
        with torch.no_grad():
            # Spread log_alpha so that some codes clamp at 0 or 1 and others are interior.
            s.routes[0].log_alpha.copy_(f32(torch.tensor([[3.0, -2.5, 0.4], [-0.3, 1.2, 6.0]])))
        cfg = dict(base, mode=mode)
        inputs = {"x": randn(B, 6)}
        u = None
        if mode == "training":
            u = f32(torch.tensor([[0.9, 0.3, 0.6], [0.45, 0.2, 0.7]]))
            inputs["noise"] = u
        run(w, "snr_trans_" + mode, s, cfg, inputs, lambda i, s=s, u=u: s(i["x"], u),
            extra_loss=lambda s=s: base["l0_weight"] * s.penalty())
        w.manifest["snr_trans_" + mode]["config"]["codes"] = s.codes(u).detach().reshape(-1).tolist()

    cfg = {"domain_in": 3, "slot_widths": [2, 4, 3], "hidden": 8, "gamma": 2.0}
    e = EpNet(cfg)
    run(w, "epnet", e, cfg, {"domain": randn(B, 3), "emb": randn(B, 9)}, lambda i: e(i["domain"], i["emb"]))

    cfg = {"in": 4, "layers": [4, 4], "orders": 2, "seq_len": 3, "lengths": [3, 1, 2, 0, 3]}
    holder = nn.Module()  # no parameters: P is an input (its own embedding table upstream)
    P = 4 * 4 + 4 + 4 * 4 + 4
    run(w, "co_action", holder, cfg, {"p": randn(B, P, scale=0.5), "x": randn(B, 3, 4, scale=0.8)},
        lambda i: co_action(cfg, i["p"], i["x"], cfg["lengths"]))

    w.save()
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("wrote %d blocks, %d bytes in %s" % (len(w.manifest), total, os.path.normpath(OUT)))


if __name__ == "__main__":
    sys.exit(main())
