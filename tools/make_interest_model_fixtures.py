#!/usr/bin/python3
"""Writes tests/fixtures/models/{din,dmt,sim}.safetensors: whole interest models (models::build_model
types "din", "dmt", "sim") in an independent PyTorch implementation, for
tests/models/test_interest_models_torch.cpp.

Each file holds, like tools/make_esmm_fixture.py:
  * the model config (schema + model) as JSON in the metadata key "config": the C++ test builds
    the model from exactly this config;
  * every parameter and buffer under mtrank's name (the PyTorch modules below are laid out so that
    named_parameters() gives those names);
  * the batch: "input.sparse" [B, num_sparse] raw ids (I64), "input.dense" [B, num_dense],
    per sequence field "input.seq.<name>.{ids, offsets, times}" (offsets [B + 1], times in days);
  * "input.r" [B, K] and the expected outputs "expected.out" of forward() in a training context
    (every dropout is 0) and "grad.<param>" for loss = sum(out * r) (embedding tables: dense
    [vocab, dim] with zero rows where nothing was touched); "expected.out_inference" (DIN: Dice
    with running statistics) and "expected.out_serve" (DMT: serve() drops the bias network).
All values are rounded to float32 first; the computation runs in float64.

The math (docs: /work/shared/models.md, include/mtrank/models/interest_model.hpp and the block
headers), written per sample over the valid behaviours only, so no padding enters anything:
  x   = [E_f[id_f] for every sparse field; mean of the most recent max_len embeddings of every
        sequence field no unit reads (zeros when empty); dense]. Hashed fields map a raw id to
        row splitmix64(id) % vocab (data::hash_id), others use the id itself.
  q   = [E_f[candidate id] for the unit's query fields]; behaviour j = [E_f[id_j] for its fields];
        a unit keeps the most recent max_len behaviours (unit max_len, else the first field's).
  DIN (Zhou et al. 2018): s_j = Mlp([q; k_j; q - k_j; q * k_j]) (PReLU or Dice hidden units, a
        linear scoring layer), a_j = s_j or softmax_j s_j, p = sum_j a_j k_j (/ len if
        normalize_by_length). Dice: y = p s + (1 - p) alpha s, p = sigmoid((s - mean) /
        sqrt(var + 1e-8)); while training mean / biased var are over every valid behaviour of the
        batch, at inference the running statistics.
  DMT (Gu et al. 2020): per unit a TransformerEncoder (torch.nn.TransformerEncoderLayer,
        post-norm, ReLU, dropout 0) over the behaviours plus either a learned position embedding
        (index 0 = oldest kept behaviour) or a time-gap bucket embedding, then the candidate as
        the single query of a torch.nn.MultiheadAttention over the encoded sequence (target
        attention). Kind "gru": torch.nn.GRU states instead of the encoder. MMoE on
        [x; unit outputs]; the bias network's logit (one, shared by every task) is added to each
        task's logit in forward() and dropped by serve().
  SIM (Pi et al. 2020): GSU hard search = the most recent top_k behaviours whose category id
        equals the candidate's; soft search = the top_k behaviours by <q, k_j> (selection is not
        differentiable). Both keep the chronological order. ESU: torch.nn.MultiheadAttention of the
        candidate over the selected behaviours with a time-gap bucket embedding added ("add") or
        concatenated ("concat", the query then gets zeros in the time part).
  gap = round(times * time_scale) from the unit's first field; bucket(0) = 0, else
        min(buckets - 1, 1 + floor(log_base gap)).
Documented mtrank behaviours followed here (they differ from plain PyTorch / the papers):
  * a unit over an empty sequence (or a SIM search that retrieves nothing) outputs zeros, where
    nn.MultiheadAttention would give NaN (and out_proj.bias would otherwise leak in);
  * behaviours beyond max_len are dropped (most recent kept) before any attention;
  * the GSU selection is not differentiable: soft search gives no gradient through the scores.
Run: /usr/bin/python3 tools/make_interest_model_fixtures.py
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_torch import save_file  # noqa: E402

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models")
MASK64 = (1 << 64) - 1


def f32(t):
    return t.detach().float().double()


def hash_id(raw, vocab):
    """splitmix64 finaliser of the raw id, modulo vocab (the hashing documented in data/schema.hpp)."""
    z = ((raw & MASK64) + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    z ^= z >> 31
    return z % vocab


def time_bucket(gap, buckets, base):
    if gap == 0 or buckets <= 1:
        return 0
    k = 0
    while base ** (k + 1) <= gap:  # k = floor(log_base gap)
        k += 1
    return min(buckets - 1, 1 + k)


def gap_of(day, scale):
    return int(math.floor(float(day) * scale + 0.5))  # round half away from zero (gaps are >= 0)


# ---------------------------------------------------------------------------------------------
# Modules (names = mtrank's parameter names)

class Dice(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(width))
        self.register_buffer("running_mean", torch.zeros(width))
        self.register_buffer("running_var", torch.ones(width))

    def forward(self, s, batch_stats):
        if batch_stats:
            mean, var = s.mean(0), s.var(0, unbiased=False)
        else:
            mean, var = self.running_mean, self.running_var
        p = torch.sigmoid((s - mean) / torch.sqrt(var + 1e-8))
        return p * s + (1 - p) * self.alpha * s


class Mlp(nn.Module):
    """Linear layers; activation after each (after all but the last when activate_last is False)."""

    def __init__(self, dims, act="relu", activate_last=True):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(len(dims) - 1))
        self.act = act
        self.n_act = len(self.layers) if activate_last else len(self.layers) - 1
        if act == "prelu":
            self.acts = nn.ModuleList(nn.PReLU(dims[i + 1]) for i in range(self.n_act))
        elif act == "dice":
            self.acts = nn.ModuleList(Dice(dims[i + 1]) for i in range(self.n_act))

    def forward(self, x, batch_stats=True):
        for i, lin in enumerate(self.layers):
            x = lin(x)
            if i < self.n_act:
                if self.act == "relu":
                    x = torch.relu(x)
                elif self.act == "prelu":
                    x = self.acts[i](x)
                elif self.act == "dice":
                    x = self.acts[i](x, batch_stats)
                else:
                    raise ValueError(self.act)
        return x


def target_attention(mha, query, memory):
    """The candidate [d] as the single query over memory [n, d]; zeros when n == 0."""
    if memory.shape[0] == 0:
        return torch.zeros(query.shape[0])
    out, _ = mha(query[None, None, :], memory[None], memory[None], need_weights=False)
    return out[0, 0]


class DinUnit(nn.Module):
    def __init__(self, d, hidden, act, softmax, normalize):
        super().__init__()
        mlp = Mlp([4 * d] + hidden + [1], act, activate_last=False)
        self.layers, self.acts = mlp.layers, getattr(mlp, "acts", None)
        self.mlp = [mlp]  # not a submodule: its parameters live under layers / acts
        self.softmax, self.normalize = softmax, normalize

    def forward(self, q, keys, batch_stats):
        """q [B, d], keys: list of [n_b, d] -> [B, d]. Dice statistics span the whole batch."""
        rows = [torch.cat([q[b].expand_as(k), k, q[b] - k, q[b] * k], 1) for b, k in enumerate(keys)]
        scores = self.mlp[0](torch.cat(rows, 0), batch_stats)[:, 0]
        out, pos = [], 0
        for b, k in enumerate(keys):
            n = k.shape[0]
            s = scores[pos:pos + n]
            pos += n
            if n == 0:
                out.append(torch.zeros(q.shape[1]))
                continue
            a = torch.softmax(s, 0) if self.softmax else s
            y = (a[:, None] * k).sum(0)
            out.append(y / n if self.normalize else y)
        return torch.stack(out)


class Encoder(nn.Module):
    def __init__(self, d, heads, ff, layers, position, max_len, buckets, base):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, batch_first=True) for _ in range(layers))
        self.position, self.buckets, self.base = position, buckets, base
        if position == "learned":
            self.position_embedding = nn.Embedding(max_len, d)
        else:
            self.time_embedding = nn.Embedding(buckets, d)

    def forward(self, k, gaps):
        if self.position == "learned":
            k = k + self.position_embedding.weight[: k.shape[0]]
        else:
            k = k + self.time_embedding.weight[[time_bucket(g, self.buckets, self.base) for g in gaps]]
        h = k[None]
        for layer in self.layers:
            h = layer(h)
        return h[0]


class TransformerUnit(nn.Module):
    def __init__(self, d, heads, ff, layers, position, max_len, buckets=16, base=2.0):
        super().__init__()
        self.encoder = Encoder(d, heads, ff, layers, position, max_len, buckets, base)
        self.target = nn.MultiheadAttention(d, heads, batch_first=True)

    def forward(self, q, keys, gaps):
        return torch.stack([target_attention(self.target, q[b], self.encoder(k, gaps[b]) if k.shape[0] else k)
                            for b, k in enumerate(keys)])


class GruUnit(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.gru = nn.GRU(d, d, batch_first=True)
        self.target = nn.MultiheadAttention(d, heads, batch_first=True)

    def forward(self, q, keys):
        return torch.stack([target_attention(self.target, q[b], self.gru(k[None])[0][0] if k.shape[0] else k)
                            for b, k in enumerate(keys)])


class Esu(nn.Module):
    def __init__(self, d, heads, buckets, base, mode, time_dim):
        super().__init__()
        self.width = d if mode == "add" else d + time_dim
        self.time_embedding = nn.Embedding(buckets, d if mode == "add" else time_dim)
        self.attn = nn.MultiheadAttention(self.width, heads, batch_first=True)
        self.buckets, self.base, self.mode = buckets, base, mode

    def forward(self, cand, beh, gaps):
        t = self.time_embedding.weight[[time_bucket(g, self.buckets, self.base) for g in gaps]]
        if self.mode == "add":
            return target_attention(self.attn, cand, beh + t)
        q = torch.cat([cand, torch.zeros(self.width - cand.shape[0])])
        return target_attention(self.attn, q, torch.cat([beh, t], 1))


class SimUnit(nn.Module):
    def __init__(self, d, search, top_k, heads, buckets, base=2.0, mode="add", time_dim=0):
        super().__init__()
        self.esu = Esu(d, heads, buckets, base, mode, time_dim)
        self.search, self.top_k = search, top_k

    def select(self, q, k, cats, cand_cat):
        """Chronological positions of the retrieved behaviours."""
        n = k.shape[0]
        if self.search == "hard":
            match = [j for j in range(n) if cats[j] == cand_cat]
            return match[len(match) - min(len(match), self.top_k):]
        scores = (k @ q).detach()
        order = sorted(range(n), key=lambda j: (-float(scores[j]), -j))
        if n > self.top_k:  # the C++ side scores in float: keep the cut far from a tie
            assert float(scores[order[self.top_k - 1]] - scores[order[self.top_k]]) > 1e-3, "near tie; change the seed"
        return sorted(order[: self.top_k])

    def forward(self, q, keys, gaps, cats, cand_cats):
        out = []
        for b, k in enumerate(keys):
            sel = self.select(q[b], k, cats[b], cand_cats[b])
            out.append(self.esu(q[b], k[sel], [gaps[b][j] for j in sel]))
        return torch.stack(out)


# ---------------------------------------------------------------------------------------------
# The whole model

class InterestModel(nn.Module):
    def __init__(self, config, units, backbone, tower_hidden, tower_act, bias_hidden=None):
        super().__init__()
        s = config["schema"]
        self.schema, self.model_cfg = s, config["model"]
        self.sparse = {f["name"]: f for f in s["sparse"]}
        self.dense_names = [f["name"] for f in s["dense"]]
        self.seqs = {f["name"]: f for f in s["sequences"]}
        self.embeddings = nn.ModuleDict()
        for f in s["sparse"]:
            self.embeddings[f["name"]] = nn.Embedding(f["vocab"], f["dim"])
        for f in s["sequences"]:
            if not f.get("table"):
                self.embeddings[f["name"]] = nn.Embedding(f["vocab"], f["dim"])
        self.unit_cfg = self.model_cfg["sequences"]
        self.interest = nn.ModuleDict(units)
        self.external = {f for u in self.unit_cfg for f in u["fields"]}
        bias = self.model_cfg.get("bias_net")
        self.bias_fields = bias["fields"] if bias else []
        K = len(s["tasks"])
        width = sum(f["dim"] for f in s["sparse"] if f["name"] not in self.bias_fields)
        width += sum(self.seq_dim(f["name"]) for f in s["sequences"] if f["name"] not in self.external)
        width += sum(1 for n in self.dense_names if n not in self.bias_fields)
        width += sum(self.unit_width(u) for u in self.unit_cfg)
        self.backbone_kind = backbone[0]
        if backbone[0] == "shared_bottom":
            self.bottom = Mlp([width] + backbone[1])
            tower_in = backbone[1][-1]
        else:
            _, experts, layers = backbone
            self.experts = nn.ModuleList(Mlp([width] + layers) for _ in range(experts))
            self.gates = nn.ModuleList(nn.Linear(width, experts) for _ in range(K))
            tower_in = layers[-1]
        self.towers = nn.ModuleList(Mlp([tower_in] + tower_hidden + [1], tower_act, activate_last=False)
                                    for _ in range(K))
        if self.bias_fields:
            bw = sum(self.sparse[f]["dim"] if f in self.sparse else 1 for f in self.bias_fields)
            self.bias_net = Mlp([bw] + bias_hidden + [1], "relu", activate_last=False)

    # -- schema helpers
    def seq_table(self, name):
        f = self.seqs[name]
        if f.get("table"):
            t = self.sparse[f["table"]]
            return self.embeddings[f["table"]].weight, t["vocab"], t.get("hash", False)
        return self.embeddings[name].weight, f["vocab"], f.get("hash", False)

    def seq_dim(self, name):
        return self.seq_table(name)[0].shape[1]

    def unit_width(self, u):
        d = sum(self.seq_dim(f) for f in u["fields"])
        if u.get("time_mode") == "concat":
            d += u["time_dim"]
        return d

    @staticmethod
    def row(raw, vocab, hashed):
        if hashed:
            return hash_id(raw, vocab)
        assert 0 <= raw < vocab
        return raw

    def sparse_emb(self, name, raw_ids):
        f = self.sparse[name]
        return self.embeddings[name].weight[[self.row(int(i), f["vocab"], f.get("hash", False)) for i in raw_ids]]

    def forward(self, batch, batch_stats=True, with_bias=True):
        sparse, dense, seqs = batch["sparse"], batch["dense"], batch["seqs"]
        B = sparse.shape[0]
        names = [f["name"] for f in self.schema["sparse"]]
        emb = {n: self.sparse_emb(n, sparse[:, i]) for i, n in enumerate(names)}
        cols = [emb[n] for n in names if n not in self.bias_fields]
        for f in self.schema["sequences"]:
            if f["name"] in self.external:
                continue
            table, vocab, hashed = self.seq_table(f["name"])
            pooled = []
            for ids in seqs[f["name"]]["ids"]:
                ids = ids[len(ids) - min(len(ids), f["max_len"]):]
                pooled.append(table[[self.row(i, vocab, hashed) for i in ids]].mean(0) if ids
                              else torch.zeros(table.shape[1]))
            cols.append(torch.stack(pooled))
        for j, n in enumerate(self.dense_names):
            if n not in self.bias_fields:
                cols.append(dense[:, j:j + 1])
        for u in self.unit_cfg:
            unit = self.interest[u["name"]]
            first = self.seqs[u["fields"][0]]
            max_len = u.get("max_len", first["max_len"])
            keep = [min(len(ids), max_len) for ids in seqs[u["fields"][0]]["ids"]]
            keys = []
            for b in range(B):
                parts = []
                for fname in u["fields"]:
                    table, vocab, hashed = self.seq_table(fname)
                    ids = seqs[fname]["ids"][b]
                    parts.append(table[[self.row(i, vocab, hashed) for i in ids[len(ids) - keep[b]:]]])
                keys.append(torch.cat(parts, 1))
            q = torch.cat([emb[n] for n in u.get("query", [self.seqs[f]["table"] for f in u["fields"]])], 1)
            times = seqs[u["fields"][0]]["times"]
            if times is None:  # without times the gap is the recency rank (0 = most recent)
                gaps = [list(range(keep[b] - 1, -1, -1)) for b in range(B)]
            else:
                gaps = [[gap_of(t, u.get("time_scale", 24.0)) for t in times[b][len(times[b]) - keep[b]:]]
                        for b in range(B)]
            if isinstance(unit, DinUnit):
                cols.append(unit(q, keys, batch_stats))
            elif isinstance(unit, TransformerUnit):
                cols.append(unit(q, keys, gaps))
            elif isinstance(unit, GruUnit):
                cols.append(unit(q, keys))
            else:
                cat_ids = seqs[u["fields"][1]]["ids"]
                cats = [cat_ids[b][len(cat_ids[b]) - keep[b]:] for b in range(B)]
                cand = [int(c) for c in sparse[:, names.index(self.seqs[u["fields"][1]]["table"])]]
                cols.append(unit(q, keys, gaps, cats, cand))
        h = torch.cat(cols, 1)
        if self.backbone_kind == "shared_bottom":
            z = self.bottom(h)
            task_in = [z] * len(self.towers)
        else:
            f = torch.stack([e(h) for e in self.experts], 1)  # MMoE: [B, E, w]
            task_in = [(torch.softmax(g(h), 1)[:, :, None] * f).sum(1) for g in self.gates]
        y = torch.cat([t(x) for t, x in zip(self.towers, task_in)], 1)
        if not (self.bias_fields and with_bias):
            return y
        zcols = [emb[n] if n in emb else dense[:, self.dense_names.index(n):self.dense_names.index(n) + 1]
                 for n in self.bias_fields]
        return y + self.bias_net(torch.cat(zcols, 1))  # [B, 1] broadcast over the tasks


# ---------------------------------------------------------------------------------------------
# Fixtures

def randomize(model, gen):
    """Every parameter and buffer random and float32-exact (biases, norms and PReLU slopes
    included, so no gradient is structurally zero); running variances positive."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("embeddings.") or ".time_embedding." in name or ".position_embedding." in name:
                p.copy_(f32(torch.randn(p.shape, generator=gen) * 0.5))
            else:
                p.copy_(f32(p + 0.15 * torch.randn(p.shape, generator=gen)))
        for name, buf in model.named_buffers():
            if name.endswith("running_var"):
                buf.copy_(f32(0.5 + torch.rand(buf.shape, generator=gen)))
            else:
                buf.copy_(f32(0.3 * torch.randn(buf.shape, generator=gen)))


