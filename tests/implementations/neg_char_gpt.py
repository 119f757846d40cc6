"""(negative, looks like a language model) karpathy/ng-video-lecture `gpt.py` (the "Let's build GPT"
character-level GPT): token + position embedding tables, per-head key/query/value (bias=False) each with its
own PERSISTENT causal `tril` buffer, proj, ReLU FFN, ln_f, lm_head. Own modules, same keys/shapes/forward.

Trained as a character-level LM where the "text" is a digit image read row by row as 64 characters from a
17-letter alphabet (pixel intensities 0..16) -- train.py hands it images, loss_fn/evaluate convert.
"""
import torch
from torch import nn
import torch.nn.functional as F

from tests.implementations.common import make_expected, images_to_pixels

SOURCE = 'karpathy/ng-video-lecture@52201428ed7b46804849dea0b3ccf0de9df1a5c3:gpt.py'
VOCAB, BLOCK, N_EMBD, N_HEAD, N_LAYER, DROPOUT = 17, 64, 32, 4, 2, 0.0
HEAD = ['lm_head.']
TRAIN = dict(lr=3e-3, steps=200)

NOTES = """
* Keys: `token_embedding_table.weight` (V, C), `position_embedding_table.weight` (T, C),
  `blocks.{i}.sa.heads.{h}.{key,query,value}.weight` (head_size, C; no bias) and `blocks.{i}.sa.heads.{h}.tril`
  (T, T) lower-triangular ones -- a persistent causal-mask BUFFER per head --, `blocks.{i}.sa.proj`,
  `blocks.{i}.ffwd.net.{0,2}` (ReLU FFN 4x), `blocks.{i}.ln1`, `blocks.{i}.ln2`, `ln_f`, `lm_head` (C -> V).
* Structurally close to tintn's per-head ViT (`heads.{h}.query`) -- what separates it: nn.Embedding token table,
  position table as an Embedding, `tril` buffers, lm_head back to the vocabulary, no patch projection.
* forward(idx, targets=None) -> (logits (B,T,V), loss|None), pre-norm blocks, masked_fill(tril==0, -inf).
"""


class Head(nn.Module):
    def __init__(self, head_size):
        super().__init__()
        self.key = nn.Linear(N_EMBD, head_size, bias=False)
        self.query = nn.Linear(N_EMBD, head_size, bias=False)
        self.value = nn.Linear(N_EMBD, head_size, bias=False)
        self.register_buffer('tril', torch.tril(torch.ones(BLOCK, BLOCK)))
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, x):
        b, t, c = x.shape
        k, q = self.key(x), self.query(x)
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5
        wei = wei.masked_fill(self.tril[:t, :t] == 0, float('-inf'))
        return self.dropout(F.softmax(wei, dim=-1)) @ self.value(x)


class MultiHeadAttention(nn.Module):
    def __init__(self, num_heads, head_size):
        super().__init__()
        self.heads = nn.ModuleList([Head(head_size) for _ in range(num_heads)])
        self.proj = nn.Linear(head_size * num_heads, N_EMBD)
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, x):
        return self.dropout(self.proj(torch.cat([h(x) for h in self.heads], dim=-1)))


class FeedFoward(nn.Module):  # sic
    def __init__(self, n_embd):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.ReLU(), nn.Linear(4 * n_embd, n_embd),
                                 nn.Dropout(DROPOUT))

    def forward(self, x):
        return self.net(x)


class Block(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.sa = MultiHeadAttention(n_head, n_embd // n_head)
        self.ffwd = FeedFoward(n_embd)
        self.ln1 = nn.LayerNorm(n_embd)
        self.ln2 = nn.LayerNorm(n_embd)

    def forward(self, x):
        x = x + self.sa(self.ln1(x))
        return x + self.ffwd(self.ln2(x))


class GPTLanguageModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.token_embedding_table = nn.Embedding(VOCAB, N_EMBD)
        self.position_embedding_table = nn.Embedding(BLOCK, N_EMBD)
        self.blocks = nn.Sequential(*[Block(N_EMBD, N_HEAD) for _ in range(N_LAYER)])
        self.ln_f = nn.LayerNorm(N_EMBD)
        self.lm_head = nn.Linear(N_EMBD, VOCAB)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        b, t = idx.shape
        x = self.token_embedding_table(idx) + self.position_embedding_table(torch.arange(t, device=idx.device))
        logits = self.lm_head(self.ln_f(self.blocks(x)))
        loss = None if targets is None else F.cross_entropy(logits.view(b * t, -1), targets.reshape(b * t))
        return logits, loss


def _tokens(x):
    return images_to_pixels(x).flatten(1)          # (B, 64) ints 0..16, row-major


def loss_fn(model, x, y):
    t = _tokens(x)
    return model(t[:, :-1], t[:, 1:])[1]


@torch.no_grad()
def evaluate(model, x, y):
    t = _tokens(x)
    logits, loss = model(t[:, :-1], t[:, 1:])
    return {'next_token_acc': (logits.argmax(-1) == t[:, 1:]).float().mean().item(), 'loss': loss.item()}


def expected(num_classes=10, img_size=8, in_chans=1):
    bufs = {f'blocks.{i}.sa.heads.{h}.tril': 'mask' for i in range(N_LAYER) for h in range(N_HEAD)}
    return make_expected(SOURCE, img_size=img_size, in_chans=in_chans, num_classes=num_classes, is_vit=False,
                         looks_like='language_model', buffers=bufs, embed_dim=N_EMBD, depth=N_LAYER,
                         num_heads=N_HEAD, activation='relu', qkv_bias=False, pre_norm=True, final_norm=True,
                         output='(logits, loss) over the vocabulary')


EXPECTED = expected()


def build(num_classes=10, img_size=8, in_chans=1):
    return GPTLanguageModel()
