//! transformers `CLIPTextEmbeddings`: learned token and position embeddings.

use burn::nn::{Embedding, EmbeddingConfig};
use burn::prelude::*;

/// `token_embedding(ids) + position_embedding(0..L)`.
#[derive(Module, Debug)]
pub struct ClipTextEmbeddings {
    /// `[vocab_size, dim]`.
    pub token_embedding: Embedding,
    /// `[max_positions, dim]`.
    pub position_embedding: Embedding,
}

impl ClipTextEmbeddings {
    pub fn new(vocab_size: usize, max_positions: usize, dim: usize, device: &Device) -> Self {
        Self {
            token_embedding: EmbeddingConfig::new(vocab_size, dim).init(device),
            position_embedding: EmbeddingConfig::new(max_positions, dim).init(device),
        }
    }

    /// `ids (B, L)` with `L <= max_positions` and every id below `vocab_size` -> `(B, L, dim)`.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, len] = ids.dims();
        let positions = Tensor::<1, Int>::arange(0..len as i64, &ids.device()).unsqueeze::<2>();
        self.token_embedding.forward(ids) + self.position_embedding.forward(positions)
    }
}