def seq_column(lists, days=None):
    return {"ids": lists, "times": days}


def write(name, config, model, batch, r, expected_extra):
    out = model(batch)
    (out * r).sum().backward()
    tensors = {}
    for n, p in model.named_parameters():
        tensors[n] = p.detach().float()
        tensors["grad." + n] = (p.grad if p.grad is not None else torch.zeros_like(p)).float()
    for n, buf in model.named_buffers():
        tensors[n] = buf.float()
    tensors["input.sparse"] = batch["sparse"]
    tensors["input.dense"] = batch["dense"].float()
    for sname, col in batch["seqs"].items():
        ids = [i for l in col["ids"] for i in l]
        offsets = [0]
        for l in col["ids"]:
            offsets.append(offsets[-1] + len(l))
        tensors[f"input.seq.{sname}.ids"] = torch.tensor(ids, dtype=torch.int64)
        tensors[f"input.seq.{sname}.offsets"] = torch.tensor(offsets, dtype=torch.int64)
        if col["times"] is not None:
            tensors[f"input.seq.{sname}.times"] = torch.tensor([t for l in col["times"] for t in l], dtype=torch.float32)
    tensors["input.r"] = r.float()
    tensors["expected.out"] = out.detach().float()
    for k, v in expected_extra.items():
        tensors["expected." + k] = v.detach().float()
    path = os.path.join(OUT, name + ".safetensors")
    save_file(tensors, path, metadata={"source": "tools/make_interest_model_fixtures.py", "torch": torch.__version__,
                                       "config": json.dumps(config)})
    print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes,",
          sum(1 for n, _ in model.named_parameters()), "parameters")


