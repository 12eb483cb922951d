"""Reference-based metrics behind one interface.

Every metric is an object with `names` (the `scores` keys it writes) and
`compute(predictions, references) -> {name: [float, ...]}`, the call shape of an `evaluate`
module. The libraries are called directly: `evaluate.load("bleu")` and friends need the hub, and a
project-shipped evaluate module would only wrap the same library calls (see docs/metrics.md).

Model-based metrics load their model once (in __init__), sort the pairs by length and score them
in batches, then put the scores back in input order, so batch size and input order change nothing
beyond float noise. Texts longer than a metric's token limit are cut by a stated rule and counted
in `counts` (the stage report sums them).

Empty texts (empty after strip): BLEU, ROUGE and BERTScore give 0.0 when the candidate or the
reference is empty; the log-likelihood metrics and BLEURT score them as they are (the reference is
always followed by EOS, so even an empty reference has one token to score; BLEURT's pair keeps its
[CLS]/[SEP] tokens, so an empty side is a finite regression output).
"""

from __future__ import annotations

from collections import Counter

import torch

from llmblend.errors import LLMBlendError
from llmblend.models import takes_logits_to_keep


def is_empty(text: str) -> bool:
    return not text.strip()


def length_batches(lengths: list[int], batch_size: int):
    """Index batches over the items sorted by length (longest first), so padding stays small and
    an out-of-memory error, if any, comes with the first batch."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def _pad(seqs: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


class Metric:
    names: tuple[str, ...] = ()

    def __init__(self):
        self.counts: Counter = Counter()

    def compute(self, predictions: list[str], references: list[str]) -> dict[str, list[float]]:
        raise NotImplementedError

    def info(self) -> dict:
        return {}


class Bleu(Metric):
    """Sentence BLEU of sacrebleu (0-100, its default exp smoothing), as the reference code."""

    names = ("bleu",)

    def compute(self, predictions, references):
        from sacrebleu import sentence_bleu

        return {"bleu": [0.0 if is_empty(p) or is_empty(r) else float(sentence_bleu(p, [r]).score)
                         for p, r in zip(predictions, references)]}

    def info(self):
        import sacrebleu

        return {"library": f"sacrebleu {sacrebleu.__version__}", "call": "sentence_bleu(candidate, [reference])"}


class Rouge(Metric):
    """ROUGE-1/2/L/Lsum F-measure (rouge_score, Porter stemmer). For rougeLsum both texts are split
    into sentences, one a line, as the reference code does with nltk's sent_tokenize; the English
    punkt model is not available offline, so an untrained Punkt splitter does it (see docs)."""

    names = ("rouge1", "rouge2", "rougeL", "rougeLsum")

    def __init__(self):
        super().__init__()
        from nltk.tokenize.punkt import PunktSentenceTokenizer
        from rouge_score import rouge_scorer

        self._scorer = rouge_scorer.RougeScorer(list(self.names), use_stemmer=True, split_summaries=False)
        self._sentences = PunktSentenceTokenizer()

    def _split(self, text: str) -> str:
        return "\n".join(s for line in text.splitlines() for s in self._sentences.tokenize(line))

    def compute(self, predictions, references):
        out = {n: [] for n in self.names}
        for p, r in zip(predictions, references):
            if is_empty(p) or is_empty(r):
                for n in self.names:
                    out[n].append(0.0)
                continue
            s = self._scorer.score(self._split(r), self._split(p.replace("<n>", " ")))
            for n in self.names:
                out[n].append(float(s[n].fmeasure))
        return out

    def info(self):
        return {"library": "rouge_score", "use_stemmer": True, "value": "fmeasure",
                "rougeLsum_sentences": "nltk PunktSentenceTokenizer (untrained)"}


class TokenLimit:
    """Keep the first `limit` tokens of a token list; count the texts that lost some."""

    def __init__(self, limit: int | None, counts: Counter, key: str):
        self.limit, self.counts, self.key = limit, counts, key

    def __call__(self, ids: list[int]) -> list[int]:
        if self.limit is not None and len(ids) > self.limit:
            self.counts[self.key] += 1
            return ids[: self.limit]
        return ids


class Seq2SeqLogLikelihood(Metric):
    """BARTScore: the mean token log-likelihood of the reference given the candidate under a
    seq2seq model (candidate -> encoder, reference -> labels, special tokens included as the
    tokenizer adds them). Each side keeps its first `max_*_tokens` tokens (the final special token
    is kept: the cut happens inside the text)."""

    def __init__(self, name: str, model_dir, batch_size: int = 8, max_candidate_tokens: int = 1024,
                 max_reference_tokens: int = 1024, device: str = "cpu"):
        super().__init__()
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.names = (name,)
        self.model_dir, self.batch_size, self.device = str(model_dir), batch_size, device
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).to(device).eval()
        self.max_candidate_tokens, self.max_reference_tokens = max_candidate_tokens, max_reference_tokens

    def _encode(self, texts, limit, key):
        out = []
        for ids in self.tok(list(texts), add_special_tokens=True)["input_ids"]:
            if limit is not None and len(ids) > limit:
                self.counts[key] += 1
                ids = ids[: limit - 1] + ids[-1:]
            out.append(ids)
        return out

    @torch.inference_mode()
    def compute(self, predictions, references):
        src = self._encode(predictions, self.max_candidate_tokens, "truncated_candidate")
        tgt = self._encode(references, self.max_reference_tokens, "truncated_reference")
        pad = self.tok.pad_token_id
        scores = [0.0] * len(src)
        for batch in length_batches([len(src[i]) + len(tgt[i]) for i in range(len(src))], self.batch_size):
            input_ids = _pad([src[i] for i in batch], pad).to(self.device)
            labels = _pad([tgt[i] for i in batch], -100).to(self.device)
            logits = self.model(input_ids=input_ids, attention_mask=(input_ids != pad) if pad is not None
                                else None, labels=labels).logits
            mean = _mean_label_logprob(logits, labels)
            for j, i in enumerate(batch):
                scores[i] = float(mean[j])
        return {self.names[0]: scores}

    def info(self):
        return {"model": self.model_dir, "class": type(self.model).__name__,
                "max_candidate_tokens": self.max_candidate_tokens, "max_reference_tokens": self.max_reference_tokens}


def causal_logits_from(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, first: int) -> torch.Tensor:
    """A causal LM's logits at positions `first`.. only: the scores here need the positions of the
    scored text, and the vocabulary projection with its softmax over the whole sequence is a fifth of
    a small model's work (`logits_to_keep` keeps the last positions; a model without it computes all
    and they are cut)."""
    if takes_logits_to_keep(model):
        return model(input_ids=input_ids, attention_mask=attention_mask,
                     logits_to_keep=input_ids.shape[1] - first).logits
    return model(input_ids=input_ids, attention_mask=attention_mask).logits[:, first:]


def _mean_label_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row: the mean over positions with a label (label != -100) of log p(label)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    mask = labels != -100
    picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1) / mask.sum(-1)


class CausalLogLikelihood(Metric):
    """BARTScore's quantity with a causal LM: the mean token log-likelihood of the reference
    (followed by EOS) after a prompt that holds the candidate. Token pieces are tokenized apart
    (template head, candidate, template tail, reference) and joined, so a text never merges with
    the template. The candidate keeps its first `max_candidate_tokens` tokens, the reference its
    first `max_reference_tokens` (EOS is added after the cut)."""

    def __init__(self, name: str, model_dir, template: str, batch_size: int = 8,
                 max_candidate_tokens: int = 256, max_reference_tokens: int = 256, device: str = "cpu"):
        super().__init__()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if template.count("{candidate}") != 1:
            raise LLMBlendError(f"metrics.{name}.template must contain '{{candidate}}' exactly once")
        self.names = (name,)
        self.model_dir, self.template, self.batch_size, self.device = str(model_dir), template, batch_size, device
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        if self.tok.eos_token_id is None:
            raise LLMBlendError(f"{model_dir}: the tokenizer has no EOS token; {name} scores the reference + EOS")
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).to(device).eval()
        head, tail = template.split("{candidate}")
        self._head, self._tail = self._ids(head), self._ids(tail)
        self.max_candidate_tokens, self.max_reference_tokens = max_candidate_tokens, max_reference_tokens

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"] if text else []

    def encode(self, candidate: str, reference: str) -> tuple[list[int], list[int]]:
        """(prompt ids, reference ids + EOS) after truncation."""
        cand = TokenLimit(self.max_candidate_tokens, self.counts, "truncated_candidate")(self._ids(candidate))
        ref = TokenLimit(self.max_reference_tokens, self.counts, "truncated_reference")(self._ids(reference))
        return self._head + cand + self._tail, ref + [self.tok.eos_token_id]

    @torch.inference_mode()
    def compute(self, predictions, references):
        pairs = [self.encode(p, r) for p, r in zip(predictions, references)]
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        scores = [0.0] * len(pairs)
        for batch in length_batches([len(a) + len(b) for a, b in pairs], self.batch_size):
            seqs = [pairs[i][0] + pairs[i][1] for i in batch]
            # labels: -100 on the prompt, the reference token ids where they are predicted
            labels = [[-100] * len(pairs[i][0]) + pairs[i][1] for i in batch]
            input_ids, lab = _pad(seqs, pad), _pad(labels, -100)
            attn = _pad([[1] * len(s) for s in seqs], 0)
            # the logits at position t predict token t+1: only the reference's positions need them
            first = max(min(len(pairs[i][0]) for i in batch) - 1, 0)
            logits = causal_logits_from(self.model, input_ids.to(self.device), attn.to(self.device), first)
            mean = _mean_label_logprob(logits[:, :-1], lab[:, first + 1:].to(self.device))
            for j, i in enumerate(batch):
                scores[i] = float(mean[j])
        return {self.names[0]: scores}

    def info(self):
        return {"model": self.model_dir, "class": type(self.model).__name__, "template": self.template,
                "max_candidate_tokens": self.max_candidate_tokens, "max_reference_tokens": self.max_reference_tokens}


class BertScore(Metric):
    """BERTScore F1 of bert_score (no idf, no baseline rescaling), model and layer as settings.
    bert_score cuts each text at the tokenizer's model_max_length; such texts are counted."""

    names = ("bertscore",)

    def __init__(self, model_dir, num_layers: int, batch_size: int = 16, device: str = "cpu"):
        super().__init__()
        from bert_score import BERTScorer

        self.model_dir, self.num_layers, self.batch_size = str(model_dir), num_layers, batch_size
        self.scorer = BERTScorer(model_type=self.model_dir, num_layers=num_layers, batch_size=batch_size,
                                 idf=False, rescale_with_baseline=False, device=device)
        self.max_tokens = min(self.scorer._tokenizer.model_max_length, 100_000)

    def compute(self, predictions, references):
        scores = [0.0] * len(predictions)
        todo = [i for i, (p, r) in enumerate(zip(predictions, references)) if not (is_empty(p) or is_empty(r))]
        if todo:
            tok = self.scorer._tokenizer
            for key, texts in (("truncated_candidate", predictions), ("truncated_reference", references)):
                lens = tok([texts[i] for i in todo], add_special_tokens=True)["input_ids"]
                self.counts[key] += sum(len(ids) > self.max_tokens for ids in lens)
            _, _, f1 = self.scorer.score([predictions[i] for i in todo], [references[i] for i in todo],
                                         batch_size=self.batch_size)
            for i, f in zip(todo, f1.tolist()):
                scores[i] = float(f)
        return {"bertscore": scores}

    def info(self):
        import bert_score

        return {"model": self.model_dir, "num_layers": self.num_layers, "value": "F1", "idf": False,
                "rescale_with_baseline": False, "max_tokens": self.max_tokens,
                "library": f"bert_score {bert_score.__version__}"}


