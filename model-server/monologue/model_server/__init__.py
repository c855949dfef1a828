"""llama.cpp model server: one GGUF model, generation or embeddings, over gRPC."""
