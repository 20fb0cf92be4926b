#!/usr/bin/python3
"""Writes the small I/O fixtures in tests/fixtures/io/ that tests/io/*.cpp load and compare.

    /usr/bin/python3 tools/make_io_fixtures.py

Everything is produced by PyTorch/NumPy (an implementation independent of mtrank's), and the
expected values are stored as float32 bit patterns so the C++ tests compare exactly:
  torch_dtypes.safetensors   F32/F16/BF16/F64/I64/I32/BOOL/U8 tensors incl. subnormals, inf,
                             -0, a scalar and an empty tensor, plus __metadata__
  torch_mlp.safetensors      a PyTorch Linear->BatchNorm1d->ReLU->Linear state_dict under the
                             prefix "mlp." with mtrank Mlp's parameter names (plus PyTorch's
                             I64 num_batches_tracked buffer, which mtrank has no use for)
  expected.json              shapes and float32 bits of every float tensor, int values, the
                             MLP's input and eval-mode output
  f32_c.npy, f64_fortran.npy, f32_scalar.npy   NumPy arrays
"""
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_torch import save_file  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "io")


def bits(t):
    """float32 bit patterns (uint32) of a tensor converted to float32 by torch."""
    a = t.detach().to(torch.float32).contiguous().numpy().reshape(-1)
    return [int(x) for x in a.view(np.uint32)]


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(7)
    dtypes = {
        "f32": torch.tensor([[1.5, -2.0, 0.25], [3.0, 1e-3, -7.0]], dtype=torch.float32),
        "f16": torch.tensor([0.5, -1.25, 65504.0, 6e-8, float("inf"), -0.0, 1e-5, float("-inf")], dtype=torch.float16),
        "bf16": torch.tensor([[1.0, -3.140625], [1e30, float("-inf")]], dtype=torch.bfloat16),
        "f64": torch.tensor([0.1, -1e-10, 12345.678, 1e300], dtype=torch.float64),
        "i64": torch.tensor([-1, 0, 2**40], dtype=torch.int64),
        "i32": torch.tensor([[7], [-8]], dtype=torch.int32),
        "mask": torch.tensor([True, False, True]),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
    }
    save_file(dtypes, os.path.join(OUT, "torch_dtypes.safetensors"),
              metadata={"producer": "tools/make_io_fixtures.py", "note": "ünïcode ok"})

    # An MLP with mtrank's parameter names: mlp.layers.{0,1}.*, mlp.norms.0.*
    class Mlp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList([torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)])
            self.norms = torch.nn.ModuleList([torch.nn.BatchNorm1d(4)])

        def forward(self, x):
            return self.layers[1](torch.relu(self.norms[0](self.layers[0](x))))

    net = Mlp()
    with torch.no_grad():
        net.norms[0].running_mean.copy_(torch.randn(4) * 0.1)
        net.norms[0].running_var.copy_(torch.rand(4) + 0.5)
        net.norms[0].weight.copy_(torch.rand(4) + 0.5)
        net.norms[0].bias.copy_(torch.randn(4) * 0.1)
    net.eval()
    x = torch.randn(5, 3)
    with torch.no_grad():
        y = net(x)
    state = {"mlp." + k: v for k, v in net.state_dict().items()}
    save_file(state, os.path.join(OUT, "torch_mlp.safetensors"))

    expected = {
        "float": {k: {"shape": list(v.shape), "bits": bits(v)} for k, v in dtypes.items() if v.is_floating_point()},
        "int": {k: {"shape": list(v.shape), "values": [int(i) for i in v.reshape(-1).tolist()]}
                for k, v in dtypes.items() if not v.is_floating_point()},
        "metadata": {"producer": "tools/make_io_fixtures.py", "note": "ünïcode ok"},
        "mlp": {"x_shape": list(x.shape), "x_bits": bits(x), "y_shape": list(y.shape), "y_bits": bits(y),
                "tensors": sorted(state.keys())},
    }

    rng = np.random.default_rng(3)
    f32 = rng.standard_normal((2, 3)).astype(np.float32)
    f64 = np.asfortranarray(rng.standard_normal((3, 2)))
    np.save(os.path.join(OUT, "f32_c.npy"), f32)
    np.save(os.path.join(OUT, "f64_fortran.npy"), f64)
    np.save(os.path.join(OUT, "f32_scalar.npy"), np.float32(-4.75))
    expected["npy"] = {
        "f32_c": {"shape": list(f32.shape), "bits": [int(b) for b in f32.reshape(-1).view(np.uint32)]},
        "f64_fortran": {"shape": list(f64.shape),
                        "bits": [int(b) for b in np.ascontiguousarray(f64).astype(np.float32).reshape(-1).view(np.uint32)]},
        "f32_scalar": {"shape": [], "bits": [struct.unpack("<I", struct.pack("<f", -4.75))[0]]},
    }
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
