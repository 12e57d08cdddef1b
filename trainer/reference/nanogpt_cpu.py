"""The nanoGPT Tiny Shakespeare CPU recipe in plain PyTorch: the reference that `trainer/bench.sh`
runs beside `tinygpt-train` on the same machine, for a ratio of speeds and of validation losses.

It follows `trainer/configs/nanogpt-cpu.toml` and nanoGPT's model and loop: character vocabulary,
last 10 % of the text for validation, 4 layers / 4 heads / 128 wide, block 64, batch 12, no
biases, LayerNorm with weights only, exact GELU, tied embeddings, normal(0, 0.02) initialisation
(0.02 / sqrt(2 * n_layer) for the residual projections), fused causal attention
(`scaled_dot_product_attention`), torch.optim.AdamW (decay on matrices only), linear warmup then
cosine decay, gradient clipping, `zero_grad(set_to_none=True)`. Validation loss is measured as
`tinygpt-train` does: the mean cross-entropy over the whole validation split in consecutive windows
of `block` tokens.

    python3 trainer/reference/nanogpt_cpu.py --corpus FILE [--iters 2000] [--threads 2] [--json OUT]

Prints one line per evaluation and a summary: median ms/iteration over logging windows of 10
iterations (evaluation excluded), tokens/s, final validation loss.
"""

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d, bias=False)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.ln2 = nn.LayerNorm(d, bias=False)
        self.fc = nn.Linear(d, 4 * d, bias=False)
        self.out = nn.Linear(4 * d, d, bias=False)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class Gpt(nn.Module):
    def __init__(self, vocab, block, layers, heads, d):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(block, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d, bias=False)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight", "out.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t))
        for blk in self.blocks:
            x = blk(x)
        return F.linear(self.ln(x), self.tok.weight)


@torch.no_grad()
def nanogpt_estimate(model, val, block, batch=12, iters=20, seed=0):
    """nanoGPT's own `estimate_loss` on the validation split: the mean of `iters` batches of
    `batch` random windows (its CPU recipe passes --eval_iters=20). A noisy estimate, printed only
    to compare with the figure nanoGPT's README quotes for this recipe."""
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(iters):
        ix = torch.randint(val.numel() - block, (batch,), generator=g)
        x = torch.stack([val[i:i + block] for i in ix])
        y = torch.stack([val[i + 1:i + 1 + block] for i in ix])
        losses.append(F.cross_entropy(model(x).view(-1, model.tok.num_embeddings), y.view(-1)).item())
    return sum(losses) / len(losses)


def lr_at(it, lr, min_lr, warmup, decay):
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return min_lr
    ratio = (it - warmup) / max(decay - warmup, 1)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


@torch.no_grad()
def val_loss(model, val, block, batch=64):
    n = val.numel()
    full = (n - 1) // block
    total = 0.0
    for w in range(0, full, batch):
        cnt = min(batch, full - w)
        x = val[w * block:(w + cnt) * block].view(cnt, block)
        y = val[w * block + 1:(w + cnt) * block + 1].view(cnt, block)
        total += F.cross_entropy(model(x).view(-1, model.tok.num_embeddings), y.reshape(-1), reduction="sum").item()
    start = full * block
    if start + 1 < n:
        x = val[start:n - 1].view(1, -1)
        y = val[start + 1:n].view(1, -1)
        total += F.cross_entropy(model(x).view(-1, model.tok.num_embeddings), y.reshape(-1), reduction="sum").item()
    return total / (n - 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--eval-interval", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--json", help="write the summary here as JSON")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    text = open(a.corpus, encoding="utf-8").read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    cut = int(len(data) * 0.9)
    train, val = data[:cut], data[cut:]

    block, batch = 64, 12
    model = Gpt(len(chars), block, layers=4, heads=4, d=128)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3, betas=(0.9, 0.99),
    )
    params = sum(p.numel() for p in model.parameters())
    print(f"pytorch {torch.__version__}, {torch.get_num_threads()} threads, {params} parameters", flush=True)

    windows = []
    t_window = time.perf_counter()
    in_window = 0
    evals = []
    for it in range(a.iters):
        for g in opt.param_groups:
            g["lr"] = lr_at(it, 1e-3, 1e-4, 100, a.iters)
        ix = torch.randint(len(train) - block, (batch,))
        x = torch.stack([train[i:i + block] for i in ix])
        y = torch.stack([train[i + 1:i + 1 + block] for i in ix])
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        in_window += 1
        step = it + 1
        if step % 10 == 0:
            windows.append((time.perf_counter() - t_window) * 1e3 / in_window)
            in_window = 0
        if step % a.eval_interval == 0 or step == a.iters:
            model.eval()
            v = val_loss(model, val, block)
            model.train()
            evals.append((step, v))
            print(f"step {step}: train loss {loss.item():.4f}, val loss {v:.4f}", flush=True)
        if step % 10 == 0:
            t_window = time.perf_counter()

    model.eval()
    estimates = [nanogpt_estimate(model, val, block, seed=s) for s in range(10)]
    model.train()
    ms = statistics.median(windows)
    summary = {
        "iterations": a.iters,
        "ms_per_iter": ms,
        "tokens_per_s": batch * block / (ms / 1e3),
        "val_loss": evals[-1][1],
        "best_val_loss": min(v for _, v in evals),
        "nanogpt_estimates": estimates,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    print(f"reference: {a.iters} iterations; median {ms:.2f} ms/iteration, {summary['tokens_per_s']:.0f} tokens/s; "
          f"final val loss {summary['val_loss']:.4f}")
    print(f"nanoGPT's estimator (20 random batches of 12), 10 draws: min {min(estimates):.4f}, "
          f"median {statistics.median(estimates):.4f}, max {max(estimates):.4f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f)


if __name__ == "__main__":
    main()
