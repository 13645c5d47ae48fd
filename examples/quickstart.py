"""ntkit from Python in one page: Fashion-MNIST from Debian's dataset-fashion-mnist, a CNN's pNTK
and kernel regression with it, random features of the infinite-width NTK, and a PyTorch model's
eNTK. Run: .venv/bin/python examples/quickstart.py (after scripts/install-python.sh)."""
import time

import torch

import ntkit

data = "/usr/share/datasets/fashion-mnist/"
x_train = ntkit.load(data + "train-images-idx3-ubyte.gz")[:2000]  # (2000, 28, 28, 1) float32 in [0, 1]
y_train = ntkit.load(data + "train-labels-idx1-ubyte.gz")[:2000]  # (2000,) class labels
x_test = ntkit.load(data + "t10k-images-idx3-ubyte.gz")[:500]
y_test = ntkit.load(data + "t10k-labels-idx1-ubyte.gz")[:500]

# A finite CNN at its initialization, its pNTK (N x N), and kernel ridge regression with it.
net = ntkit.Network("Conv(32, 3, padding=SAME), Relu, Conv(32, 3, padding=SAME), Relu, GlobalAvgPool, Dense(10)",
                    input_shape=(28, 28, 1))
print(net)
params = net.init(seed=0)
t = time.perf_counter()
k_train = ntkit.empirical_ntk(net, params, x_train, mode="pntk")          # (2000, 2000)
k_test = ntkit.empirical_ntk(net, params, x_test, x_train, mode="pntk")   # (500, 2000)
print(f"pNTK: {k_train.shape} and {k_test.shape} {k_train.dtype} in {time.perf_counter() - t:.1f} s")
r = ntkit.kernel_ridge(k_train, y_train, k_test, y_test, ridge="auto")
print(f"pNTK kernel ridge: ridge {r.ridge:g}, test accuracy {r.test_accuracy:.3f}")
s = ntkit.spectrum(k_train)
print(f"pNTK spectrum: lambda_max {s['lambda_max']:.4g}, effective rank {s['effective_rank']:.2f}")

# Random features whose inner products approximate the infinite-width NTK of a 2-hidden-layer ReLU
# MLP on the flattened images; ridge regression on them, never forming the 2000 x 2000 kernel.
rf = ntkit.NTKRF(8192, depth=2, flatten=True, random_state=0)
f_train, f_test = rf.fit_transform(x_train), rf.transform(x_test)
r = ntkit.feature_ridge(f_train, y_train, f_test, y_test, ridge="auto")
print(f"{rf}: features {f_train.shape}, test accuracy {r.test_accuracy:.3f}")

# A PyTorch model with its own weights: its full eNTK (N, N, O, O) and how close the pNTK is to it.
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.GELU(), torch.nn.AvgPool2d(2),
                            torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.GELU(), torch.nn.AdaptiveAvgPool2d(1),
                            torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()
tnet, tparams = ntkit.from_torch(model, input_shape=(28, 28, 1))
print(tnet.spec)
full = ntkit.empirical_ntk(tnet, tparams, x_test[:100], mode="full")
pntk = ntkit.empirical_ntk(tnet, tparams, x_test[:100], mode="pntk")
c = ntkit.compare(pntk, full)
print(f"eNTK {full.shape}; pNTK vs eNTK: relative Frobenius distance {c['relative_frobenius']:.3f}")
