//! Writing generated clips: an animated GIF, an MP4 (through the system `ffmpeg`), or a folder
//! of PNG frames, chosen by the output path. Every output is written under a temporary name
//! and renamed into place, so a failure never leaves a half-written file.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use burn::prelude::*;

use crate::error::ImportError;

/// 8-bit RGB frames of one clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Video {
    pub width: u32,
    pub height: u32,
    /// One `height * width * 3` row-major RGB buffer per frame.
    pub frames: Vec<Vec<u8>>,
}

impl Video {
    /// `frames (F, 3, H, W)` in `[0, 1]` -> 8-bit RGB, rounded as diffusers' `numpy_to_pil`.
    pub fn from_tensor(frames: Tensor<4>) -> Self {
        let [f, _, h, w] = frames.dims();
        let hwc = (frames.clamp(0.0, 1.0) * 255.0).round().permute([0, 2, 3, 1]);
        let values: Vec<f32> = hwc.into_data().convert::<f32>().try_to_vec().expect("f32 frames");
        let bytes: Vec<u8> = values.into_iter().map(|v| v as u8).collect();
        let frames = bytes.chunks(h * w * 3).take(f).map(<[u8]>::to_vec).collect();
        Self { width: w as u32, height: h as u32, frames }
    }
}

/// What an output path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoFormat {
    Gif,
    Mp4,
    /// `frame_0000.png`, `frame_0001.png`, ... in a folder (a path without extension).
    PngFolder,
}

fn output_error(path: &Path, message: impl Into<String>) -> ImportError {
    ImportError::Output { path: path.into(), message: message.into() }
}

/// The `ffmpeg` program: `$AVDM_FFMPEG` if set, else `ffmpeg` on the PATH.
pub fn ffmpeg_program() -> PathBuf {
    std::env::var_os("AVDM_FFMPEG").map_or_else(|| PathBuf::from("ffmpeg"), PathBuf::from)
}

impl VideoFormat {
    /// Checks an output path before any work is done: a known extension (`.gif`, `.mp4`, or
    /// none for a PNG folder), an existing parent folder, no non-empty folder in the way, and
    /// `ffmpeg` available for MP4.
    pub fn for_output(path: &Path) -> Result<Self, ImportError> {
        let format = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("gif") => Self::Gif,
            Some("mp4") => Self::Mp4,
            None => Self::PngFolder,
            Some(other) => {
                return Err(output_error(
                    path,
                    format!(
                        "unsupported extension `.{other}` (use .gif, .mp4, or a path without extension for PNG frames)"
                    ),
                ));
            }
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !parent.is_dir() {
            return Err(output_error(path, format!("the folder {} does not exist", parent.display())));
        }
        match format {
            Self::PngFolder if path.is_dir() && fs::read_dir(path).map(|mut d| d.next().is_some()).unwrap_or(true) => {
                Err(output_error(path, "the folder exists and is not empty"))
            }
            _ if path.is_dir() && format != Self::PngFolder => Err(output_error(path, "is a folder")),
            Self::Mp4 => {
                let program = ffmpeg_program();
                match Command::new(&program).arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
                    Ok(status) if status.success() => Ok(format),
                    _ => Err(output_error(
                        path,
                        format!(
                            "writing MP4 needs ffmpeg, and `{}` could not be run (install it, e.g. `apt-get install ffmpeg`, or write .gif / PNG frames)",
                            program.display()
                        ),
                    )),
                }
            }
            _ => Ok(format),
        }
    }
}

/// A temporary sibling of `path` (same folder, so the final rename is atomic).
fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Writes `video` at `path` in the format its name asks for, at `fps` frames per second.
pub fn write_video(video: &Video, path: &Path, fps: u32) -> Result<VideoFormat, ImportError> {
    let format = VideoFormat::for_output(path)?;
    if video.frames.is_empty() {
        return Err(output_error(path, "the clip has no frames"));
    }
    let tmp = temporary_sibling(path);
    let written = match format {
        VideoFormat::Gif => write_gif(video, &tmp, fps.max(1)),
        VideoFormat::Mp4 => write_mp4(video, &tmp, fps.max(1)),
        VideoFormat::PngFolder => write_png_folder(video, &tmp),
    };
    let renamed = written.and_then(|()| {
        if format == VideoFormat::PngFolder && path.is_dir() {
            fs::remove_dir(path).map_err(|e| output_error(path, e.to_string()))?;
        }
        fs::rename(&tmp, path).map_err(|e| output_error(path, format!("cannot move the finished file in place: {e}")))
    });
    if let Err(e) = renamed {
        let _ = if tmp.is_dir() { fs::remove_dir_all(&tmp) } else { fs::remove_file(&tmp) };
        return Err(e);
    }
    Ok(format)
}

