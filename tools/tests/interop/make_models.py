"""Writes the test models of tools/tests/convert.rs with llama2.c's own code and llama.cpp's gguf package.

python make_models.py LLAMA2C_DIR OUT_DIR

LLAMA2C_DIR holds llama2.c's model.py, export.py and tokenizer.model. One small random llama model
(model.py's Transformer, the Llama 2 tokenizer's 32,000 tokens) is written as:

- model-legacy.bin    export.py's legacy float file (run.c's input)
- model-v2.bin        export.py's version-2 Q8_0 file, group 64 (runq.c's input)
- model-f32.gguf, model-f16.gguf, model-q8_0.gguf
                      the same weights as GGUF files written by gguf's GGUFWriter, with the tokenizer
                      read from tokenizer.model by sentencepiece
- gguf-f16-legacy.bin the weights as the F16 file stores them, as a legacy float file (run.c's input)
- gguf-q8_0-v2.bin    the weights as the Q8_0 file stores them (its int8 values and its f16 scales),
                      as a version-2 file with group 32 (runq.c's input)
- model-untied-legacy.bin a second, smaller model with an untied classifier and n_kv_heads = n_heads

The weights are drawn with a fixed seed at a scale that gives well-separated logits, so that greedy
decoding does not hinge on rounding; the embedding rows of the control and byte tokens (ids 0..259)
are scaled down so that a greedy continuation is made of printable pieces (run.c's output drops
unprintable byte tokens, which would hide tokens from the text comparison).
"""

import os
import sys

import numpy as np
import torch

llama2c, out = sys.argv[1], sys.argv[2]
sys.path.insert(0, llama2c)
from model import ModelArgs, Transformer  # noqa: E402  (llama2.c's)
from export import legacy_export, version2_export  # noqa: E402
import gguf  # noqa: E402
import sentencepiece  # noqa: E402


def random_model(seed, dim, n_layers, n_heads, n_kv_heads, vocab, seq_len, tied):
    torch.manual_seed(seed)
    args = ModelArgs(dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads, vocab_size=vocab,
                     multiple_of=32, max_seq_len=seq_len, dropout=0.0)
    m = Transformer(args)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 1:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 1.0 / p.shape[1] ** 0.5)
        if not tied:
            m.output.weight = torch.nn.Parameter(torch.randn_like(m.tok_embeddings.weight) / dim ** 0.5)
        m.tok_embeddings.weight[:260] *= 0.05
        if not tied:
            m.output.weight[:260] *= 0.05
    m.eval()
    return m


