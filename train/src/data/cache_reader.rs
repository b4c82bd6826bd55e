//! Random access to a finished latent cache ([`super::latent_cache`]): one clip's latents
//! `(L, F, h, w)` and text embedding `(T, D)` read straight from its shard file (only that
//! clip's bytes), for a distillation that trains on the cache.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::Deserialize;

use super::latent_cache::CacheIndex;
use crate::error::TrainError;

/// Where one tensor of a shard lies: its shape and the byte offset of its data in the file.
#[derive(Debug, Clone)]
struct Stored {
    shape: Vec<usize>,
    start: u64,
}

impl Stored {
    /// Bytes of one row (one clip).
    fn row_bytes(&self) -> usize {
        self.shape[1..].iter().product::<usize>() * 4
    }
}

/// One shard file: its clips' latents and text.
#[derive(Debug, Clone)]
struct ShardFile {
    path: PathBuf,
    latents: Stored,
    text: Stored,
}

/// A finished cache, opened for reading clip by clip.
#[derive(Debug, Clone)]
pub struct CacheReader {
    dir: PathBuf,
    shards: Vec<ShardFile>,
    captions: Vec<String>,
    /// `[L, F, h, w]` of every clip's latents.
    pub clip_dims: [usize; 4],
    /// `[T, D]` of every clip's text embedding.
    pub text_dims: [usize; 2],
}

#[derive(Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

impl CacheReader {
    /// Opens the cache in `dir`: its index must say it is complete and hold clips, and every
    /// shard must hold f32 `latents` and `text` of the same per-clip shape as the first.
    pub fn open(dir: &Path) -> Result<Self, TrainError> {
        let error = |message: String| TrainError::Dataset { path: dir.into(), message };
        let index = CacheIndex::read(dir)?
            .ok_or_else(|| error("no index.json: not a latent cache (make one with `avdm cache`)".into()))?;
        if !index.complete {
            return Err(error(format!(
                "the cache is unfinished ({} clips so far): run the same `avdm cache` command again to finish it",
                index.clips()
            )));
        }
        if index.clips() == 0 {
            return Err(error("the cache holds no clip".into()));
        }
        let mut shards = Vec::new();
        let mut captions = Vec::new();
        for info in &index.shards {
            let shard = read_header(&dir.join(&info.file))?;
            let clips = info.videos.len();
            let shard_error = |message: String| TrainError::Dataset { path: shard.path.clone(), message };
            for (name, stored, rank) in [("latents", &shard.latents, 5), ("text", &shard.text, 3)] {
                if stored.shape.len() != rank || stored.shape[0] != clips {
                    return Err(shard_error(format!(
                        "`{name}` has shape {:?}; the index lists {clips} clips of rank {}",
                        stored.shape,
                        rank - 1
                    )));
                }
            }
            if let Some(first) = shards.first().map(|s: &ShardFile| (&s.latents.shape[1..], &s.text.shape[1..]))
                && first != (&shard.latents.shape[1..], &shard.text.shape[1..])
            {
                return Err(shard_error(format!(
                    "holds clips {:?} with text {:?}, the first shard {:?} with {:?}",
                    &shard.latents.shape[1..],
                    &shard.text.shape[1..],
                    first.0,
                    first.1
                )));
            }
            captions.extend(info.captions.iter().cloned());
            shards.push(shard);
        }
        let (l, t) = (&shards[0].latents.shape, &shards[0].text.shape);
        Ok(Self { dir: dir.into(), clip_dims: [l[1], l[2], l[3], l[4]], text_dims: [t[1], t[2]], shards, captions })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Clips in the cache.
    pub fn len(&self) -> usize {
        self.captions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.captions.is_empty()
    }

    pub fn caption(&self, clip: usize) -> &str {
        &self.captions[clip]
    }

    /// The shard of clip `clip` (counted over all shards) and its row in it.
    fn locate(&self, clip: usize) -> Result<(&ShardFile, usize), TrainError> {
        let mut row = clip;
        for shard in &self.shards {
            let rows = shard.latents.shape[0];
            if row < rows {
                return Ok((shard, row));
            }
            row -= rows;
        }
        let message = format!("no clip {clip}: the cache holds {}", self.len());
        Err(TrainError::Dataset { path: self.dir.clone(), message })
    }

    /// Latents `(len, L, F, h, w)` and text `(len, T, D)` of the clips `clips`, in that order.
    pub fn batch(&self, clips: &[usize], device: &Device) -> Result<(Tensor<5>, Tensor<3>), TrainError> {
        let (mut latents, mut text) = (Vec::new(), Vec::new());
        for &clip in clips {
            let (shard, row) = self.locate(clip)?;
            let mut file = File::open(&shard.path).map_err(TrainError::io(&shard.path))?;
            latents.extend(read_row(&mut file, &shard.path, &shard.latents, row)?);
            text.extend(read_row(&mut file, &shard.path, &shard.text, row)?);
        }
        let [l, f, h, w] = self.clip_dims;
        let [t, d] = self.text_dims;
        let n = clips.len();
        Ok((
            Tensor::from_data(TensorData::new(latents, [n, l, f, h, w]), device),
            Tensor::from_data(TensorData::new(text, [n, t, d]), device),
        ))
    }
}

/// The `latents` and `text` entries of a shard's safetensors header.
fn read_header(path: &Path) -> Result<ShardFile, TrainError> {
    let error = |message: String| TrainError::Dataset { path: path.into(), message };
    let mut file = File::open(path).map_err(TrainError::io(path))?;
    let file_len = file.metadata().map_err(TrainError::io(path))?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|_| error("too short for a safetensors file".into()))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > file_len.saturating_sub(8) || header_len > 100 << 20 {
        return Err(error(format!("a header of {header_len} bytes does not fit the file: not a cache shard")));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(TrainError::io(path))?;
    let mut entries: std::collections::HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| error(format!("unreadable header: {e}")))?;
    let data_start = 8 + header_len;
    let mut stored = |name: &str| -> Result<Stored, TrainError> {
        let value = entries.remove(name).ok_or_else(|| error(format!("no `{name}` tensor: not a cache shard")))?;
        let entry: HeaderEntry =
            serde_json::from_value(value).map_err(|e| error(format!("`{name}`: unreadable entry: {e}")))?;
        if entry.dtype != "F32" {
            return Err(error(format!("`{name}` is {}, the cache writes F32", entry.dtype)));
        }
        let bytes = entry.shape.iter().product::<usize>() as u64 * 4;
        let [from, to] = entry.data_offsets;
        if to.checked_sub(from) != Some(bytes) || data_start + to > file_len {
            return Err(error(format!("`{name}` ({:?}) does not fit the file: truncated or damaged", entry.shape)));
        }
        Ok(Stored { shape: entry.shape, start: data_start + from })
    };
    let latents = stored("latents")?;
    let text = stored("text")?;
    Ok(ShardFile { path: path.into(), latents, text })
}

/// The f32 values of row `row` of a stored tensor of the shard `file` (at `path`).
fn read_row(file: &mut File, path: &Path, stored: &Stored, row: usize) -> Result<Vec<f32>, TrainError> {
    let len = stored.row_bytes();
    file.seek(SeekFrom::Start(stored.start + (row * len) as u64)).map_err(TrainError::io(path))?;
    let mut bytes = vec![0u8; len];
    file.read_exact(&mut bytes).map_err(TrainError::io(path))?;
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}
