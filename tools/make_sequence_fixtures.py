#!/usr/bin/python3
"""Golden files for mtrank's sequence blocks, made with PyTorch (the independent implementation).

Run with Debian's python3-torch:  /usr/bin/python3 tools/make_sequence_fixtures.py
Writes tests/fixtures/sequence/<case>.bin (raw little-endian float32) and manifest.json.

Every case: seeded weights and inputs (padding included), rounded to float32 so that the C++
side loads exactly the values PyTorch used; the model runs in float64; the manifest records
outputs and the gradients of loss = sum(out * r) for fixed random r (r is stored too).
Names of weights are PyTorch state_dict names under the prefix the C++ test uses.
CI never runs this script; it only reads the files.
"""
import json
import os
import sys

import torch
import torch.nn as nn

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "sequence")


def f32(t):
    return t.detach().to(torch.float32).to(torch.float64)


def round_module(m):
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(f32(p))


def rnd(*shape, scale=1.0):
    return f32(torch.randn(*shape) * scale)


def time_bucket(gap, buckets, base=2.0):
    """Same as mtrank::nn::time_gap_bucket."""
    if gap == 0 or buckets <= 1:
        return 0
    k, p = 0, base
    while p <= gap:
        p *= base
        k += 1
    return min(buckets - 1, 1 + k)


class Case:
    def __init__(self, name):
        self.name, self.tensors, self.meta, self.blob = name, {}, {}, []
        self.offset = 0

    def add(self, key, t):
        a = t.detach().to(torch.float32).contiguous().reshape(-1)
        self.tensors[key] = {"offset": self.offset, "shape": list(t.shape)}
        self.blob.append(a)
        self.offset += a.numel()

    def params(self, prefix, module):
        for n, p in module.named_parameters():
            self.add("param:" + prefix + "." + n, p)
            self.add("grad:" + prefix + "." + n, p.grad if p.grad is not None else torch.zeros_like(p))

    def write(self, manifest):
        data = torch.cat(self.blob).numpy().astype("<f4")
        fname = self.name + ".bin"
        data.tofile(os.path.join(OUT, fname))
        manifest[self.name] = {"file": fname, "tensors": self.tensors, "meta": self.meta}


def mask_of(lengths, L):
    return torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]


class DinUnit(nn.Module):
    """DIN attention unit: layers[i] Linear, acts[i] PReLU, first Linear [h1, 4d]."""

    def __init__(self, d, hidden):
        super().__init__()
        widths = [4 * d] + hidden + [1]
        self.layers = nn.ModuleList(nn.Linear(widths[i], widths[i + 1]) for i in range(len(widths) - 1))
        self.acts = nn.ModuleList(nn.PReLU(h) for h in hidden)

    def forward(self, q, k, lengths, softmax, normalize):
        B, L, d = k.shape
        qe = q[:, None, :].expand(B, L, d)
        h = torch.cat([qe, k, qe - k, qe * k], dim=-1).reshape(B * L, 4 * d)  # PReLU channels = dim 1
        for lin, act in zip(self.layers[:-1], self.acts):
            h = act(lin(h))
        s = self.layers[-1](h).reshape(B, L)
        m = mask_of(lengths, L)
        if softmax:
            a = torch.softmax(s.masked_fill(~m, float("-inf")), dim=1)
            a = torch.nan_to_num(a, nan=0.0)
        else:
            a = s * m
        y = (a[:, :, None] * k).sum(1)
        if normalize:
            y = y / torch.tensor(lengths).clamp(min=1)[:, None]
        return y


def make_din(manifest, name, softmax, normalize):
    torch.manual_seed(1 if not softmax else 2)
    B, L, d, hidden = 4, 5, 4, [8, 4]
    lengths = [5, 2, 0, 3]
    unit = DinUnit(d, hidden)
    with torch.no_grad():
        for a in unit.acts:  # PReLU slopes away from the 0.25 default so they matter
            a.weight.copy_(torch.rand(a.weight.shape) * 0.5)
    round_module(unit)
    q = rnd(B, d).requires_grad_()
    k = rnd(B, L, d).requires_grad_()
    y = unit(q, k, lengths, softmax, normalize)
    r = rnd(*y.shape)
    (y * r).sum().backward()
    c = Case(name)
    c.meta = {"B": B, "L": L, "d": d, "hidden": hidden, "lengths": lengths, "softmax": softmax,
              "normalize_by_length": normalize}
    c.params("din", unit)
    c.add("input:query", q)
    c.add("input:keys", k)
    c.add("output:y", y)
    c.add("r:y", r)
    c.add("grad_input:query", q.grad)
    c.add("grad_input:keys", k.grad)
    c.write(manifest)


def make_gru(manifest):
    torch.manual_seed(3)
    B, L, I, H = 4, 6, 3, 5
    lengths = [6, 2, 4, 1]
    gru = nn.GRU(I, H, batch_first=True)
    round_module(gru)
    x = rnd(B, L, I).requires_grad_()
    packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    out, hn = gru(packed)
    states, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=L)
    last = hn[0]
    r1, r2 = rnd(*states.shape), rnd(*last.shape)
    ((states * r1).sum() + (last * r2).sum()).backward()
    c = Case("gru")
    c.meta = {"B": B, "L": L, "input": I, "hidden": H, "lengths": lengths}
    c.params("gru", gru)
    c.add("input:x", x)
    c.add("output:states", states)
    c.add("output:last", last)
    c.add("r:states", r1)
    c.add("r:last", r2)
    c.add("grad_input:x", x.grad)
    c.write(manifest)