def gguf_file(m, path, qtype, sp):
    p = m.params
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("interop test model")
    w.add_context_length(p.max_seq_len)
    w.add_embedding_length(p.dim)
    w.add_block_count(p.n_layers)
    w.add_feed_forward_length(m.layers[0].feed_forward.w1.weight.shape[0])
    w.add_head_count(p.n_heads)
    w.add_head_count_kv(p.n_kv_heads)
    w.add_layer_norm_rms_eps(p.norm_eps)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(p.dim // p.n_heads)
    w.add_tokenizer_model("llama")
    n = sp.get_piece_size()
    w.add_token_list([sp.id_to_piece(i).encode() for i in range(n)])
    w.add_token_scores([sp.get_score(i) for i in range(n)])
    types = []
    for i in range(n):
        if sp.is_unknown(i):
            types.append(2)
        elif sp.is_control(i):
            types.append(3)
        elif sp.is_byte(i):
            types.append(6)
        else:
            types.append(1)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    stored = {}

    def put(name, t, matrix=True):
        a = t.detach().float().numpy()
        if not matrix or qtype == "f32":
            w.add_tensor(name, a)
            stored[name] = a
        elif qtype == "f16":
            a16 = a.astype(np.float16)
            w.add_tensor(name, a16)
            stored[name] = a16.astype(np.float32)
        else:
            q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            stored[name] = q
    put("token_embd.weight", m.tok_embeddings.weight)
    for l, layer in enumerate(m.layers):
        put(f"blk.{l}.attn_norm.weight", layer.attention_norm.weight, False)
        put(f"blk.{l}.attn_q.weight", layer.attention.wq.weight)
        put(f"blk.{l}.attn_k.weight", layer.attention.wk.weight)
        put(f"blk.{l}.attn_v.weight", layer.attention.wv.weight)
        put(f"blk.{l}.attn_output.weight", layer.attention.wo.weight)
        put(f"blk.{l}.ffn_norm.weight", layer.ffn_norm.weight, False)
        put(f"blk.{l}.ffn_gate.weight", layer.feed_forward.w1.weight)
        put(f"blk.{l}.ffn_down.weight", layer.feed_forward.w2.weight)
        put(f"blk.{l}.ffn_up.weight", layer.feed_forward.w3.weight)
    put("output_norm.weight", m.norm.weight, False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return stored


def q8_v2_file(m, stored, path):
    """A version-2 file (export.py's layout) holding the GGUF Q8_0 file's own values and scales."""
    p = m.params
    hidden = m.layers[0].feed_forward.w1.weight.shape[0]
    with open(path, "wb") as f:
        f.write(np.array([0x616b3432], dtype=np.uint32).tobytes())
        f.write(np.array([2, p.dim, hidden, p.n_layers, p.n_heads, p.n_kv_heads, p.vocab_size, p.max_seq_len],
                         dtype=np.int32).tobytes())
        f.write(bytes([1]))
        f.write(np.array([32], dtype=np.int32).tobytes())
        f.write(b"\0" * (256 - f.tell()))
        for layer in m.layers:
            f.write(layer.attention_norm.weight.detach().numpy().astype(np.float32).tobytes())
        for layer in m.layers:
            f.write(layer.ffn_norm.weight.detach().numpy().astype(np.float32).tobytes())
        f.write(m.norm.weight.detach().numpy().astype(np.float32).tobytes())
        names = ["token_embd.weight"]
        for kind in ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up"]:
            names += [f"blk.{l}.{kind}.weight" for l in range(p.n_layers)]
        for name in names:
            blocks = stored[name].reshape(-1, 34)
            scales = blocks[:, :2].copy().view(np.float16).astype(np.float32).reshape(-1)
            values = blocks[:, 2:].copy().view(np.int8).reshape(-1)
            f.write(values.tobytes())
            f.write(scales.tobytes())


def legacy_from(m, stored, path):
    """A legacy float file with the weights as a GGUF file stores them."""
    g = {
        "tok_embeddings.weight": "token_embd.weight",
    }
    for l in range(m.params.n_layers):
        for ours, theirs in [("attention.wq", "attn_q"), ("attention.wk", "attn_k"), ("attention.wv", "attn_v"),
                             ("attention.wo", "attn_output"), ("feed_forward.w1", "ffn_gate"),
                             ("feed_forward.w2", "ffn_down"), ("feed_forward.w3", "ffn_up")]:
            g[f"layers.{l}.{ours}.weight"] = f"blk.{l}.{theirs}.weight"
    import copy
    m2 = copy.deepcopy(m)
    with torch.no_grad():
        for name, p in m2.named_parameters():
            if name in g:
                p.copy_(torch.from_numpy(stored[g[name]]).reshape(p.shape))
        m2.output.weight = m2.tok_embeddings.weight
    legacy_export(m2, path)


os.makedirs(out, exist_ok=True)
sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(llama2c, "tokenizer.model"))
m = random_model(1, dim=64, n_layers=2, n_heads=8, n_kv_heads=4, vocab=32000, seq_len=64, tied=True)
legacy_export(m, os.path.join(out, "model-legacy.bin"))
version2_export(m, os.path.join(out, "model-v2.bin"), group_size=64)
gguf_file(m, os.path.join(out, "model-f32.gguf"), "f32", sp)
stored16 = gguf_file(m, os.path.join(out, "model-f16.gguf"), "f16", sp)
legacy_from(m, stored16, os.path.join(out, "gguf-f16-legacy.bin"))
stored8 = gguf_file(m, os.path.join(out, "model-q8_0.gguf"), "q8_0", sp)
q8_v2_file(m, stored8, os.path.join(out, "gguf-q8_0-v2.bin"))
m2 = random_model(2, dim=32, n_layers=1, n_heads=4, n_kv_heads=4, vocab=32000, seq_len=32, tied=False)
legacy_export(m2, os.path.join(out, "model-untied-legacy.bin"))
print("ok")
