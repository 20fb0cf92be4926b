#!/usr/bin/python3
"""Shared pieces of the whole-model PyTorch references (make_multi_domain_fixture.py,
make_mm_fixture.py), written from /work/shared/models.md and the config semantics in
docs/models.md and docs/training.md, not from the C++ sources.

Everything runs in float64 on values rounded to float32 (the fixture stores float32), so the
expected values are exact up to float64 rounding and mtrank's float32 error is what the C++
test measures.

Fixture layout (one .safetensors per configuration):
  <param>             weights under mtrank's parameter names (PyTorch state_dict style)
  input.sparse        I64 [B, num_sparse] raw ids (hash = false: the id is the table row)
  input.dense         F32 [B, num_dense]
  input.scene         I64 [B] scene ids (multi_domain only)
  input.seq.<name>.ids / .offsets   I64 sequence ids and their B + 1 offsets
  input.noise.<r>     F32 [n_upper, n_lower] hard-concrete noise u of route r (training only)
  input.r             F32 [B, K] weights of the loss sum(out * r)
  expected.out        F32 [B, K]
  grad.<param>        F32 d loss / d param (dense, embedding tables included)
  metadata: "config" (the JSON config the C++ test builds the model from), "context"
            ("inference" or "training"), "source", "torch".
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_torch import save_file  # noqa: E402

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models")


def f32(t):
    """float64 tensor holding values exactly representable in float32."""
    return t.float().double()


class Params:
    """Named float64 leaf tensors (rounded to float32) in creation order."""

    def __init__(self, seed):
        self.gen = torch.Generator().manual_seed(seed)
        self.p = {}

    def randn(self, *shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=self.gen, dtype=torch.float64) * scale + shift

    def uniform(self, *shape, lo=0.0, hi=1.0):
        return torch.rand(*shape, generator=self.gen, dtype=torch.float64) * (hi - lo) + lo

    def add(self, name, value):
        assert name not in self.p, name
        t = f32(value).requires_grad_(True)
        self.p[name] = t
        return t

    def __getitem__(self, name):
        return self.p[name]

    def linear(self, prefix, fan_in, fan_out, bias=True):
        """PyTorch Linear layout: weight [out, in], bias [out]."""
        self.add(prefix + ".weight", self.randn(fan_out, fan_in, scale=1.0 / fan_in ** 0.5))
        if bias:
            self.add(prefix + ".bias", self.randn(fan_out, scale=0.1, shift=0.05))

    def mlp(self, prefix, fan_in, widths, activation="relu", activate_last=True):
        """nn::Mlp: layers.{i} Linear, acts.{i} (PReLU slope 'weight' per unit)."""
        for i, w in enumerate(widths):
            self.linear(f"{prefix}.layers.{i}", fan_in, w)
            activated = activate_last or i + 1 < len(widths)
            if activated and activation == "prelu":
                self.add(f"{prefix}.acts.{i}.weight", self.uniform(w, lo=0.1, hi=0.4))
            fan_in = w

    def gate_nu(self, prefix, fan_in, hidden, fan_out):
        self.linear(prefix + ".layers.0", fan_in, hidden or fan_in)
        self.linear(prefix + ".layers.1", hidden or fan_in, fan_out)


def act(name, x, slope=None):
    if name == "relu":
        return torch.relu(x)
    if name == "prelu":
        return torch.where(x > 0, x, slope * x)
    if name in ("identity", "none", "linear"):
        return x
    raise ValueError(name)


def linear(P, prefix, x):
    y = x @ P[prefix + ".weight"].T
    return y + P[prefix + ".bias"] if prefix + ".bias" in P.p else y


def mlp(P, prefix, x, n_layers, activation="relu", activate_last=True):
    for i in range(n_layers):
        x = linear(P, f"{prefix}.layers.{i}", x)
        if activate_last or i + 1 < n_layers:
            x = act(activation, x, P.p.get(f"{prefix}.acts.{i}.weight"))
    return x


def gate_nu(P, prefix, x, gamma):
    """PEPNet Gate NU: delta = gamma * sigmoid(W2 ReLU(W1 x + b1) + b2)."""
    h = torch.relu(linear(P, prefix + ".layers.0", x))
    return gamma * torch.sigmoid(linear(P, prefix + ".layers.1", h))


def hard_concrete(log_alpha, code, u=None):
    """SNR code z (Louizos et al.): training with noise u, inference deterministic."""
    beta, gamma, zeta = code["beta"], code["gamma"], code["zeta"]
    if u is None:
        s = torch.sigmoid(log_alpha)
    else:
        s = torch.sigmoid((torch.log(u) - torch.log(1 - u) + log_alpha) / beta)
    return torch.clamp(s * (zeta - gamma) + gamma, 0.0, 1.0)


def embed_features(P, schema, batch, pooling="mean", dot_interactions=False):
    """FeatureEmbedder: x = [sparse embeddings; pooled sequences; dense; dot products].
    Returns x and the list of (name, [B, d] tensor) embedding vectors (sparse then sequences)."""
    vecs = []
    for f, field in enumerate(schema["sparse"]):
        vecs.append((field["name"], P[f"embeddings.{field['name']}.weight"][batch["sparse"][:, f]]))
    for seq in schema.get("sequences", []):
        table = P[f"embeddings.{seq.get('table') or seq['name']}.weight"]
        ids, offs = batch["seq"][seq["name"]]
        rows = []
        for b in range(len(offs) - 1):
            a, e = int(offs[b]), int(offs[b + 1])
            a = max(a, e - seq["max_len"])  # the most recent max_len ids
            if e == a:
                rows.append(torch.zeros(table.shape[1], dtype=torch.float64))
            else:
                v = table[ids[a:e]].sum(0)
                rows.append(v / (e - a) if pooling == "mean" else v)
        vecs.append((seq["name"], torch.stack(rows)))
    parts = [v for _, v in vecs] + [batch["dense"]]
    if dot_interactions:
        for i in range(len(vecs)):
            for j in range(i + 1, len(vecs)):
                if vecs[i][1].shape[1] == vecs[j][1].shape[1]:
                    parts.append((vecs[i][1] * vecs[j][1]).sum(1, keepdim=True))
    return torch.cat(parts, dim=1), vecs


def sequence_vocab(schema, seq):
    """Rows of the table a sequence field reads (its own, or the shared sparse field's)."""
    if seq.get("table"):
        return next(f["vocab"] for f in schema["sparse"] if f["name"] == seq["table"])
    return seq["vocab"]


def make_sequences(gen, B, vocab, max_extra):
    """Random sequences of length 0 .. max_extra (at least one empty, one long)."""
    lengths = torch.randint(1, max_extra + 1, (B,), generator=gen)
    lengths[1] = 0
    lengths[2] = max_extra
    offs = torch.zeros(B + 1, dtype=torch.int64)
    offs[1:] = torch.cumsum(lengths, 0)
    ids = torch.randint(0, vocab, (int(offs[-1]),), generator=gen)
    return ids, offs


def write_fixture(filename, P, batch, r, out, config, context, noise=None, source=None):
    (out * r).sum().backward()
    tensors = {name: p.detach().float() for name, p in P.p.items()}
    for name, p in P.p.items():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        tensors["grad." + name] = g.float()
    tensors["input.sparse"] = batch["sparse"].to(torch.int64)
    tensors["input.dense"] = batch["dense"].float()
    if "scene" in batch:
        tensors["input.scene"] = batch["scene"].to(torch.int64)
    for name, (ids, offs) in batch.get("seq", {}).items():
        tensors[f"input.seq.{name}.ids"] = ids.to(torch.int64)
        tensors[f"input.seq.{name}.offsets"] = offs.to(torch.int64)
    for i, u in enumerate(noise or []):
        tensors[f"input.noise.{i}"] = u.float()
    tensors["input.r"] = r.float()
    tensors["expected.out"] = out.detach().float()
    path = os.path.normpath(os.path.join(FIXTURE_DIR, filename))
    save_file(tensors, path, metadata={"source": source, "torch": torch.__version__, "context": context,
                                       "config": json.dumps(config, separators=(",", ":"))})
    print("wrote", path, os.path.getsize(path), "bytes")