class Bleurt(Metric):
    """BLEURT through the bleurt-pytorch port: the regression output for the pair (reference,
    candidate), encoded as BLEURT does: [CLS] reference [SEP] candidate [SEP], segment ids 0 then 1.
    A pair longer than `max_tokens` (special tokens included) loses one token at a time from the
    end of its longer side (the tokenizer's `longest_first`, BLEURT's own rule); such pairs are
    counted as `truncated_pair`. The port is imported through `bleurt_compat` (transformers 5)."""

    names = ("bleurt",)

    def __init__(self, model_dir, batch_size: int = 16, max_tokens: int = 128, device: str = "cpu"):
        super().__init__()
        try:
            from llmblend.metrics.bleurt_compat import import_bleurt

            model_cls, tok_cls = import_bleurt()
        except ImportError as e:
            raise LLMBlendError(f"bleurt is enabled but the bleurt-pytorch port cannot be imported ({e}); "
                                "install bleurt-pytorch==0.0.1 (requirements.txt) or disable metrics.bleurt") from None
        self.model_dir, self.batch_size, self.max_tokens, self.device = str(model_dir), batch_size, max_tokens, device
        self.tok = tok_cls.from_pretrained(model_dir)
        self.model = model_cls.from_pretrained(model_dir).to(device).eval()
        if max_tokens > self.model.config.max_position_embeddings:
            raise LLMBlendError(f"metrics.bleurt.max_tokens={max_tokens} exceeds the model's "
                                f"{self.model.config.max_position_embeddings} positions ({model_dir})")

    @torch.inference_mode()
    def compute(self, predictions, references):
        full = self.tok(list(references), list(predictions))["input_ids"]
        self.counts["truncated_pair"] += sum(len(ids) > self.max_tokens for ids in full)
        scores = [0.0] * len(predictions)
        for batch in length_batches([len(ids) for ids in full], self.batch_size):
            enc = self.tok([references[i] for i in batch], [predictions[i] for i in batch], padding="longest",
                           truncation="longest_first", max_length=self.max_tokens, return_tensors="pt")
            out = self.model(**enc.to(self.device)).logits[:, 0].tolist()
            for j, i in enumerate(batch):
                scores[i] = float(out[j])
        return {"bleurt": scores}

    def info(self):
        from importlib.metadata import version

        return {"model": self.model_dir, "max_tokens": self.max_tokens, "pair": "(reference, candidate)",
                "truncation": "longest_first", "library": f"bleurt-pytorch {version('bleurt-pytorch')}"}
