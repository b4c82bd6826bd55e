//! Exporting the video UNet back to diffusers folders (tests/fixtures/tiny_unet): the files hold
//! exactly the keys, shapes and dtypes diffusers writes, and load back to the same network.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use avdm_import::{
    AdapterSource, ExportDtype, ImportError, LoadOptions, LoadedUNet, export_clip_text, export_motion_adapter,
    export_unet_2d, export_unet_motion, load_clip_text, load_unet_2d, load_unet_motion, load_unet_motion_folder,
};
use avdm_model::UNetConfig;
use avdm_model::unet::{MotionAdapterConfig, UNet2DConditionConfig, UNetMotionConfig};
use avdm_tests::{assert_close, device, fixture, fixture_tensors, max_abs_diff, tensor};
use burn::prelude::*;
use safetensors::SafeTensors;

const WEIGHTS: &str = "diffusion_pytorch_model.safetensors";

fn tiny() -> LoadedUNet {
    let adapter = AdapterSource::Folder(fixture("tiny_unet/motion_adapter"));
    load_unet_motion(&fixture("tiny_unet/unet"), &adapter, &LoadOptions::default(), &device())
        .expect("tiny unet + adapter")
}

fn run(unet: &LoadedUNet) -> Tensor<5> {
    let io = fixture_tensors("tiny_unet/io.safetensors");
    unet.model.forward(tensor(&io, "a_sample"), tensor(&io, "a_timestep"), tensor(&io, "a_text")).expect("valid inputs")
}

fn load_adapter(dir: &Path) -> LoadedUNet {
    let adapter = AdapterSource::Folder(dir.into());
    load_unet_motion(&fixture("tiny_unet/unet"), &adapter, &LoadOptions::default(), &device())
        .expect("exported adapter loads")
}

fn load_full(dir: &Path) -> LoadedUNet {
    load_unet_motion_folder(dir, &LoadOptions::default(), &device()).expect("exported UNetMotionModel loads")
}

/// key -> (dtype, shape, bytes) of a safetensors file, and its metadata.
type Contents = (BTreeMap<String, (String, Vec<usize>, Vec<u8>)>, Option<std::collections::HashMap<String, String>>);

fn contents(path: &Path) -> Contents {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, metadata) = SafeTensors::read_metadata(&bytes).expect("safetensors header");
    let file = SafeTensors::deserialize(&bytes).expect("safetensors file");
    let tensors = file
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, (format!("{:?}", v.dtype()), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    (tensors, metadata.metadata().clone())
}

/// key -> (dtype, shape): the layout without the values.
fn layout(c: &Contents) -> BTreeMap<String, (String, Vec<usize>)> {
    c.0.iter().map(|(k, (d, s, _))| (k.clone(), (d.clone(), s.clone()))).collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(path).expect("config.json")).expect("JSON")
}

/// Names in a folder, to check that a failed export left nothing behind.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    names
}

#[test]
fn configs_invert_the_fixture_configs() {
    let read = |rel: &str| fs::read_to_string(fixture(rel)).unwrap();
    let base =
        UNetConfig::from_unet_2d(&UNet2DConditionConfig::from_json(&read("tiny_unet/unet/config.json")).unwrap())
            .unwrap();
    let adapter = MotionAdapterConfig::from_json(&read("tiny_unet/motion_adapter/config.json")).unwrap();
    let c = base.clone().with_motion_adapter(&adapter).unwrap();
    assert_eq!(c.to_motion_adapter_config().unwrap(), adapter, "the fixture's adapter config comes back");
    assert_eq!(base.with_motion_adapter(&c.to_motion_adapter_config().unwrap()).unwrap(), c);
    let full = UNetMotionConfig::from_json(&read("tiny_unet/unet_motion/config.json")).unwrap();
    assert_eq!(c.to_unet_motion_config().unwrap(), full, "the fixture's UNetMotionModel config comes back");
    assert_eq!(UNetConfig::from_unet_motion(&c.to_unet_motion_config().unwrap()).unwrap(), c);
}