class Encoder(nn.Module):
    """Learned positions + a stack of nn.TransformerEncoderLayer (names as nn.TransformerEncoder)."""

    def __init__(self, d, nhead, ff, layers, max_len):
        super().__init__()
        self.position_embedding = nn.Embedding(max_len, d)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, nhead, ff, dropout=0.0, batch_first=True) for _ in range(layers))

    def forward(self, x, lengths):
        B, L, d = x.shape
        h = x + self.position_embedding(torch.arange(L))[None]
        pad = ~mask_of(lengths, L)
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=pad)
        return h


def make_transformer(manifest):
    torch.manual_seed(4)
    B, L, d, nhead, ff, nl, max_len = 3, 6, 8, 2, 16, 2, 6
    lengths = [6, 3, 1]
    enc = Encoder(d, nhead, ff, nl, max_len)
    ta = nn.MultiheadAttention(d, nhead, batch_first=True)
    with torch.no_grad():
        for m in (enc, ta):
            for n, p in m.named_parameters():
                if n.endswith("bias") or "norm" in n:  # PyTorch inits these to 0/1; make them matter
                    p.add_(torch.randn(p.shape) * 0.1)
    round_module(enc)
    round_module(ta)
    enc.train()  # dropout is 0; train mode avoids the nested-tensor fast path
    ta.train()
    x = rnd(B, L, d).requires_grad_()
    cand = rnd(B, d).requires_grad_()
    h = enc(x, lengths)
    m = mask_of(lengths, L)
    h_masked = h * m[:, :, None]  # mtrank writes zeros at padding; compare valid rows
    y, _ = ta(cand[:, None, :], h, h, key_padding_mask=~m)
    y = y[:, 0, :]
    r1, r2 = rnd(*h.shape), rnd(*y.shape)
    ((h_masked * r1).sum() + (y * r2).sum()).backward()
    c = Case("transformer")
    c.meta = {"B": B, "L": L, "d": d, "nhead": nhead, "dim_feedforward": ff, "num_layers": nl,
              "max_len": max_len, "lengths": lengths}
    c.params("enc", enc)
    c.params("ta", ta)
    c.add("input:x", x)
    c.add("input:candidate", cand)
    c.add("output:encoded", h_masked)
    c.add("output:y", y)
    c.add("r:encoded", r1)
    c.add("r:y", r2)
    c.add("grad_input:x", x.grad)
    c.add("grad_input:candidate", cand.grad)
    c.write(manifest)


class Esu(nn.Module):
    def __init__(self, d, nhead, buckets, concat, time_dim):
        super().__init__()
        self.concat = concat
        self.time_embedding = nn.Embedding(buckets, time_dim if concat else d)
        D = d + time_dim if concat else d
        self.attn = nn.MultiheadAttention(D, nhead, batch_first=True)

    def forward(self, cand, beh, buckets, lengths):
        B, K, d = beh.shape
        t = self.time_embedding(buckets)
        if self.concat:
            keys = torch.cat([beh, t], dim=-1)
            q = torch.cat([cand, torch.zeros(B, t.shape[-1])], dim=-1)
        else:
            keys = beh + t
            q = cand
        y, _ = self.attn(q[:, None, :], keys, keys, key_padding_mask=~mask_of(lengths, K))
        return y[:, 0, :]


def make_esu(manifest, concat):
    torch.manual_seed(5 + int(concat))
    B, K, d, nhead, nb, tdim = 3, 4, 6, 2, 8, 2
    lengths = [4, 2, 1]
    gaps = [[0, 3, 100, 5000], [1, 7, 0, 0], [64, 0, 0, 0]]
    esu = Esu(d, nhead, nb, concat, tdim)
    with torch.no_grad():
        esu.time_embedding.weight.mul_(0.5)
        for n, p in esu.attn.named_parameters():
            if n.endswith("bias"):
                p.add_(torch.randn(p.shape) * 0.1)
    round_module(esu)
    buckets = torch.tensor([[time_bucket(g, nb) for g in row] for row in gaps])
    cand = rnd(B, d).requires_grad_()
    beh = rnd(B, K, d).requires_grad_()
    y = esu(cand, beh, buckets, lengths)
    r = rnd(*y.shape)
    (y * r).sum().backward()
    name = "esu_concat" if concat else "esu_add"
    c = Case(name)
    c.meta = {"B": B, "K": K, "d": d, "nhead": nhead, "time_buckets": nb, "time_dim": tdim, "concat": concat,
              "lengths": lengths, "gaps": [g for row in gaps for g in row]}
    c.params("esu", esu)
    c.add("input:candidate", cand)
    c.add("input:behaviours", beh)
    c.add("output:y", y)
    c.add("r:y", r)
    c.add("grad_input:candidate", cand.grad)
    c.add("grad_input:behaviours", beh.grad)
    c.write(manifest)


def main():
    os.makedirs(OUT, exist_ok=True)
    manifest = {}
    make_din(manifest, "din_raw", softmax=False, normalize=False)
    make_din(manifest, "din_softmax_norm", softmax=True, normalize=True)
    make_gru(manifest)
    make_transformer(manifest)
    make_esu(manifest, concat=False)
    make_esu(manifest, concat=True)
    doc = {"generator": "tools/make_sequence_fixtures.py", "torch": torch.__version__, "dtype": "float32 LE",
           "note": "weights/inputs rounded to float32, model run in float64, results stored as float32",
           "cases": manifest}
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    total = sum(os.path.getsize(os.path.join(OUT, c["file"])) for c in manifest.values())
    print(f"wrote {len(manifest)} cases, {total} bytes of tensors to {os.path.normpath(OUT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
