//! diffusers' config.json files (tests/fixtures/configs, written by diffusers 0.42.1) against
//! the named constructors, and bad configs.

use avdm_model::unet::{MotionAdapterConfig, UNet2DConditionConfig, UNetConfig, UNetMotionConfig};
use avdm_tests::fixture;

fn read(rel: &str) -> String {
    std::fs::read_to_string(fixture(&format!("configs/{rel}/config.json"))).unwrap()
}

#[test]
fn sd15_unet_config_json_is_the_named_constructor() {
    let parsed = UNetConfig::from_unet_2d(&UNet2DConditionConfig::from_json(&read("sd15_unet")).unwrap()).unwrap();
    assert_eq!(parsed, UNetConfig::sd15());
    assert_eq!(parsed.num_attention_heads, vec![8; 4], "SD1.5's attention_head_dim 8 means 8 heads");
    assert_eq!(parsed.cross_attention_dim, 768);
}

#[test]
fn motion_adapter_configs_are_the_named_constructors() {
    assert_eq!(MotionAdapterConfig::from_json(&read("motion_adapter_v1_5_2")).unwrap(), MotionAdapterConfig::v1_5_2());
    assert_eq!(MotionAdapterConfig::from_json(&read("motion_adapter_v1_5")).unwrap(), MotionAdapterConfig::v1_5());
    let v2 = UNetConfig::sd15_motion_v1_5_2();
    let m = v2.motion.as_ref().unwrap();
    assert!(m.mid_block);
    assert_eq!((m.max_seq_length, v2.max_frames()), (32, 32));
    let v1 = UNetConfig::sd15_motion_v1_5().motion.unwrap();
    assert!(!v1.mid_block);
    assert_eq!(v1.max_seq_length, 24);
}

#[test]
fn combined_config_equals_unet_plus_adapter() {
    let saved = UNetMotionConfig::from_json(&read("sd15_unet_motion_v1_5_2")).unwrap();
    assert_eq!(UNetConfig::from_unet_motion(&saved).unwrap(), UNetConfig::sd15_motion_v1_5_2());
}

#[test]
fn wrong_block_layouts_are_errors_naming_the_field() {
    let mut json: serde_json::Value = serde_json::from_str(&read("sd15_unet")).unwrap();
    json["down_block_types"][0] = "CrossAttnDownBlock3D".into();
    let err = UNetConfig::from_unet_2d(&UNet2DConditionConfig::from_json(&json.to_string()).unwrap()).unwrap_err();
    assert!(err.to_string().contains("down_block_types") && err.to_string().contains("CrossAttnDownBlock3D"), "{err}");

    let mut json: serde_json::Value = serde_json::from_str(&read("sd15_unet")).unwrap();
    json["up_block_types"] = serde_json::json!(["UpBlock2D", "CrossAttnUpBlock2D"]);
    let err = UNetConfig::from_unet_2d(&UNet2DConditionConfig::from_json(&json.to_string()).unwrap()).unwrap_err();
    assert_eq!(err.to_string(), "config field `up_block_types`: has 2 entries but block_out_channels has 4");

    let mut json: serde_json::Value = serde_json::from_str(&read("sd15_unet")).unwrap();
    json["layers_per_block"] = serde_json::json!([2, 2]);
    let err = UNetConfig::from_unet_2d(&UNet2DConditionConfig::from_json(&json.to_string()).unwrap()).unwrap_err();
    assert!(err.to_string().contains("layers_per_block"), "{err}");

    let mut json: serde_json::Value = serde_json::from_str(&read("sd15_unet")).unwrap();
    json["norm_num_groups"] = 48.into();
    let err = UNetConfig::from_unet_2d(&UNet2DConditionConfig::from_json(&json.to_string()).unwrap()).unwrap_err();
    assert!(err.to_string().contains("norm_num_groups"), "{err}");

    let err = UNet2DConditionConfig::from_json("{\"block_out_channels\": [320]}").unwrap_err();
    assert!(err.to_string().contains("down_block_types"), "{err}");

    let adapter = MotionAdapterConfig { block_out_channels: vec![320, 640, 1280], ..MotionAdapterConfig::v1_5_2() };
    let err = UNetConfig::sd15().with_motion_adapter(&adapter).unwrap_err();
    assert!(err.to_string().contains("block_out_channels"), "{err}");
}