def rand_days(gen, n, step):
    """n behaviour times (days before the request), oldest first, multiples of `step`."""
    t = torch.randint(0, 40, (n,), generator=gen).sort(descending=True).values
    return [float(torch.tensor(float(v) * step, dtype=torch.float32)) for v in t]


def make_sequences(gen, lengths, vocab, cats=None, step=0.125):
    """Item sequences (ids in [0, vocab)), their category sequences (item % cats) and times."""
    items = [[int(v) for v in torch.randint(0, vocab, (n,), generator=gen)] for n in lengths]
    cat = [[i % cats for i in l] for l in items] if cats else None
    return items, cat, [rand_days(gen, n, step) for n in lengths]


def din_fixture():
    torch.manual_seed(101)  # the modules' default initialisation
    gen = torch.Generator().manual_seed(101)
    B = 6
    schema = {
        "sparse": [{"name": "item_id", "vocab": 12, "dim": 4}, {"name": "category", "vocab": 5, "dim": 4},
                   {"name": "user", "vocab": 7, "dim": 3, "hash": True}],
        "dense": [{"name": "price"}, {"name": "age"}],
        "sequences": [{"name": "click_seq", "max_len": 5, "table": "item_id"},
                      {"name": "click_cat_seq", "max_len": 5, "table": "category"},
                      {"name": "like_seq", "max_len": 6, "table": "item_id"},
                      {"name": "tag_seq", "vocab": 6, "dim": 2, "max_len": 3, "hash": True}],
        "tasks": [{"name": "click"}, {"name": "dwell", "kind": "regression"}],
    }
    model_cfg = {
        "type": "din", "embedding_init_std": 0.1,
        "sequences": [
            {"name": "clicks", "fields": ["click_seq", "click_cat_seq"], "query": ["item_id", "category"],
             "hidden": [6, 4], "activation": "dice"},
            {"name": "likes", "fields": ["like_seq"], "max_len": 3, "hidden": [5], "activation": "prelu",
             "softmax": True, "normalize_by_length": True},
        ],
        "bottom": {"layers": [8]}, "tower": {"hidden": [4], "activation": "prelu"},
    }
    config = {"schema": schema, "model": model_cfg, "seed": 7}
    units = {"clicks": DinUnit(8, [6, 4], "dice", False, False), "likes": DinUnit(4, [5], "prelu", True, True)}
    model = InterestModel(config, units, ("shared_bottom", [8]), [4], "prelu")
    randomize(model, gen)
    # Lengths: empty, exactly max_len, beyond max_len (truncated), short ones.
    click, click_cat, click_days = make_sequences(gen, [0, 5, 7, 2, 1, 3], 12, cats=5)
    like, _, _ = make_sequences(gen, [3, 0, 1, 6, 2, 4], 12)
    tags = [[123456789, -5], [], [7, 8, 9, 10], [3], [2**40 + 1, 0, 5], []]
    items = torch.tensor([3, 0, 11, 3, 7, 5])
    sparse = torch.stack([items, items % 5, torch.tensor([1001, -3, 42, 1001, 0, 99])], 1)
    batch = {"sparse": sparse, "dense": f32(torch.randn(B, 2, generator=gen)),
             "seqs": {"click_seq": seq_column(click, click_days), "click_cat_seq": seq_column(click_cat),
                      "like_seq": seq_column(like), "tag_seq": seq_column(tags)}}
    r = f32(torch.randn(B, 2, generator=gen))
    with torch.no_grad():
        infer = model(batch, batch_stats=False)
    write("din", config, model, batch, r, {"out_inference": infer})


