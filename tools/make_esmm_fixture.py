#!/usr/bin/python3
"""Writes tests/fixtures/models/esmm.safetensors: an independent PyTorch ESMM (Ma et al. SIGIR 2018).

Shared embedding of one sparse field plus one dense input; a CTR tower and a CVR tower
(Linear 5->8, ReLU, Linear 8->1); outputs (ctr_logit, logit(sigmoid(ctr) * sigmoid(cvr))).
The file holds the weights under mtrank's parameter names, the inputs ("input.ids" as I64,
"input.dense"), the weight r of the loss sum(out * r), and the expected outputs and gradients
("expected.out", "grad.<param>"). Computed in float64 from float32-rounded values.
Run: /usr/bin/python3 tools/make_esmm_fixture.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_torch import save_file  # noqa: E402

torch.manual_seed(1234)
B, V, D, H = 6, 10, 4, 8
f32 = lambda t: t.float().double()  # values exactly representable in float32

params = {
    "embeddings.item.weight": f32(torch.randn(V, D) * 0.5),
}
for k in range(2):
    params[f"towers.{k}.layers.0.weight"] = f32(torch.randn(H, D + 1) * 0.4)
    params[f"towers.{k}.layers.0.bias"] = f32(torch.randn(H) * 0.1)
    params[f"towers.{k}.layers.1.weight"] = f32(torch.randn(1, H) * 0.4)
    params[f"towers.{k}.layers.1.bias"] = f32(torch.randn(1) * 0.1)
for p in params.values():
    p.requires_grad_(True)

ids = torch.tensor([0, 3, 9, 3, 5, 7], dtype=torch.int64)
dense = f32(torch.randn(B, 1))
r = f32(torch.randn(B, 2))

x = torch.cat([params["embeddings.item.weight"][ids], dense], dim=1)


def tower(k):
    h = torch.relu(x @ params[f"towers.{k}.layers.0.weight"].T + params[f"towers.{k}.layers.0.bias"])
    return (h @ params[f"towers.{k}.layers.1.weight"].T + params[f"towers.{k}.layers.1.bias"])[:, 0]


a, c = tower(0), tower(1)
p_ctcvr = torch.sigmoid(a) * torch.sigmoid(c)
out = torch.stack([a, torch.log(p_ctcvr) - torch.log1p(-p_ctcvr)], dim=1)
(out * r).sum().backward()

tensors = {name: p.detach().float() for name, p in params.items()}
tensors.update({"grad." + name: p.grad.float() for name, p in params.items()})
tensors["input.ids"] = ids
tensors["input.dense"] = dense.float()
tensors["input.r"] = r.float()
tensors["expected.out"] = out.detach().float()
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models", "esmm.safetensors")
save_file(tensors, path, metadata={"source": "tools/make_esmm_fixture.py", "torch": torch.__version__})
print("wrote", os.path.normpath(path))
