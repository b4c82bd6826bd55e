//! Decoding training clips with the FFmpeg programs (`ffprobe` to count frames, `ffmpeg` to
//! pick, resize and crop them): the chosen frames, the short side resized (bilinear) to
//! `size`, a centred `size x size` crop, RGB in [-1, 1].
//!
//! Every failure (not a video, truncated, too short, the programs missing) is a `String`
//! reason: callers skip the video and count it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use avdm_import::video_writer::ffmpeg_program;

use super::clip_frames::{ClipSampling, ClipStart};

/// The `ffprobe` program: `$AVDM_FFPROBE` if set, else `ffprobe` on the PATH.
pub fn ffprobe_program() -> PathBuf {
    std::env::var_os("AVDM_FFPROBE").map_or_else(|| PathBuf::from("ffprobe"), PathBuf::from)
}

/// The first video stream of a file, as ffprobe reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoInfo {
    pub width: usize,
    pub height: usize,
    /// Frames counted by demuxing the stream (one packet per frame).
    pub frames: usize,
}

/// A decoded clip: `data` is `(3, frames, size, size)`, channel-major like the models' input
/// `(B, C, F, H, W)` without the batch, values in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    pub frames: usize,
    pub size: usize,
    pub data: Vec<f32>,
}

/// Size and frame count of the first video stream of `path`.
pub fn probe(path: &Path) -> Result<VideoInfo, String> {
    let out = Command::new(ffprobe_program())
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets"])
        .args(["-show_entries", "stream=width,height,nb_read_packets", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .map_err(|e| {
            format!("cannot run {}: {e} (install FFmpeg, e.g. `apt-get install ffmpeg`)", ffprobe_program().display())
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let numbers: Vec<usize> = text.trim().split(',').filter_map(|v| v.trim().parse().ok()).collect();
    match numbers[..] {
        [width, height, frames] if out.status.success() && width > 0 && height > 0 => {
            Ok(VideoInfo { width, height, frames })
        }
        _ => Err(format!("not a readable video ({})", first_line(&out.stderr).unwrap_or("no video stream"))),
    }
}

/// The clip of `path` cut by `sampling` from `start`, at `size x size`.
pub fn read_clip(path: &Path, sampling: &ClipSampling, start: ClipStart, size: usize) -> Result<Clip, String> {
    read_probed_clip(path, &probe(path)?, sampling, start, size)
}

/// [`read_clip`] of a video already probed (`info`).
pub fn read_probed_clip(
    path: &Path,
    info: &VideoInfo,
    sampling: &ClipSampling,
    start: ClipStart,
    size: usize,
) -> Result<Clip, String> {
    let indices = sampling.indices(info.frames, start).ok_or_else(|| {
        format!("too short: {} frames, the clip needs {} at stride {}", info.frames, sampling.frames, sampling.stride)
    })?;
    let pixels = decode_frames(path, info, &indices, size)?;
    Ok(Clip { frames: indices.len(), size, data: to_channel_major(&pixels, indices.len(), size) })
}

/// Frames `indices` of the video, short side resized to `size` and centre-cropped, as RGB
/// bytes `(F, size, size, 3)`.
fn decode_frames(path: &Path, info: &VideoInfo, indices: &[usize], size: usize) -> Result<Vec<u8>, String> {
    let (width, height) = resized(info.width, info.height, size);
    let select: Vec<String> = indices.iter().map(|i| format!("eq(n\\,{i})")).collect();
    let filter = format!("select='{}',scale={width}:{height}:flags=bilinear,crop={size}:{size}", select.join("+"));
    let out = Command::new(ffmpeg_program())
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-vf", &filter, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!("cannot run {}: {e} (install FFmpeg, e.g. `apt-get install ffmpeg`)", ffmpeg_program().display())
        })?;
    let frame_bytes = size * size * 3;
    let decoded = out.stdout.len() / frame_bytes;
    if !out.status.success() || decoded != indices.len() {
        let reason = first_line(&out.stderr).unwrap_or("the stream ended early");
        return Err(format!("decoded {decoded} of {} frames ({reason})", indices.len()));
    }
    Ok(out.stdout)
}

/// The size after resizing the short side to `size`, keeping the aspect ratio.
fn resized(width: usize, height: usize, size: usize) -> (usize, usize) {
    let long = |long: usize, short: usize| ((long * size) as f64 / short as f64).round().max(size as f64) as usize;
    if width <= height { (size, long(height, width)) } else { (long(width, height), size) }
}

/// `(F, H, W, 3)` bytes to `(3, F, H, W)` values in [-1, 1].
fn to_channel_major(pixels: &[u8], frames: usize, size: usize) -> Vec<f32> {
    let plane = frames * size * size;
    let mut data = vec![0.0; 3 * plane];
    for (i, rgb) in pixels.chunks_exact(3).enumerate() {
        for (c, &v) in rgb.iter().enumerate() {
            data[c * plane + i] = v as f32 / 127.5 - 1.0;
        }
    }
    data
}

/// The first message of FFmpeg's stderr, without its `[demuxer @ 0x…] ` prefix (an address
/// that changes from run to run).
fn first_line(bytes: &[u8]) -> Option<&str> {
    let line = std::str::from_utf8(bytes).ok()?.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(match line.strip_prefix('[').and_then(|rest| rest.split_once("] ")) {
        Some((_, message)) => message,
        None => line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_short_side_becomes_the_size() {
        assert_eq!(resized(1920, 1080, 512), (910, 512));
        assert_eq!(resized(1080, 1920, 512), (512, 910));
        assert_eq!(resized(45, 31, 16), (23, 16));
        assert_eq!(resized(64, 64, 32), (32, 32));
    }

    #[test]
    fn ffmpeg_messages_lose_their_address_prefix() {
        assert_eq!(first_line(b"\n[mov,mp4 @ 0x55d0b6d4d8c0] moov atom not found\nmore"), Some("moov atom not found"));
        assert_eq!(first_line(b"Invalid data found"), Some("Invalid data found"));
        assert_eq!(first_line(b""), None);
    }

    #[test]
    fn bytes_become_channel_major_values() {
        // 2 frames of 1x1: (255, 0, 127.5-ish), (0, 255, 51).
        let data = to_channel_major(&[255, 0, 128, 0, 255, 51], 2, 1);
        let expected = [1.0, -1.0, -1.0, 1.0, 128.0 / 127.5 - 1.0, 51.0 / 127.5 - 1.0];
        for (a, b) in data.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{data:?}");
        }
    }
}
