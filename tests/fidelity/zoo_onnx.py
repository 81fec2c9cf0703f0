"""zoo_onnx - the PyTorch test models of the graph format (format_version 2).

Built and trained here, nothing downloaded; everything is seeded, so the same
models come out on every run.  Used by tests/test_exporter_onnx.py (exporter +
numpy reference interpreter of graph files) and by the benchmarks.

    X_train, X_test, y_train, y_test = digits()
    mlp = train_mlp()                 # forward(x [b, 64]) -> (probabilities, label)
    cnn = train_cnn()                 # forward(x [b, 1, 8, 8]) -> (probabilities, label)
    enc = make_encoder()              # forward(ids, mask) -> (hidden, logits, label)
    ids, mask = encoder_inputs(3, [5, 17, 9], vocab=1000)
    export(enc, "enc.onnx", opset=13)

The MLP and the CNN are trained for a few seconds on one thread on
scikit-learn's digits (test accuracy above 0.9); the encoder is a BERT-style
encoder with seeded random weights (its outputs are only compared, never
judged).
"""

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def digits():
    """scikit-learn's digits: X float32 in [0, 1] ([n, 64]), y int64; a fixed split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    return tuple(train_test_split(X, y, test_size=0.25, random_state=0, stratify=y))


class _Classifier(nn.Module):
    """Wraps a module giving logits: forward -> (softmax probabilities, argmax label)."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        logits = self.body(x)
        return F.softmax(logits, dim=-1), torch.argmax(logits, dim=-1)


