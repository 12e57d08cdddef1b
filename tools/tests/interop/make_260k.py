"""Writes a llama2.c model of stories260K's shape with llama2.c's own code, for the board check.

python make_260k.py LLAMA2C_DIR CORPUS OUT_DIR

stories260K (llama2.c's smallest TinyStories model) is dim 64, 5 layers, 8 query and 4 KV heads,
hidden 172, context 512, with a 512-token sentencepiece tokenizer trained by llama2.c's
`tinystories.py train_vocab`. This script makes the same shapes from what is at hand:

- tok512.model / tok512.bin  a 512-token BPE sentencepiece tokenizer trained on the first 200,000
                             characters of CORPUS with train_vocab's options (byte fallback, split
                             digits, identity normalisation), written to llama2.c's tokenizer.bin
                             format by llama2.c's own `tokenizer.py` (Tokenizer.export)
- stories260k-shape.bin      model.py's Transformer of that shape with random weights (fixed seed),
                             written by export.py's legacy_export (run.c's input)
"""

import os
import sys

import torch

llama2c, corpus, out = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, llama2c)
from model import ModelArgs, Transformer  # noqa: E402  (llama2.c's)
from export import legacy_export  # noqa: E402
from tokenizer import Tokenizer  # noqa: E402
import sentencepiece  # noqa: E402

os.makedirs(out, exist_ok=True)
text_path = os.path.join(out, "corpus.txt")
with open(corpus, encoding="utf-8") as f:
    text = f.read(200_000)
with open(text_path, "w", encoding="utf-8") as f:
    f.write(text)

prefix = os.path.join(out, "tok512")
sentencepiece.SentencePieceTrainer.train(
    input=text_path,
    model_prefix=prefix,
    model_type="bpe",
    vocab_size=512,
    input_format="text",
    character_coverage=1.0,
    num_threads=1,
    split_digits=True,
    allow_whitespace_only_pieces=True,
    byte_fallback=True,
    unk_surface=r" \342\201\207 ",
    normalization_rule_name="identity",
    minloglevel=2,
)
Tokenizer(prefix + ".model").export()  # writes tok512.bin beside the model

torch.manual_seed(260)
args = ModelArgs(dim=64, n_layers=5, n_heads=8, n_kv_heads=4, vocab_size=512, multiple_of=4,
                 max_seq_len=512, dropout=0.0)
m = Transformer(args)
with torch.no_grad():
    for p in m.parameters():
        if p.dim() == 1:
            p.copy_(1.0 + 0.1 * torch.randn_like(p))
        else:
            p.normal_(0.0, 1.0 / p.shape[1] ** 0.5)
m.eval()
assert m.layers[0].feed_forward.w1.weight.shape == (172, 64), "stories260K's hidden size is 172"
legacy_export(m, os.path.join(out, "stories260k-shape.bin"))
print(sum(p.numel() for p in m.parameters()), "parameters")
