"""The full MLP 1x512 epoch in PyTorch, as the baseline of benchmarks.train's full epoch.

Two loops over the same CIFAR-10 arrays (28 x 28 center crops, per-channel standardized as
this project does, so the same 2,352 -> 512 -> 10 network), each one epoch of SGD (batch
128, learning rate 0.01, momentum 0.9, shuffled) followed by the re-evaluation of the 50,000
training and the 10,000 test images:

- `loader`: the way the paper's authors' PyTorch demo feeds its model: a Dataset that turns
  one uint8 image at a time into a PIL image, then a float tensor, then normalizes it (what
  a torchvision dataset with ToTensor and Normalize does), batched by a DataLoader with one
  worker process;
- `tensors`: the whole dataset as float tensors in memory, sliced per batch (PyTorch's
  fastest simple loop).

Nothing here is imported unless torch is installed (it is not one of the project's
requirements); benchmarks.train prints a line saying so where it is missing.
"""

import time

import numpy as np

BATCH, LR, MOMENTUM, EVAL_BATCH = 128, 0.01, 0.9, 1000


def _standardize(x_uint8, mean, std):
    return ((x_uint8.astype(np.float32) / 255.0 - mean) / std).reshape(len(x_uint8), -1)


def _net(torch, d):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(d, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))


def _evaluate(torch, net, batches):
    correct = 0
    with torch.no_grad():
        for x, y in batches:
            correct += int((net(x).argmax(1) == y).sum())
    return correct


def epoch(x_train, y_train, x_test, y_test, mode, epochs=2):
    """{"train": s, "eval": s}, the fastest of `epochs` epochs, for mode loader | tensors.
    x_*: uint8 [N, 28, 28, 3]; y_*: integer labels."""
    import torch

    mean = x_train.reshape(-1, 3).mean(0) / 255.0
    std = x_train.reshape(-1, 3).std(0) / 255.0
    mean, std = mean.astype(np.float32), std.astype(np.float32)
    yt_train = torch.as_tensor(np.asarray(y_train, np.int64))
    yt_test = torch.as_tensor(np.asarray(y_test, np.int64))

    if mode == "tensors":
        xt_train = torch.as_tensor(_standardize(x_train, mean, std))
        xt_test = torch.as_tensor(_standardize(x_test, mean, std))

        def train_batches(gen):
            order = torch.randperm(len(xt_train), generator=gen)
            for i in range(0, len(order), BATCH):
                j = order[i:i + BATCH]
                yield xt_train[j], yt_train[j]

        def eval_batches():
            for x, y in ((xt_train, yt_train), (xt_test, yt_test)):
                for i in range(0, len(x), EVAL_BATCH):
                    yield x[i:i + EVAL_BATCH], y[i:i + EVAL_BATCH]
    elif mode == "loader":
        from PIL import Image
        mean_t, std_t = torch.as_tensor(mean)[:, None, None], torch.as_tensor(std)[:, None, None]

        class Images(torch.utils.data.Dataset):
            def __init__(self, x, y):
                self.x, self.y = x, y

            def __len__(self):
                return len(self.x)

            def __getitem__(self, i):  # one image at a time: a PIL image to a tensor, normalized
                img = torch.from_numpy(np.asarray(Image.fromarray(self.x[i]))).permute(2, 0, 1)
                img = (img.float().div(255) - mean_t) / std_t
                return img.reshape(-1), int(self.y[i])

        def loader(x, y, batch, shuffle, gen=None):
            return torch.utils.data.DataLoader(Images(x, y), batch_size=batch, shuffle=shuffle,
                                               num_workers=1, generator=gen)

        def train_batches(gen):
            return loader(x_train, y_train, BATCH, True, gen)

        def eval_batches():
            for x, y in ((x_train, y_train), (x_test, y_test)):
                yield from loader(x, y, EVAL_BATCH, False)
    else:
        raise ValueError(f"mode must be loader or tensors, got {mode!r}")

    net = _net(torch, x_train[0].size)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    best = None
    for _ in range(epochs):
        t0 = time.perf_counter()
        net.train()
        for x, y in train_batches(gen):
            opt.zero_grad()
            loss_fn(net(x), y).backward()
            opt.step()
        t1 = time.perf_counter()
        net.eval()
        _evaluate(torch, net, eval_batches())
        t2 = time.perf_counter()
        if best is None or t2 - t0 < best["train"] + best["eval"]:
            best = {"train": t1 - t0, "eval": t2 - t1}
    return best