#[test]
fn exports_match_what_diffusers_writes_and_load_back_identically() {
    let unet = tiny();
    let tmp = tempfile::tempdir().unwrap();
    let (adapter_dir, full_dir) = (tmp.path().join("adapter"), tmp.path().join("unet_motion"));
    let report = export_motion_adapter(&unet.model, &unet.config, &adapter_dir, ExportDtype::F32).expect("adapter");
    println!("{report}");
    assert_eq!(report.files, vec![adapter_dir.join("config.json"), adapter_dir.join(WEIGHTS)]);
    let full = export_unet_motion(&unet.model, &unet.config, &full_dir, ExportDtype::F32).expect("full UNet");
    println!("{full}");

    // (a) Exactly the keys, shapes and dtypes diffusers writes, and its `format: pt` metadata.
    for (dir, rel, report) in [(&adapter_dir, "motion_adapter", &report), (&full_dir, "unet_motion", &full)] {
        let ours = contents(&dir.join(WEIGHTS));
        let theirs = contents(&fixture(&format!("tiny_unet/{rel}/{WEIGHTS}")));
        assert_eq!(layout(&ours), layout(&theirs), "{rel}: key names, shapes and dtypes");
        assert_eq!(ours.1, theirs.1, "{rel}: metadata");
        assert_eq!(report.tensors, theirs.0.len());
        let sizes: u64 = report.files.iter().map(|f| fs::metadata(f).unwrap().len()).sum();
        assert_eq!(report.bytes, sizes);
        // Every parameter bit for bit in f32; the position tables are computed, by torch's
        // vectorised sin/cos there and libm's here, so they may differ in the last bit.
        let mut positions_err = 0f32;
        for (key, (_, _, data)) in &theirs.0 {
            if key.ends_with(".pos_embed.pe") {
                let floats =
                    |b: &[u8]| b.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>();
                let (a, b) = (floats(&ours.0[key].2), floats(data));
                positions_err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(positions_err, f32::max);
            } else {
                assert!(&ours.0[key].2 == data, "{rel}: `{key}` differs from the diffusers file");
            }
        }
        println!("{rel}: position tables max abs error {positions_err:.3e}");
        assert!(positions_err <= 1e-6, "{rel}: position tables differ by {positions_err:e}");
    }
    // The configs are diffusers' own, field for field.
    assert_eq!(json(&adapter_dir.join("config.json")), json(&fixture("tiny_unet/motion_adapter/config.json")));
    let mut want = json(&fixture("tiny_unet/unet_motion/config.json"));
    // diffusers writes the float default `1` as an integer; serde reads both as 1.0.
    assert_eq!(want["mid_block_scale_factor"].as_f64(), Some(1.0));
    want["mid_block_scale_factor"] = serde_json::json!(1.0);
    assert_eq!(json(&full_dir.join("config.json")), want);

    // (b) The exported folders load back to the same network, giving identical outputs.
    let original = run(&unet);
    for (what, loaded) in
        [("adapter folder", load_adapter(&adapter_dir)), ("UNetMotionModel folder", load_full(&full_dir))]
    {
        assert!(loaded.report.unused.is_empty(), "{what}: unused {:?}", loaded.report.unused);
        assert_eq!(loaded.report.positions_checked, 7, "{what}: one position table per motion block");
        assert_eq!(loaded.config, unet.config, "{what}: same network");
        assert_eq!(max_abs_diff(run(&loaded), original.clone()), 0.0, "{what}: outputs must be identical");
    }
    assert_close(
        "exported f32 vs diffusers",
        original,
        tensor(&fixture_tensors("tiny_unet/io.safetensors"), "a_out"),
        1e-4,
    );
}