def dmt_fixture():
    torch.manual_seed(202)  # the modules' default initialisation
    gen = torch.Generator().manual_seed(202)
    B = 6
    schema = {
        "sparse": [{"name": "item_id", "vocab": 12, "dim": 4}, {"name": "category", "vocab": 5, "dim": 4},
                   {"name": "position", "vocab": 6, "dim": 2}, {"name": "user", "vocab": 7, "dim": 3, "hash": True}],
        "dense": [{"name": "price"}, {"name": "pos_score"}],
        "sequences": [{"name": "click_seq", "max_len": 5, "table": "item_id"},
                      {"name": "click_cat_seq", "max_len": 5, "table": "category"},
                      {"name": "cart_seq", "max_len": 4, "table": "item_id"},
                      {"name": "order_seq", "max_len": 4, "table": "item_id"}],
        "tasks": [{"name": "click"}, {"name": "cart"}, {"name": "order"}],
    }
    model_cfg = {
        "type": "dmt", "embedding_init_std": 0.1, "num_experts": 2, "expert": {"layers": [8]}, "tower": {"hidden": [4]},
        "sequences": [
            {"name": "click", "fields": ["click_seq", "click_cat_seq"], "heads": 2, "ff": 8, "layers": 2,
             "position": "time_gap", "time_buckets": 6},
            {"name": "cart", "fields": ["cart_seq"], "heads": 2, "ff": 6, "position": "learned"},
            {"name": "order", "fields": ["order_seq"], "kind": "gru"},
        ],
        "bias_net": {"fields": ["position", "pos_score"], "hidden": [4]},
    }
    config = {"schema": schema, "model": model_cfg, "seed": 7}
    units = {"click": TransformerUnit(8, 2, 8, 2, "time_gap", 5, buckets=6),
             "cart": TransformerUnit(4, 2, 6, 1, "learned", 4), "order": GruUnit(4, 1)}
    model = InterestModel(config, units, ("mmoe", 2, [8]), [4], "relu", bias_hidden=[4])
    randomize(model, gen)
    # Times: multiples of 1/8 day = 3 hours (gaps 0, 3, 6, ...), plus one 1-hour gap (1/24 day is
    # not float-exact: round(f32(1/24) * 24) = 1) so bucket 1 is used.
    click, click_cat, click_days = make_sequences(gen, [5, 0, 7, 2, 1, 4], 12, cats=5)
    click_days[3][-1] = float(torch.tensor(1 / 24, dtype=torch.float32))
    click_days[0][-1] = 0.0
    cart, _, _ = make_sequences(gen, [2, 4, 0, 6, 1, 3], 12)
    order, _, _ = make_sequences(gen, [4, 1, 3, 0, 5, 2], 12)
    items = torch.tensor([3, 0, 11, 3, 7, 5])
    sparse = torch.stack([items, items % 5, torch.tensor([0, 5, 2, 2, 1, 3]), torch.tensor([9, -1, 3, 9, 77, 5])], 1)
    batch = {"sparse": sparse, "dense": f32(torch.randn(B, 2, generator=gen)),
             "seqs": {"click_seq": seq_column(click, click_days), "click_cat_seq": seq_column(click_cat),
                      "cart_seq": seq_column(cart), "order_seq": seq_column(order)}}
    r = f32(torch.randn(B, 3, generator=gen))
    with torch.no_grad():
        served = model(batch, with_bias=False)
    write("dmt", config, model, batch, r, {"out_serve": served})