def _train(body, X, y, epochs, seed, lr=0.01):
    """Full-batch-ish Adam on one thread; returns the wrapped classifier in eval mode."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(seed)
        X, y = torch.from_numpy(X), torch.from_numpy(y)
        opt = torch.optim.Adam(body.parameters(), lr=lr)
        body.train()
        for _ in range(epochs):
            perm = torch.randperm(len(X), generator=g)
            for i in range(0, len(X), 128):
                idx = perm[i:i + 128]
                opt.zero_grad()
                F.cross_entropy(body(X[idx]), y[idx]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    model = _Classifier(body)
    model.eval()
    return model


def train_mlp(seed=0):
    """64 -> 128 ReLU -> 64 ReLU -> 10, softmax: forward(x [b, 64]) -> (probabilities, label)."""
    torch.manual_seed(seed)
    X_train, _, y_train, _ = digits()
    body = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                         nn.Linear(64, 10))
    return _train(body, X_train, y_train, epochs=30, seed=seed)


class _CnnBody(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.b1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 32, 3, padding=1)
        self.b2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 2)          # [b, 8, 4, 4]
        x = F.relu(self.b2(self.c2(x)))                           # [b, 32, 4, 4]
        x = F.adaptive_avg_pool2d(x, 1)                           # GlobalAveragePool
        return self.fc(torch.flatten(x, 1))


class _Cnn(_Classifier):
    def forward(self, x):
        return super().forward(x)


def train_cnn(seed=0):
    """conv 3x3 + BN + ReLU, max pool 2, conv + BN + ReLU, global average pool,
    flatten, linear: forward(x [b, 1, 8, 8]) -> (probabilities, label)."""
    torch.manual_seed(seed)
    X_train, _, y_train, _ = digits()
    return _train(_CnnBody(), X_train.reshape(-1, 1, 8, 8), y_train, epochs=40, seed=seed)


class _Layer(nn.Module):
    def __init__(self, hidden, heads, ffn):
        super().__init__()
        self.heads, self.d = heads, hidden // heads
        self.q, self.k, self.v = (nn.Linear(hidden, hidden) for _ in range(3))
        self.o = nn.Linear(hidden, hidden)
        self.ln1 = nn.LayerNorm(hidden, eps=1e-12)
        self.f1 = nn.Linear(hidden, ffn)
        self.f2 = nn.Linear(ffn, hidden)
        self.ln2 = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x, add_mask):
        b, s = x.shape[0], x.shape[1]

        def heads(t):                         # [b, s, hidden] -> [b, heads, s, d]
            return t.view(b, s, self.heads, self.d).transpose(1, 2)
        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.d) + add_mask
        ctx = torch.matmul(F.softmax(scores, dim=-1), v)
        ctx = ctx.transpose(1, 2).reshape(b, s, self.heads * self.d)
        x = self.ln1(x + self.o(ctx))
        return self.ln2(x + self.f2(F.gelu(self.f1(x))))


class _Encoder(nn.Module):
    def __init__(self, layers, hidden, heads, ffn, vocab, max_positions, classes, mask):
        super().__init__()
        self.tok = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(max_positions, hidden)
        self.ln = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList(_Layer(hidden, heads, ffn) for _ in range(layers))
        self.pool = nn.Linear(hidden, hidden)
        self.cls = nn.Linear(hidden, classes)
        self.mask = mask

    def forward(self, input_ids, attention_mask):
        positions = torch.arange(input_ids.shape[1], dtype=torch.int64)   # Shape, Range
        x = self.ln(self.tok(input_ids) + self.pos(positions).unsqueeze(0))
        m = attention_mask[:, None, None, :]
        if self.mask == "where":           # Equal, Where
            add = torch.where(m == 0, torch.tensor(-10000.0), torch.tensor(0.0))
        else:                              # Cast, Sub, Mul
            add = (1.0 - m.to(torch.float32)) * -10000.0
        for layer in self.layers:
            x = layer(x, add)
        pooled = torch.tanh(self.pool(x[:, 0]))
        logits = self.cls(pooled)
        return x, logits, torch.argmax(logits, dim=-1)


def make_encoder(layers=4, hidden=256, heads=4, ffn=None, vocab=1000, max_positions=128,
                 classes=2, seed=0, mask="cast"):
    """A BERT-style encoder with seeded random weights, in eval mode:
    forward(input_ids [b, s] int64, attention_mask [b, s] int64) ->
    (hidden [b, s, hidden], logits [b, classes], label [b] int64).  The mask
    (1 = token, 0 = padding) becomes an additive mask through Cast/Sub/Mul
    (mask="cast") or Equal/Where (mask="where")."""
    assert hidden % heads == 0 and mask in ("cast", "where")
    torch.manual_seed(seed)
    model = _Encoder(layers, hidden, heads, ffn or 4 * hidden, vocab, max_positions, classes,
                     mask)
    with torch.no_grad():            # layer norms that are not the identity
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
    model.eval()
    return model


def encoder_inputs(batch, seq_lens, vocab, seed=0):
    """(ids, mask), numpy int64 [batch, max(seq_lens)]: random token ids in
    1 .. vocab-1, padded with id 0 and mask 0 past each sequence's length."""
    assert len(seq_lens) == batch
    rng = np.random.default_rng(seed)
    s = max(seq_lens)
    ids = np.zeros((batch, s), np.int64)
    mask = np.zeros((batch, s), np.int64)
    for i, n in enumerate(seq_lens):
        ids[i, :n] = rng.integers(1, vocab, size=n)
        mask[i, :n] = 1
    return ids, mask


def export(module, path, opset=13):
    """Writes module as ONNX with torch.onnx.export: inputs "input" (MLP, CNN) or
    "input_ids", "attention_mask" (encoder), outputs "probabilities", "label" or
    "hidden", "logits", "label"; dynamic axes "batch" (and "sequence")."""
    if isinstance(module, _Encoder):
        ids, mask = encoder_inputs(2, [5, 3], module.tok.num_embeddings)
        args = (torch.from_numpy(ids), torch.from_numpy(mask))
        inputs, outputs = ["input_ids", "attention_mask"], ["hidden", "logits", "label"]
        dyn = {"input_ids": {0: "batch", 1: "sequence"},
               "attention_mask": {0: "batch", 1: "sequence"},
               "hidden": {0: "batch", 1: "sequence"}, "logits": {0: "batch"},
               "label": {0: "batch"}}
    else:
        shape = (2, 1, 8, 8) if isinstance(module.body, _CnnBody) else (2, 64)
        args = (torch.zeros(shape, dtype=torch.float32),)
        inputs, outputs = ["input"], ["probabilities", "label"]
        dyn = {"input": {0: "batch"}, "probabilities": {0: "batch"}, "label": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(module, args, path, opset_version=opset, input_names=inputs,
                          output_names=outputs, dynamic_axes=dyn)
