//! Eval-prompt sets: the prompts an evaluation samples, each with an optional reference video,
//! read from a CSV (the paper: 100 random WebVid-10M validation videos and their prompts).

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::dataset::{Skipped, csv_fields};
use crate::error::TrainError;

/// Where a prompt set is read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptCsv {
    pub csv: PathBuf,
    pub caption_column: String,
    /// A column of reference videos (paths relative to `videos`, or absolute).
    pub video_column: Option<String>,
    pub videos: PathBuf,
}

/// One eval prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPrompt {
    pub caption: String,
    pub video: Option<PathBuf>,
}

/// The prompts chosen from a CSV and the rows left out (empty caption, a reference video that
/// is not there, a broken line).
#[derive(Debug, Clone)]
pub struct PromptSet {
    pub prompts: Vec<EvalPrompt>,
    pub skipped: Vec<Skipped>,
}

impl PromptCsv {
    /// Reads the usable rows and keeps `count` of them chosen at random by `seed` (all when
    /// `None`), in file order. Fewer usable rows than `count` is an error.
    pub fn load(&self, count: Option<usize>, seed: u64) -> Result<PromptSet, TrainError> {
        let error = |message: String| TrainError::Dataset { path: self.csv.clone(), message };
        let mut columns = vec![self.caption_column.as_str()];
        columns.extend(self.video_column.as_deref());
        let (rows, mut skipped) = csv_fields(&self.csv, &columns)?;
        let mut prompts = Vec::new();
        for (row, fields) in rows {
            match self.prompt(&fields) {
                Ok(prompt) => prompts.push(prompt),
                Err(reason) => skipped.push(Skipped(format!("row {row}: {reason}"))),
            }
        }
        let count = count.unwrap_or(prompts.len());
        if count == 0 || prompts.len() < count {
            let wanted = if count == 0 { "at least one".to_string() } else { count.to_string() };
            return Err(error(format!(
                "{wanted} prompts wanted, {} usable ({} rows skipped)",
                prompts.len(),
                skipped.len()
            )));
        }
        let mut chosen: Vec<usize> = (0..prompts.len()).collect();
        chosen.shuffle(&mut StdRng::seed_from_u64(seed));
        chosen.truncate(count);
        chosen.sort_unstable();
        let prompts = chosen.into_iter().map(|i| prompts[i].clone()).collect();
        Ok(PromptSet { prompts, skipped })
    }

    fn prompt(&self, fields: &[String]) -> Result<EvalPrompt, String> {
        if fields[0].is_empty() {
            return Err("empty caption".into());
        }
        let video = match fields.get(1) {
            Some(path) if path.is_empty() => return Err("empty video path".into()),
            Some(path) => {
                let path = self.videos.join(path);
                if !path.is_file() {
                    return Err(format!("{} not found", path.display()));
                }
                Some(path)
            }
            None => None,
        };
        Ok(EvalPrompt { caption: fields[0].clone(), video })
    }
}

impl PromptSet {
    /// The reference videos, when every prompt has one.
    pub fn videos(&self) -> Option<Vec<&Path>> {
        self.prompts.iter().map(|p| p.video.as_deref()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("prompts.csv");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_random_subset_in_file_order_and_bad_rows_named() {
        let dir = tempfile::tempdir().unwrap();
        let rows: String = (0..20).map(|i| format!("{i},prompt {i}\n")).collect();
        let source = PromptCsv {
            csv: csv(dir.path(), &format!("id,name\n{rows},\n")),
            caption_column: "name".into(),
            video_column: None,
            videos: dir.path().into(),
        };
        let all = source.load(None, 0).unwrap();
        assert_eq!(all.prompts.len(), 20);
        assert_eq!(all.skipped.len(), 1);
        assert!(all.skipped[0].0.starts_with("row 22: empty caption"), "{:?}", all.skipped);
        let five = source.load(Some(5), 7).unwrap().prompts;
        let numbers: Vec<usize> = five.iter().map(|p| p.caption[7..].parse().unwrap()).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "file order: {numbers:?}");
        assert_eq!(five, source.load(Some(5), 7).unwrap().prompts, "the seed decides the subset");
        assert_ne!(five, source.load(Some(5), 8).unwrap().prompts);
        let err = source.load(Some(30), 0).unwrap_err().to_string();
        assert!(err.contains("prompts.csv") && err.contains("30 prompts wanted, 20 usable"), "{err}");
    }

    #[test]
    fn reference_videos_must_be_there() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.mp4"), "").unwrap();
        let source = PromptCsv {
            csv: csv(dir.path(), "caption,video\nA cat.,a.mp4\nA dog.,b.mp4\nA bird.,\n"),
            caption_column: "caption".into(),
            video_column: Some("video".into()),
            videos: dir.path().into(),
        };
        let set = source.load(None, 0).unwrap();
        assert_eq!(set.prompts, [EvalPrompt { caption: "A cat.".into(), video: Some(dir.path().join("a.mp4")) }]);
        assert_eq!(set.videos().unwrap(), [dir.path().join("a.mp4").as_path()]);
        let reasons: Vec<&str> = set.skipped.iter().map(|s| s.0.as_str()).collect();
        assert!(reasons[0].contains("b.mp4 not found") && reasons[1].contains("empty video path"), "{reasons:?}");
        let err = PromptCsv { video_column: Some("clip".into()), ..source }.load(None, 0).unwrap_err().to_string();
        assert!(err.contains("no `clip` column"), "{err}");
    }
}
