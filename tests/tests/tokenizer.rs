//! The CLIP tokenizer against transformers 5.23 `CLIPTokenizer` (`padding="max_length",
//! max_length=77, truncation=True`): the real CLIP-L files (tests/fixtures/clip_tokenizer) and
//! the tiny pipeline's tokenizer folder, through `tokenizer.json` and through the slow files.

use std::fs;
use std::path::Path;

use avdm_import::{ClipTokenizer, ImportError};
use avdm_tests::fixture;
use serde_json::Value;

/// (prompt, ids) cases of a fixture `ids.json`.
fn cases(rel: &str) -> Vec<(String, Vec<u32>)> {
    let json: Value = serde_json::from_str(&fs::read_to_string(fixture(rel)).unwrap()).unwrap();
    let cases: Vec<(String, Vec<u32>)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ids = c["ids"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect();
            (c["prompt"].as_str().unwrap().to_string(), ids)
        })
        .collect();
    assert!(!cases.is_empty(), "{rel} has no cases");
    cases
}

fn check(tokenizer: &ClipTokenizer, rel: &str) {
    for (prompt, want) in cases(rel) {
        let got = tokenizer.encode(&prompt).unwrap_or_else(|e| panic!("{prompt:?}: {e}"));
        assert_eq!(got.len(), 77, "{prompt:?}");
        assert_eq!(got, want, "ids of {prompt:?}");
    }
}

/// A tempdir holding copies of `files` from the fixture folder `rel`.
fn copy_files(rel: &str, files: &[&str]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for f in files {
        fs::copy(fixture(rel).join(f), tmp.path().join(f)).unwrap();
    }
    tmp
}

#[test]
fn clip_l_vocab_and_merges_match_transformers() {
    let tokenizer = ClipTokenizer::from_folder(&fixture("clip_tokenizer")).expect("CLIP-L files");
    assert_eq!((tokenizer.bos_id(), tokenizer.eos_id(), tokenizer.pad_id()), (49406, 49407, 49407));
    assert_eq!(tokenizer.max_length(), 77);
    check(&tokenizer, "clip_tokenizer/ids.json");
    let batch = tokenizer.encode_batch(&["a photo of a cat", ""]).unwrap();
    assert_eq!(batch[0][..8], [49406, 320, 1125, 539, 320, 2368, 49407, 49407]);
    assert_eq!(batch[1][..3], [49406, 49407, 49407]);
}

#[test]
fn long_prompts_keep_bos_75_tokens_and_eos() {
    let tokenizer = ClipTokenizer::from_folder(&fixture("clip_tokenizer")).expect("CLIP-L files");
    let ids = tokenizer.encode(&"dog ".repeat(200)).unwrap();
    assert_eq!(ids.len(), 77);
    assert_eq!((ids[0], ids[76]), (49406, 49407));
    assert!(ids[1..76].iter().all(|&i| i == ids[1] && i != 49407), "{ids:?}");
}

#[test]
fn tiny_tokenizer_json_matches_transformers() {
    let tokenizer = ClipTokenizer::from_folder(&fixture("tiny_pipeline/sd/tokenizer")).expect("tokenizer.json");
    assert_eq!((tokenizer.bos_id(), tokenizer.eos_id(), tokenizer.pad_id()), (1512, 1513, 1513));
    check(&tokenizer, "tiny_pipeline/tokenizer_ids.json");
}

#[test]
fn tiny_slow_files_match_transformers() {
    let tmp = copy_files("tiny_pipeline/sd/tokenizer", &["vocab.json", "merges.txt"]);
    let tokenizer = ClipTokenizer::from_folder(tmp.path()).expect("vocab.json + merges.txt");
    check(&tokenizer, "tiny_pipeline/tokenizer_ids.json");
}

#[test]
fn special_tokens_map_sets_the_padding_as_in_sd2() {
    // SD2's tokenizer pads with `!` (id 0), which transformers also keeps unsplit in the text:
    // CLIPTokenizer(vocab, merges, pad_token="!")("hi!! there") = [49406, 1883, 0, 0, 997, 49407, 0, ...].
    let tmp = copy_files("clip_tokenizer", &["vocab.json", "merges.txt"]);
    fs::write(tmp.path().join("tokenizer_config.json"), r#"{"model_max_length": 1e30, "pad_token": "<|endoftext|>"}"#)
        .unwrap();
    fs::write(tmp.path().join("special_tokens_map.json"), r#"{"pad_token": {"content": "!", "lstrip": false}}"#)
        .unwrap();
    let tokenizer = ClipTokenizer::from_folder(tmp.path()).unwrap();
    assert_eq!((tokenizer.pad_id(), tokenizer.max_length()), (0, 77));
    let ids = tokenizer.encode("hi!! there").unwrap();
    assert_eq!(ids[..8], [49406, 1883, 0, 0, 997, 49407, 0, 0]);
    assert!(ids[6..].iter().all(|&i| i == 0));

    fs::write(tmp.path().join("tokenizer_config.json"), r#"{"model_max_length": 10}"#).unwrap();
    fs::remove_file(tmp.path().join("special_tokens_map.json")).unwrap();
    let tokenizer = ClipTokenizer::from_folder(tmp.path()).unwrap();
    assert_eq!(tokenizer.encode("a photo of a cat").unwrap().len(), 10);
    assert_eq!(tokenizer.pad_id(), 49407);
}

fn error_of(dir: &Path) -> ImportError {
    ClipTokenizer::from_folder(dir).expect_err("must fail")
}

#[test]
fn missing_and_corrupt_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let nope = tmp.path().join("nope");
    assert_eq!(error_of(&nope).to_string(), format!("tokenizer folder not found: {}", nope.display()));

    let dir = copy_files("tiny_pipeline/sd/tokenizer", &["vocab.json"]);
    assert_eq!(
        error_of(dir.path()).to_string(),
        format!("tokenizer files (tokenizer.json, or vocab.json + merges.txt) not found: {}", dir.path().display())
    );

    fs::write(dir.path().join("tokenizer.json"), "{\"version\": \"1.0\", \"model\": ").unwrap();
    let err = error_of(dir.path());
    assert!(matches!(err, ImportError::Tokenizer { .. }), "{err}");
    assert!(err.to_string().starts_with(&format!("tokenizer file {}:", dir.path().join("tokenizer.json").display())));

    fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    fs::write(dir.path().join("merges.txt"), "#version: 0.2\na b\nthree symbols here\n").unwrap();
    let err = error_of(dir.path());
    assert_eq!(
        err.to_string(),
        format!(
            "tokenizer file {}: line 3 is not two space-separated symbols: \"three symbols here\"",
            dir.path().join("merges.txt").display()
        )
    );

    fs::write(dir.path().join("vocab.json"), "[1, 2]").unwrap();
    let err = error_of(dir.path());
    assert!(err.to_string().contains("vocab.json") && err.to_string().contains("not a JSON object"), "{err}");

    fs::write(dir.path().join("vocab.json"), r#"{"a": 0, "b": 1, "ab": 2}"#).unwrap();
    fs::write(dir.path().join("merges.txt"), "#version: 0.2\na b\n").unwrap();
    let err = error_of(dir.path());
    assert!(err.to_string().contains("`<|endoftext|>` is not in the vocabulary"), "{err}");

    fs::write(dir.path().join("tokenizer_config.json"), "{not json").unwrap();
    let err = error_of(dir.path());
    assert!(err.to_string().contains("tokenizer_config.json") && err.to_string().contains("not valid JSON"), "{err}");
}
