//! `student.json`: the sampler a distilled student was trained for, saved beside its pipeline
//! folder's components (our addition to the diffusers layout).

use std::path::Path;

use avdm_model::sched::StudentConfig;

use crate::error::ImportError;

/// The file name, at the top of a student pipeline folder.
pub const STUDENT_CONFIG: &str = "student.json";

/// The student sampler config of a pipeline folder: `None` when the folder has no
/// `student.json` (a teacher), an error when it has one that does not parse.
pub fn read_student_config(folder: &Path) -> Result<Option<StudentConfig>, ImportError> {
    let path = folder.join(STUDENT_CONFIG);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|source| ImportError::Io { path: path.clone(), source })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ImportError::Pipeline { path, message: format!("not a student sampler config: {e}") })
}

/// Writes `config` as the folder's `student.json`.
pub fn write_student_config(folder: &Path, config: &StudentConfig) -> Result<(), ImportError> {
    let path = folder.join(STUDENT_CONFIG);
    let json = serde_json::to_string_pretty(config).expect("a sampler config serialises") + "\n";
    std::fs::write(&path, json).map_err(|e| ImportError::Output { path, message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_student_config_round_trips_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_student_config(dir.path()).unwrap().is_none(), "a teacher folder has none");
        let config = StudentConfig { steps: 4, timesteps: Some(vec![999, 759, 499, 259]), ..StudentConfig::default() };
        write_student_config(dir.path(), &config).unwrap();
        assert_eq!(read_student_config(dir.path()).unwrap(), Some(config));
        std::fs::write(dir.path().join(STUDENT_CONFIG), "{\"steps\": \"four\"}").unwrap();
        let message = read_student_config(dir.path()).unwrap_err().to_string();
        assert!(message.contains("student.json") && message.contains("not a student sampler config"), "{message}");
    }
}