def sim_fixture():
    torch.manual_seed(303)  # the modules' default initialisation
    gen = torch.Generator().manual_seed(303)
    B = 6
    schema = {
        "sparse": [{"name": "item_id", "vocab": 16, "dim": 4}, {"name": "category", "vocab": 4, "dim": 2},
                   {"name": "user", "vocab": 7, "dim": 3, "hash": True}],
        "dense": [{"name": "price"}],
        "sequences": [{"name": "long_seq", "max_len": 12, "table": "item_id"},
                      {"name": "long_cat_seq", "max_len": 12, "table": "category"},
                      {"name": "cart_seq", "max_len": 8, "table": "item_id"},
                      {"name": "cart_cat_seq", "max_len": 8, "table": "category"}],
        "tasks": [{"name": "click"}, {"name": "buy"}],
    }
    model_cfg = {
        "type": "sim", "embedding_init_std": 0.1, "bottom": {"layers": [8]}, "tower": {"hidden": [4]},
        "sequences": [
            {"name": "hard", "fields": ["long_seq", "long_cat_seq"], "search": "hard", "top_k": 3, "heads": 2,
             "time_buckets": 6},
            {"name": "soft", "fields": ["cart_seq", "cart_cat_seq"], "search": "soft", "top_k": 3, "heads": 2,
             "time_mode": "concat", "time_dim": 2, "time_buckets": 5, "time_base": 3.0},
        ],
    }
    config = {"schema": schema, "model": model_cfg, "seed": 7}
    units = {"hard": SimUnit(6, "hard", 3, 2, 6), "soft": SimUnit(6, "soft", 3, 2, 5, 3.0, "concat", 2)}
    model = InterestModel(config, units, ("shared_bottom", [8]), [4], "relu")
    randomize(model, gen)
    # Hard search (candidate categories 3, 0, 3, 1, 2, 3): more than top_k matches, one match,
    # none in a non-empty sequence, an empty sequence, a sequence beyond max_len whose dropped
    # oldest items match, exactly max_len.
    long_lists = [
        [3, 7, 11, 2, 15, 4, 7, 3],  # category 3: 3, 7, 11, 15, 7, 3 -> the last three kept
        [8, 1, 2],                   # category 0: 8
        [0, 1, 2, 5, 6],             # category 3: none
        [],
        [2, 6, 10, 1, 3, 5, 7, 9, 11, 13, 15, 0, 4, 8],  # 14 > 12: matches 2, 6 dropped, only 10 kept
        [3, 0, 7, 1, 11, 2, 15, 4, 3, 8, 7, 12],          # exactly 12
    ]
    long_days = [rand_days(gen, len(l), 0.125) for l in long_lists]
    cart, cart_cat, cart_days = make_sequences(gen, [5, 2, 0, 8, 3, 10], 16, cats=4)
    items = torch.tensor([11, 4, 7, 9, 14, 3])
    sparse = torch.stack([items, items % 4, torch.tensor([5, 6, 7, 8, 9, 10])], 1)
    batch = {"sparse": sparse, "dense": f32(torch.randn(B, 1, generator=gen)),
             "seqs": {"long_seq": seq_column(long_lists, long_days),
                      "long_cat_seq": seq_column([[i % 4 for i in l] for l in long_lists]),
                      "cart_seq": seq_column(cart, cart_days), "cart_cat_seq": seq_column(cart_cat)}}
    r = f32(torch.randn(B, 2, generator=gen))
    write("sim", config, model, batch, r, {})


if __name__ == "__main__":
    din_fixture()
    dmt_fixture()
    sim_fixture()
