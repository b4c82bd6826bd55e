//! Real video data: the datasets users bring (an OpenVid-1M or WebVid-style CSV next to a
//! folder of videos, or a plain folder of `name.mp4` + `name.txt`) and which frames of a video
//! make a training clip, decoded with FFmpeg.

pub mod cache_reader;
pub mod clip_frames;
pub mod dataset;
pub mod decode;
pub mod latent_cache;
pub mod parallel_decode;
pub mod prompt_set;
