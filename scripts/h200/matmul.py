"""A small PyTorch matmul on the GPU, checked against float64 on the CPU."""
import sys
import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.manual_seed(0)
a = torch.randn(1024, 1024)
b = torch.randn(1024, 1024)
c = (a.cuda() @ b.cuda()).cpu()
ref = a.double() @ b.double()
err = (c.double() - ref).abs().max().item()
ok = err < 1e-2
print(f"matmul 1024x1024 on {torch.cuda.get_device_name(0)}: max abs error {err:.2e} ({'ok' if ok else 'WRONG'})")
sys.exit(0 if ok else 1)
