//! The video datasets users bring: an OpenVid-1M CSV (`video`, `caption`; other columns
//! ignored), a WebVid-style CSV whose path and caption columns are named by the user, or a
//! folder of `name.mp4` + `name.txt`. Rows that cannot be used (empty fields, a video that is
//! not there, a broken line) are skipped and counted with their reason, never fatal; a
//! dataset with no usable video at all is an error.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::TrainError;

/// File extensions read as videos in a folder dataset.
pub const VIDEO_EXTENSIONS: [&str; 5] = ["mp4", "webm", "mov", "mkv", "avi"];

/// Where the videos and their captions are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DatasetSource {
    /// OpenVid-1M's CSV: file names in `video`, captions in `caption`, the files under `videos`.
    OpenVid { csv: PathBuf, videos: PathBuf },
    /// Any CSV with a header: paths (relative to `videos`, or absolute) in `path_column`,
    /// captions in `caption_column`.
    Csv { csv: PathBuf, videos: PathBuf, path_column: String, caption_column: String },
    /// A folder of videos, each captioned by the `.txt` file of the same name.
    Folder { dir: PathBuf },
}

/// One video and its caption.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoEntry {
    pub path: PathBuf,
    pub caption: String,
}

/// A row or file left out, and why (e.g. `row 7: empty caption`).
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped(pub String);

/// The usable videos of a dataset and what was left out.
#[derive(Debug, Clone)]
pub struct VideoDataset {
    pub entries: Vec<VideoEntry>,
    pub skipped: Vec<Skipped>,
}

impl DatasetSource {
    /// Reads the index (not the videos): a missing or unreadable CSV or folder, a missing
    /// column or no usable video is an error; bad rows are skipped.
    pub fn load(&self) -> Result<VideoDataset, TrainError> {
        let (entries, skipped) = match self {
            Self::OpenVid { csv, videos } => read_csv(csv, videos, "video", "caption")?,
            Self::Csv { csv, videos, path_column, caption_column } => {
                read_csv(csv, videos, path_column, caption_column)?
            }
            Self::Folder { dir } => read_folder(dir)?,
        };
        if entries.is_empty() {
            let reasons: Vec<&str> = skipped.iter().take(3).map(|s| s.0.as_str()).collect();
            return Err(self.error(format!("no usable video ({} skipped: {})", skipped.len(), reasons.join("; "))));
        }
        Ok(VideoDataset { entries, skipped })
    }

    fn error(&self, message: String) -> TrainError {
        let path = match self {
            Self::OpenVid { csv, .. } | Self::Csv { csv, .. } => csv,
            Self::Folder { dir } => dir,
        };
        TrainError::Dataset { path: path.clone(), message }
    }
}

type Read = (Vec<VideoEntry>, Vec<Skipped>);

fn read_csv(csv_path: &Path, videos: &Path, path_column: &str, caption_column: &str) -> Result<Read, TrainError> {
    let (rows, mut skipped) = csv_fields(csv_path, &[path_column, caption_column])?;
    let mut entries = Vec::new();
    for (row, fields) in rows {
        match entry(videos, &fields[0], &fields[1]) {
            Ok(entry) => entries.push(entry),
            Err(reason) => skipped.push(Skipped(format!("row {row}: {reason}"))),
        }
    }
    Ok((entries, skipped))
}

/// A CSV row's spreadsheet number and its fields in the asked order.
pub(crate) type CsvRow = (usize, Vec<String>);

/// The trimmed fields of the named columns of every row of a CSV with a header, with the row's
/// number (row 1 is the header, as a spreadsheet numbers them); rows that cannot be parsed are
/// skipped with their reason. A missing file or column is an error.
pub(crate) fn csv_fields(csv_path: &Path, columns: &[&str]) -> Result<(Vec<CsvRow>, Vec<Skipped>), TrainError> {
    let error = |message: String| TrainError::Dataset { path: csv_path.into(), message };
    let file = fs::File::open(csv_path).map_err(TrainError::io(csv_path))?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
    let header = reader.headers().map_err(|e| error(format!("cannot read the header: {e}")))?.clone();
    let at = columns
        .iter()
        .map(|name| {
            header.iter().position(|h| h.trim() == *name).ok_or_else(|| {
                let names: Vec<&str> = header.iter().collect();
                error(format!("no `{name}` column (the header has: {})", names.join(", ")))
            })
        })
        .collect::<Result<Vec<usize>, TrainError>>()?;
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    for (i, record) in reader.records().enumerate() {
        let row = i + 2;
        match record {
            Ok(record) => rows.push((row, at.iter().map(|&a| record.get(a).unwrap_or("").trim().to_owned()).collect())),
            Err(e) => skipped.push(Skipped(format!("row {row}: {e}"))),
        }
    }
    Ok((rows, skipped))
}

/// The video files of a folder ([`VIDEO_EXTENSIONS`], any case), sorted by name.
pub fn video_files(dir: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let mut names: Vec<PathBuf> =
        fs::read_dir(dir).map_err(TrainError::io(dir))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.retain(|p| p.is_file() && is_video(p));
    names.sort();
    Ok(names)
}