fn create(path: &Path) -> Result<BufWriter<File>, ImportError> {
    File::create(path).map(BufWriter::new).map_err(|e| output_error(path, e.to_string()))
}

fn write_gif(video: &Video, path: &Path, fps: u32) -> Result<(), ImportError> {
    let err = |e: gif::EncodingError| output_error(path, e.to_string());
    let (w, h) = (video.width as u16, video.height as u16);
    let mut encoder = gif::Encoder::new(create(path)?, w, h, &[]).map_err(err)?;
    encoder.set_repeat(gif::Repeat::Infinite).map_err(err)?;
    let delay = (100.0 / fps as f64).round() as u16;
    for rgb in &video.frames {
        let mut frame = gif::Frame::from_rgb_speed(w, h, rgb, 10);
        frame.delay = delay;
        encoder.write_frame(&frame).map_err(err)?;
    }
    encoder
        .into_inner()
        .map_err(|e| output_error(path, e.to_string()))?
        .flush()
        .map_err(|e| output_error(path, e.to_string()))
}

fn write_png(rgb: &[u8], width: u32, height: u32, path: &Path) -> Result<(), ImportError> {
    let err = |e: png::EncodingError| output_error(path, e.to_string());
    let mut encoder = png::Encoder::new(create(path)?, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(rgb).map_err(err)?;
    writer.finish().map_err(err)
}

fn write_png_folder(video: &Video, dir: &Path) -> Result<(), ImportError> {
    fs::create_dir(dir).map_err(|e| output_error(dir, e.to_string()))?;
    for (i, rgb) in video.frames.iter().enumerate() {
        write_png(rgb, video.width, video.height, &dir.join(format!("frame_{i:04}.png")))?;
    }
    Ok(())
}

fn write_mp4(video: &Video, path: &Path, fps: u32) -> Result<(), ImportError> {
    let size = format!("{}x{}", video.width, video.height);
    let mut child = Command::new(ffmpeg_program())
        .args(["-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", &size])
        .args(["-r", &fps.to_string(), "-i", "-", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mp4"])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| output_error(path, format!("cannot run ffmpeg: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let fed = video.frames.iter().try_for_each(|rgb| stdin.write_all(rgb));
    drop(stdin);
    let output = child.wait_with_output().map_err(|e| output_error(path, format!("ffmpeg failed: {e}")))?;
    if !output.status.success() || fed.is_err() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(output_error(path, format!("ffmpeg failed ({}): {}", output.status, stderr.trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip() -> Video {
        let device = Device::flex();
        let frames = Tensor::<4>::from_floats([[[[0.0, 0.5]], [[1.0, 0.25]], [[0.002, 0.998]]]], &device);
        Video::from_tensor(frames.repeat_dim(0, 3))
    }

    #[test]
    fn frames_round_like_diffusers() {
        let v = clip();
        assert_eq!((v.width, v.height, v.frames.len()), (2, 1, 3));
        assert_eq!(v.frames[0], vec![0, 255, 1, 128, 64, 254]);
    }

    #[test]
    fn formats_follow_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(VideoFormat::for_output(&tmp.path().join("a.GIF")).unwrap(), VideoFormat::Gif);
        assert_eq!(VideoFormat::for_output(&tmp.path().join("frames")).unwrap(), VideoFormat::PngFolder);
        let err = VideoFormat::for_output(&tmp.path().join("a.avi")).unwrap_err().to_string();
        assert!(err.contains("unsupported extension `.avi`"), "{err}");
        let err = VideoFormat::for_output(&tmp.path().join("missing/a.gif")).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        fs::write(tmp.path().join("x"), b"").unwrap();
        let err = VideoFormat::for_output(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");
    }

    #[test]
    fn gif_and_png_frames_are_written_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let v = clip();
        write_video(&v, &tmp.path().join("c.gif"), 8).unwrap();
        let mut decoder = gif::DecodeOptions::new().read_info(File::open(tmp.path().join("c.gif")).unwrap()).unwrap();
        let mut frames = 0;
        while decoder.read_next_frame().unwrap().is_some() {
            frames += 1;
        }
        assert_eq!(frames, 3);
        write_video(&v, &tmp.path().join("frames"), 8).unwrap();
        let png =
            png::Decoder::new(std::io::BufReader::new(File::open(tmp.path().join("frames/frame_0002.png")).unwrap()));
        let mut reader = png.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        assert_eq!(buf, v.frames[2]);
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
    }
}
