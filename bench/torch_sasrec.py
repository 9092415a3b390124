"""PyTorch (1.13, CPU) SASRec training step, the baseline of bench/train-step.bench.ts.

The same model as src/model/sasrec.ts: item + learned positional embeddings, dropout, `blocks` pre-LN blocks
(q = LN1(x); r = q + Attn(q, x, x) causal with padding keys masked; f = LN2(r); x' = (f + FFN(f)) * mask),
final layer norm, tied output embeddings, full softmax cross-entropy, Adam(lr 1e-3, betas 0.9/0.98).
Two output-layer variants:
  all     logits at every position (batch x T x items), padding targets ignored: the usual implementation;
  nonpad  logits only at the real positions, gathered first.

Protocol (driven by the TypeScript benchmark): the batch is read once from the .npz-like raw file given on the
command line; then each stdin line is a JSON request {"d", "mode", "threads", "steps"} and the reply on stdout is
{"ms": [...]} with the wall time of each training step (forward, backward, optimizer step).
"""

import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


class Block(torch.nn.Module):
    def __init__(self, d, ff, dropout):
        super().__init__()
        self.ln1 = torch.nn.LayerNorm(d)
        self.q = torch.nn.Linear(d, d)
        self.k = torch.nn.Linear(d, d)
        self.v = torch.nn.Linear(d, d)
        self.o = torch.nn.Linear(d, d)
        self.ln2 = torch.nn.LayerNorm(d)
        self.w1 = torch.nn.Linear(d, ff)
        self.w2 = torch.nn.Linear(ff, d)
        self.drop = torch.nn.Dropout(dropout)
        self.scale = d**-0.5

    def forward(self, x, att_bias, timeline):
        q_in = self.ln1(x)
        q, k, v = self.q(q_in), self.k(x), self.v(x)
        att = torch.softmax(torch.baddbmm(att_bias, q, k.transpose(1, 2), alpha=self.scale), dim=-1)
        r = q_in + self.o(torch.bmm(att, v))
        f = self.ln2(r)
        h = self.drop(self.w2(self.drop(torch.relu(self.w1(f)))))
        return (f + h) * timeline


class SASRec(torch.nn.Module):
    def __init__(self, num_items, d, max_len, blocks=2, dropout=0.3):
        super().__init__()
        self.items = torch.nn.Embedding(num_items + 1, d, padding_idx=0)
        self.pos = torch.nn.Embedding(max_len, d)
        self.drop = torch.nn.Dropout(dropout)
        self.blocks = torch.nn.ModuleList([Block(d, d, dropout) for _ in range(blocks)])
        self.final = torch.nn.LayerNorm(d)

    def hidden(self, inputs, positions, att_bias, timeline):
        x = self.drop(self.items(inputs) + self.pos(positions)) * timeline
        for block in self.blocks:
            x = block(x, att_bias, timeline)
        return x


def main():
    path, num_items = sys.argv[1], int(sys.argv[2])
    raw = np.fromfile(path, dtype=np.int32)
    size, T = int(raw[0]), int(raw[1])
    inputs = torch.from_numpy(raw[2 : 2 + size * T].reshape(size, T).astype(np.int64))
    targets = torch.from_numpy(raw[2 + size * T : 2 + 2 * size * T].reshape(size, T).astype(np.int64))
    real = inputs > 0
    lengths = real.sum(dim=1)
    # Positions count from the end (the most recent item uses row 0), as deltarec.
    steps_from_end = torch.arange(T - 1, -1, -1).unsqueeze(0).expand(size, T)
    positions = torch.where(real, steps_from_end, torch.zeros_like(steps_from_end))
    timeline = real.unsqueeze(-1).float()
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    allowed = causal.unsqueeze(0) & real.unsqueeze(1)
    allowed |= torch.eye(T, dtype=torch.bool).unsqueeze(0)  # padding queries see themselves (no NaN rows)
    att_bias = torch.zeros(size, T, T).masked_fill(~allowed, float("-inf"))
    flat_real = real.reshape(-1).nonzero().squeeze(1)
    real_targets = targets.reshape(-1)[flat_real]
    assert int(lengths.sum()) == flat_real.numel()

    models = {}
    for line in sys.stdin:
        req = json.loads(line)
        d, mode, threads, steps = req["d"], req["mode"], req["threads"], req["steps"]
        torch.set_num_threads(threads)
        if d not in models:
            torch.manual_seed(0)
            model = SASRec(num_items, d, 64)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
            models[d] = (model, opt)
        model, opt = models[d]
        model.train()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            h = model.final(model.hidden(inputs, positions, att_bias, timeline))
            if mode == "all":
                logits = h.reshape(-1, d) @ model.items.weight.t()
                loss = F.cross_entropy(logits, targets.reshape(-1), ignore_index=0)
            else:
                logits = h.reshape(-1, d)[flat_real] @ model.items.weight.t()
                loss = F.cross_entropy(logits, real_targets)
            loss.backward()
            opt.step()
            times.append((time.perf_counter() - start) * 1000)
        print(json.dumps({"ms": times, "loss": float(loss)}), flush=True)


if __name__ == "__main__":
    main()
