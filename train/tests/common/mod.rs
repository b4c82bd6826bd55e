//! Helpers shared by the data tests.

use std::path::Path;
use std::process::Command;

/// Five small captioned mp4 files (`clipN.mp4` + `clipN.txt`, a moving box on a coloured
/// field, `size` as ffmpeg writes it, `frames` frames at 10 fps) and a broken `broken.mp4`.
pub fn make_videos(dir: &Path, size: &str, frames: usize) {
    for (i, colour) in ["red", "lime", "blue", "yellow", "white"].iter().enumerate() {
        let path = dir.join(format!("clip{i}.mp4"));
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i", &format!("color={colour}:s={size}:r=10")])
            .args(["-vf", "drawbox=x='t*20':y=4:w=6:h=6:color=black:t=fill", "-frames:v", &frames.to_string()])
            .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
            .arg(&path)
            .status()
            .expect("ffmpeg runs (the tests need FFmpeg: apt-get install ffmpeg)");
        assert!(status.success());
        std::fs::write(dir.join(format!("clip{i}.txt")), format!("a {colour} field")).unwrap();
    }
    std::fs::write(dir.join("broken.mp4"), b"not a video at all").unwrap();
    std::fs::write(dir.join("broken.txt"), "a broken file").unwrap();
}