fn read_folder(dir: &Path) -> Result<Read, TrainError> {
    let (mut entries, mut skipped) = (Vec::new(), Vec::new());
    for path in video_files(dir)? {
        let caption_path = path.with_extension("txt");
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let caption = match fs::read_to_string(&caption_path) {
            Ok(text) => text.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                skipped.push(Skipped(format!("{name}: no caption file {}", caption_path.display())));
                continue;
            }
            Err(e) => {
                skipped.push(Skipped(format!("{name}: cannot read {}: {e}", caption_path.display())));
                continue;
            }
        };
        match entry(dir, &name, &caption) {
            Ok(entry) => entries.push(entry),
            Err(reason) => skipped.push(Skipped(format!("{name}: {reason}"))),
        }
    }
    Ok((entries, skipped))
}

/// A usable entry, or why not.
fn entry(videos: &Path, path: &str, caption: &str) -> Result<VideoEntry, String> {
    if path.is_empty() {
        return Err("empty video path".into());
    }
    if caption.is_empty() {
        return Err("empty caption".into());
    }
    let path = videos.join(path);
    if !path.is_file() {
        return Err(format!("{} not found", path.display()));
    }
    Ok(VideoEntry { path, caption: caption.to_owned() })
}

fn is_video(path: &Path) -> bool {
    path.extension().is_some_and(|e| VIDEO_EXTENSIONS.iter().any(|v| e.eq_ignore_ascii_case(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, text: &str) {
        fs::write(path, text).unwrap();
    }

    #[test]
    fn openvid_rows_are_read_and_bad_ones_skipped_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let videos = dir.path().join("videos");
        fs::create_dir(&videos).unwrap();
        for name in ["a.mp4", "b.mp4", "c.mp4"] {
            touch(&videos.join(name), "");
        }
        let csv = dir.path().join("OpenVid-1M.csv");
        touch(
            &csv,
            "video,caption,aesthetic score,frame\n\
             a.mp4,\"A dog runs, then \"\"jumps\"\".\",5.1,120\n\
             b.mp4,,4.0,90\n\
             missing.mp4,A cat.,4.2,80\n\
             c.mp4\n\
             c.mp4,  A bird flies.  ,4.9,60\n",
        );
        let data = DatasetSource::OpenVid { csv: csv.clone(), videos: videos.clone() }.load().unwrap();
        let captions: Vec<&str> = data.entries.iter().map(|e| e.caption.as_str()).collect();
        assert_eq!(captions, ["A dog runs, then \"jumps\".", "A bird flies."]);
        assert_eq!(data.entries[1].path, videos.join("c.mp4"));
        let reasons: Vec<&str> = data.skipped.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].starts_with("row 3: empty caption"), "{reasons:?}");
        assert!(reasons[1].starts_with("row 4: ") && reasons[1].contains("missing.mp4 not found"), "{reasons:?}");
        assert!(reasons[2].starts_with("row 5: empty caption"), "{reasons:?}");

        // A WebVid-style CSV names its own columns; a wrong name is an error listing the header.
        let webvid = dir.path().join("webvid.csv");
        touch(&webvid, "videoid,name,page_dir,file\n1,A red car.,x,a.mp4\n");
        let source = |path_column: &str| DatasetSource::Csv {
            csv: webvid.clone(),
            videos: videos.clone(),
            path_column: path_column.into(),
            caption_column: "name".into(),
        };
        assert_eq!(source("file").load().unwrap().entries[0].caption, "A red car.");
        let err = source("path").load().unwrap_err().to_string();
        assert!(err.contains("webvid.csv") && err.contains("`path`") && err.contains("videoid, name"), "{err}");
    }

    #[test]
    fn a_folder_pairs_videos_with_their_captions() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(&d.join("one.mp4"), "");
        touch(&d.join("one.txt"), "A red square moving left.\n");
        touch(&d.join("two.MP4"), "");
        touch(&d.join("two.txt"), "A boat.");
        touch(&d.join("three.mp4"), "");
        touch(&d.join("four.webm"), "");
        touch(&d.join("four.txt"), "   ");
        touch(&d.join("notes.txt"), "not a caption of anything");
        fs::create_dir(d.join("sub.mp4")).unwrap();
        let data = DatasetSource::Folder { dir: d.into() }.load().unwrap();
        let names: Vec<_> = data.entries.iter().map(|e| (e.path.file_name().unwrap().to_owned(), &e.caption)).collect();
        assert_eq!(names.len(), 2);
        assert_eq!(names[0], ("one.mp4".into(), &"A red square moving left.".to_owned()));
        assert_eq!(names[1].0, "two.MP4");
        let reasons: Vec<&str> = data.skipped.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].starts_with("four.webm: empty caption"), "{reasons:?}");
        assert!(reasons[1].starts_with("three.mp4: no caption file"), "{reasons:?}");
    }

    #[test]
    fn unusable_datasets_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.csv");
        let err = DatasetSource::OpenVid { csv: missing, videos: dir.path().into() }.load().unwrap_err().to_string();
        assert!(err.contains("nope.csv"), "{err}");
        let csv = dir.path().join("empty.csv");
        touch(&csv, "video,caption\ngone.mp4,A cat.\n");
        let err = DatasetSource::OpenVid { csv, videos: dir.path().into() }.load().unwrap_err().to_string();
        assert!(
            err.contains("empty.csv") && err.contains("no usable video (1 skipped") && err.contains("gone.mp4"),
            "{err}"
        );
        let err = DatasetSource::Folder { dir: dir.path().join("no-folder") }.load().unwrap_err().to_string();
        assert!(err.contains("no-folder"), "{err}");
    }
}
