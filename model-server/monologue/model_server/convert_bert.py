"""Convert a sentence-transformers BERT checkpoint (safetensors + vocab) to GGUF.

llama.cpp's own convert_hf_to_gguf.py imports torch; this does the same for the
BERT family with only `gguf`, `safetensors` and `numpy`, writing the same
metadata and tensor names (2-D weights as F16 except the embeddings that are
added rather than multiplied, the rest F32, as the converter does by default).

    python -m monologue.model_server.convert_bert MODEL_DIR OUT.gguf
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gguf
import numpy as np
from safetensors import safe_open

SKIPPED = ("embeddings.position_ids", "pooler.")
# Added to the token embeddings elementwise; ggml's CPU add needs them in F32.
KEPT_F32 = ("position_embd.weight", "token_types.weight")


def _phantom_space(token: str) -> str:
    # llama.cpp's WPM tokenizer expects word starts marked with U+2581 and
    # continuation pieces without the "##" prefix.
    if token.startswith("[") and token.endswith("]"):
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


def _pooling_type(model_dir: Path) -> gguf.PoolingType:
    config = model_dir / "1_Pooling" / "config.json"
    if not config.exists():
        return gguf.PoolingType.CLS
    pooling = json.loads(config.read_text())
    if pooling.get("pooling_mode_mean_tokens"):
        return gguf.PoolingType.MEAN
    return gguf.PoolingType.CLS


def convert(model_dir: Path, out_path: Path) -> None:
    hp = json.loads((model_dir / "config.json").read_text())
    if hp.get("model_type") != "bert":
        raise SystemExit(f"{model_dir}: model_type {hp.get('model_type')!r} is not bert")
    arch = gguf.MODEL_ARCH.BERT
    writer = gguf.GGUFWriter(str(out_path), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(model_dir.parent.name if model_dir.name == "model" else model_dir.name)
    writer.add_context_length(hp["max_position_embeddings"])
    writer.add_embedding_length(hp["hidden_size"])
    writer.add_feed_forward_length(hp["intermediate_size"])
    writer.add_block_count(hp["num_hidden_layers"])
    writer.add_head_count(hp["num_attention_heads"])
    writer.add_layer_norm_eps(hp["layer_norm_eps"])
    writer.add_causal_attention(False)
    writer.add_pooling_type(_pooling_type(model_dir))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    tokens = (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    added = json.loads((model_dir / "tokenizer.json").read_text()).get("added_tokens", [])
    special = {t["content"] for t in added if t.get("special")}
    writer.add_token_type_count(hp.get("type_vocab_size", 1))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([_phantom_space(t) for t in tokens])
    writer.add_token_types(
        [gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens]
    )
    gguf.SpecialVocab(model_dir, n_vocab=len(tokens)).add_to_gguf(writer)

    names = gguf.get_tensor_name_map(arch, hp["num_hidden_layers"])
    with safe_open(str(model_dir / "model.safetensors"), "np") as weights:
        for key in weights.keys():
            if key.startswith(SKIPPED):
                continue
            name = names.get_name(key, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise SystemExit(f"unmapped tensor {key}")
            data = weights.get_tensor(key)
            half = data.ndim == 2 and name not in KEPT_F32
            data = data.astype(np.float16 if half else np.float32)
            writer.add_tensor(name, data)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
