//! Decoding real video files made by ffmpeg inside the test: odd sizes, portrait and
//! landscape, frame rates, a video shorter than the clip, a truncated file, a non-video file.

use std::path::{Path, PathBuf};
use std::process::Command;

use avdm_train::data::clip_frames::{ClipSampling, ClipStart, ShortVideos};
use avdm_train::data::decode::{Clip, probe, read_clip};

/// Encodes `frames` frames of the lavfi graph `source` (at `fps`) losslessly to `path`.
fn make_video(path: &Path, source: &str, fps: u32, frames: usize) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", &format!("{source},fps={fps}")])
        .args(["-frames:v", &frames.to_string(), "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p"])
        .arg(path)
        .status()
        .expect("ffmpeg runs (the tests need FFmpeg: apt-get install ffmpeg)");
    assert!(status.success(), "ffmpeg could not make {}", path.display());
}

/// A grey video whose brightness grows with the frame number.
fn ramp(dir: &Path, name: &str, size: &str, fps: u32, frames: usize) -> PathBuf {
    let path = dir.join(name);
    make_video(
        &path,
        &format!("color=black:s={size}:r={fps},format=yuv444p,geq=lum='16+N*5':cb=128:cr=128"),
        fps,
        frames,
    );
    path
}

fn frame_mean(clip: &Clip, frame: usize) -> f32 {
    let plane = clip.frames * clip.size * clip.size;
    let pixels = clip.size * clip.size;
    let start = frame * pixels;
    (0..3).map(|c| clip.data[c * plane + start..c * plane + start + pixels].iter().sum::<f32>()).sum::<f32>()
        / (3 * pixels) as f32
}

fn sampling(frames: usize, stride: usize) -> ClipSampling {
    ClipSampling { frames, stride, short_videos: ShortVideos::ReduceStride }
}

#[test]
fn frames_follow_the_stride_at_any_size_and_frame_rate() {
    let dir = tempfile::tempdir().unwrap();
    for (name, size, fps) in [("landscape.mp4", "45x31", 24), ("portrait.mp4", "31x45", 7)] {
        let path = ramp(dir.path(), name, size, fps, 40);
        let info = probe(&path).unwrap();
        assert_eq!(info.frames, 40, "{name}");
        let odd: Vec<usize> = size.split('x').map(|v| v.parse().unwrap()).collect();
        assert_eq!((info.width, info.height), (odd[0], odd[1]), "{name}");
        // Every frame, then every 4th from a random start: the strided clip is the same frames.
        let all = read_clip(&path, &sampling(40, 1), ClipStart::First, 16).unwrap();
        let clip = read_clip(&path, &sampling(8, 4), ClipStart::Random(5), 16).unwrap();
        assert_eq!((clip.frames, clip.size, clip.data.len()), (8, 16, 3 * 8 * 16 * 16));
        // A random start of 5 among the 40 - 29 + 1 = 12 starts an 8-frame clip at stride 4 has.
        let starts = 40 - (8 - 1) * 4;
        let start = 5 % starts;
        for i in 0..8 {
            let (got, want) = (frame_mean(&clip, i), frame_mean(&all, start + 4 * i));
            assert!((got - want).abs() < 0.01, "{name}: clip frame {i} is not video frame {}", start + 4 * i);
        }
        assert!(frame_mean(&clip, 1) > frame_mean(&clip, 0) + 0.1, "{name}: frames do not advance");
    }
}

#[test]
fn the_crop_keeps_the_centre() {
    let dir = tempfile::tempdir().unwrap();
    // Red, green and blue bands, the green one in the middle and twice as wide: resized to a
    // short side of 16 (64 long), the centred crop (24..40) sees green only (16..48).
    let bands = |stack: &str, middle: &str| {
        format!("color=red:s=20x20[a];color=lime:s={middle}[b];color=blue:s=20x20[c];[a][b][c]{stack}=inputs=3")
    };
    for (name, stack, middle) in [("wide.mp4", "hstack", "40x20"), ("tall.mp4", "vstack", "20x40")] {
        let path = dir.path().join(name);
        make_video(&path, &bands(stack, middle), 10, 4);
        let clip = read_clip(&path, &sampling(2, 1), ClipStart::First, 16).unwrap();
        let plane = clip.frames * 16 * 16;
        // Every pixel of the crop is from the middle (green) band.
        for i in 0..plane {
            let (r, g, b) = (clip.data[i], clip.data[plane + i], clip.data[2 * plane + i]);
            assert!(g > 0.8 && r < -0.8 && b < -0.8, "{name}: pixel {i} is ({r}, {g}, {b}), not green");
        }
    }
}

#[test]
fn short_truncated_and_non_video_files_give_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let short = ramp(dir.path(), "short.mp4", "32x32", 10, 10);
    // 8 frames need 29 at stride 4; 10 frames fit stride 1 only.
    let clip = read_clip(&short, &sampling(8, 4), ClipStart::First, 16).unwrap();
    assert_eq!(clip.frames, 8);
    let skip = ClipSampling { short_videos: ShortVideos::Skip, ..sampling(8, 4) };
    let reason = read_clip(&short, &skip, ClipStart::First, 16).unwrap_err();
    assert!(reason.contains("too short: 10 frames"), "{reason}");
    let reason = read_clip(&short, &sampling(16, 4), ClipStart::First, 16).unwrap_err();
    assert!(reason.contains("too short"), "{reason}");

    let whole = ramp(dir.path(), "whole.mp4", "32x32", 10, 30);
    let bytes = std::fs::read(&whole).unwrap();
    let truncated = dir.path().join("truncated.mp4");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let reason = read_clip(&truncated, &sampling(8, 2), ClipStart::First, 16).unwrap_err();
    assert!(!reason.is_empty(), "a truncated file is refused");

    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "this is not a video").unwrap();
    let reason = read_clip(&text, &sampling(8, 2), ClipStart::First, 16).unwrap_err();
    assert!(reason.contains("not a readable video"), "{reason}");
    let empty = dir.path().join("empty.mp4");
    std::fs::write(&empty, "").unwrap();
    assert!(read_clip(&empty, &sampling(8, 2), ClipStart::First, 16).is_err());
}