/// The image model of the video UNet, written as a diffusers `UNet2DConditionModel` folder
/// (a 2D teacher): the fixture's own `unet/` folder comes back, keys, shapes, dtypes and bits,
/// and loads to the same network.
#[test]
fn the_2d_part_exports_as_the_fixture_s_unet_2d_folder() {
    let unet = tiny();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("unet");
    let report = export_unet_2d(&unet.model, &unet.config, &dir, ExportDtype::F32).expect("2D UNet");
    let (ours, theirs) = (contents(&dir.join(WEIGHTS)), contents(&fixture(&format!("tiny_unet/unet/{WEIGHTS}"))));
    assert_eq!(layout(&ours), layout(&theirs), "key names, shapes and dtypes");
    assert_eq!(ours.1, theirs.1, "metadata");
    assert_eq!(report.tensors, theirs.0.len());
    for (key, (_, _, data)) in &theirs.0 {
        assert!(&ours.0[key].2 == data, "`{key}` differs from the diffusers file");
    }
    let config = json(&dir.join("config.json"));
    assert_eq!(config["_class_name"], "UNet2DConditionModel");
    assert!(config["num_attention_heads"].is_null(), "diffusers refuses num_attention_heads in a 2D UNet");
    let read = |path: &Path| {
        UNetConfig::from_unet_2d(&UNet2DConditionConfig::from_json(&fs::read_to_string(path).unwrap()).unwrap())
            .unwrap()
    };
    assert_eq!(read(&dir.join("config.json")), read(&fixture("tiny_unet/unet/config.json")), "the same network");
    let load = |dir: &Path| load_unet_2d(dir, &LoadOptions::default(), &device()).expect("a 2D UNet folder");
    let (loaded, original) = (load(&dir), load(&fixture("tiny_unet/unet")));
    assert!(loaded.report.unused.is_empty(), "unused {:?}", loaded.report.unused);
    let first_frame = |unet: &LoadedUNet| {
        let io = fixture_tensors("tiny_unet/io.safetensors");
        let frame = tensor::<5>(&io, "a_sample").narrow(2, 0, 1);
        let text = tensor::<3>(&io, "a_text").narrow(0, 0, 1);
        unet.model.forward(frame, tensor(&io, "a_timestep"), text).expect("one frame")
    };
    assert_eq!(max_abs_diff(first_frame(&loaded), first_frame(&original)), 0.0, "outputs must be identical");
}

#[test]
fn clip_text_export_matches_transformers_and_loads_back() {
    let source = fixture("tiny_pipeline/sd/text_encoder");
    let clip = load_clip_text(&source, &LoadOptions::default(), &device()).expect("fixture text encoder");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("text_encoder");
    let report = export_clip_text(&clip.model, &clip.config, &dir, ExportDtype::F32).expect("export");
    assert_eq!(report.files, vec![dir.join("config.json"), dir.join("model.safetensors")]);
    // The hub layout (`text_model.` prefix, read by transformers 4 and 5) with the values of the
    // fixture; the hub file's int64 `position_ids` buffer is not a weight and is left out.
    let ours = contents(&dir.join("model.safetensors"));
    let mut hub = contents(&fixture("tiny_pipeline/text_encoder_hub/model.safetensors"));
    assert!(hub.0.remove("text_model.embeddings.position_ids").is_some());
    assert_eq!(layout(&ours), layout(&hub), "key names, shapes and dtypes");
    for (key, (_, _, data)) in &hub.0 {
        assert!(&ours.0[key].2 == data, "`{key}` differs from the transformers file");
    }
    let config = json(&dir.join("config.json"));
    assert_eq!(config["architectures"], serde_json::json!(["CLIPTextModel"]));
    // The folder loads back to the same encoder.
    let loaded = load_clip_text(&dir, &LoadOptions::default(), &device()).expect("exported folder loads");
    assert_eq!(loaded.config, clip.config);
    assert!(loaded.report.unused.is_empty(), "unused keys {:?}", loaded.report.unused);
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 5, 9, 2, 1, 1], [1, 6]), &device());
    let (a, b) = (clip.model.forward(ids.clone()).unwrap(), loaded.model.forward(ids).unwrap());
    assert_eq!(max_abs_diff(a.last_hidden_state, b.last_hidden_state), 0.0);
    // An existing, non-empty destination is refused.
    assert!(export_clip_text(&clip.model, &clip.config, &dir, ExportDtype::F32).is_err());
}

#[test]
fn half_precision_export() {
    let unet = tiny();
    let tmp = tempfile::tempdir().unwrap();
    let (adapter_dir, full_dir) = (tmp.path().join("adapter"), tmp.path().join("unet_motion"));
    export_motion_adapter(&unet.model, &unet.config, &adapter_dir, ExportDtype::F16).expect("fp16 adapter");
    export_unet_motion(&unet.model, &unet.config, &full_dir, ExportDtype::F16).expect("fp16 UNet");
    // Same layout as diffusers' own fp16 adapter file.
    let theirs = contents(&fixture("tiny_unet/motion_adapter_fp16/diffusion_pytorch_model.fp16.safetensors"));
    assert_eq!(layout(&contents(&adapter_dir.join(WEIGHTS))), layout(&theirs));
    let full = contents(&full_dir.join(WEIGHTS));
    assert!(full.0.values().all(|(dtype, _, _)| dtype == "F16"), "every tensor is F16");
    let original = run(&unet);
    for (what, loaded) in [("fp16 adapter", load_adapter(&adapter_dir)), ("fp16 UNetMotionModel", load_full(&full_dir))]
    {
        assert_eq!(loaded.model.conv_in.weight.val().dtype(), burn::tensor::DType::F32, "{what}: loads into f32");
        assert_close(what, run(&loaded), original.clone(), 1e-2);
    }
}

#[test]
fn bad_destinations_and_2d_models_are_refused_leaving_nothing() {
    let unet = tiny();
    let tmp = tempfile::tempdir().unwrap();
    let export = |dir: &Path| export_unet_motion(&unet.model, &unet.config, dir, ExportDtype::F32).unwrap_err();

    let missing = tmp.path().join("no_such_parent").join("out");
    let err = export(&missing);
    assert!(matches!(err, ImportError::NotFound { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("parent folder of the export not found: {}", tmp.path().join("no_such_parent").display())
    );
    assert!(listing(tmp.path()).is_empty(), "nothing created");

    let busy = tmp.path().join("busy");
    fs::create_dir(&busy).unwrap();
    fs::write(busy.join("keep.txt"), "mine").unwrap();
    let err = export(&busy).to_string();
    assert!(err.starts_with(&format!("cannot export to {}", busy.display())) && err.contains("not empty"), "{err}");
    assert_eq!(listing(tmp.path()), vec![busy.clone()], "no temporary folder left");
    assert_eq!(listing(&busy), vec![busy.join("keep.txt")], "existing files untouched");
    let err = export(&busy.join("keep.txt")).to_string();
    assert!(err.contains("exists and is not a folder"), "{err}");

    // An empty folder is a valid destination (e.g. made by `tempfile`).
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    export_unet_motion(&unet.model, &unet.config, &empty, ExportDtype::F32).expect("into an empty folder");
    assert_eq!(listing(&empty), vec![empty.join("config.json"), empty.join(WEIGHTS)]);

    let flat = load_unet_2d(&fixture("tiny_unet/unet"), &LoadOptions::default(), &device()).expect("2D unet");
    let out = tmp.path().join("adapter");
    let err = export_motion_adapter(&flat.model, &flat.config, &out, ExportDtype::F32).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "cannot export a diffusers MotionAdapter to {}: config field `motion`: the UNet has no motion modules",
            out.display()
        )
    );
    assert!(export_unet_motion(&flat.model, &flat.config, &out, ExportDtype::F32).is_err());
    // A model exported under another model's config.
    let err = export_motion_adapter(&flat.model, &unet.config, &out, ExportDtype::F32).unwrap_err().to_string();
    assert!(err.contains("was not built from the config"), "{err}");
    assert!(!out.exists(), "nothing created");
    assert_eq!(listing(tmp.path()), vec![busy, empty]);
}

/// Writes the f32 exports for `tools/fixtures/check_export.py` (diffusers reads them back):
/// `AVDM_EXPORT_DIR=/tmp/avdm_export cargo test -p avdm-tests --test export -- --ignored`.
#[test]
#[ignore = "writes into AVDM_EXPORT_DIR for the diffusers check"]
fn write_exports_for_diffusers() {
    let root = PathBuf::from(std::env::var("AVDM_EXPORT_DIR").expect("set AVDM_EXPORT_DIR"));
    fs::create_dir_all(&root).unwrap();
    let unet = tiny();
    for (name, dtype) in [("fp32", ExportDtype::F32), ("fp16", ExportDtype::F16)] {
        let adapter = root.join(format!("motion_adapter_{name}"));
        let full = root.join(format!("unet_motion_{name}"));
        for dir in [&adapter, &full] {
            if dir.exists() {
                fs::remove_dir_all(dir).unwrap();
            }
        }
        println!("{}", export_motion_adapter(&unet.model, &unet.config, &adapter, dtype).unwrap());
        println!("{}", export_unet_motion(&unet.model, &unet.config, &full, dtype).unwrap());
    }
}
