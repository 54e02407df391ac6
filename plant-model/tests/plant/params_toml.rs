//! Parameters from TOML: errors that name origin, line, column and field; presets and overrides.

use crate::support::preset;
use plant_model::{AxisParams, AxisParamsDoc, PRESET_NAMES, ParamsError};

#[test]
fn unknown_key_is_rejected_with_line_and_field() {
    // Goal: a typo is reported where it is. Method: an unknown key on line 4 of a document that
    // starts from a preset.
    let text = "preset = \"xm430-w350\"\n\n[motor]\nresistanse_ohm = 5.0\n";
    let err = AxisParams::from_toml_str(text, "axis.toml").unwrap_err();
    let ParamsError::Parse {
        line,
        column,
        ref message,
        ..
    } = err
    else {
        panic!("expected a parse error, got {err:?}");
    };
    assert_eq!((line, column), (4, 1), "{err}");
    assert!(message.contains("resistanse_ohm"), "{message}");
    let shown = err.to_string();
    assert!(shown.starts_with("axis.toml:4:1:"), "{shown}");
}

#[test]
fn bad_value_type_is_rejected_with_line_and_field() {
    // Goal: a value of the wrong type names the field and its position. Method: a string where
    // a number belongs on line 3.
    let text = "preset = \"sgmp-02b\"\n[gear]\nratio = \"ten\"\n";
    let err = AxisParams::from_toml_str(text, "axis.toml").unwrap_err();
    let ParamsError::Parse {
        line, ref field, ..
    } = err
    else {
        panic!("expected a parse error, got {err:?}");
    };
    assert_eq!(line, 3, "{err}");
    assert_eq!(field.as_deref(), Some("gear.ratio"), "{err}");
    assert!(err.to_string().contains("axis.toml:3:"), "{err}");
}

#[test]
fn preset_with_overrides_changes_only_the_given_keys() {
    // Goal: `preset = ...` plus a few keys gives the preset with those keys replaced. Method:
    // override two keys in two sections; everything else equals the preset.
    let text = "preset = \"xm430-w350\"\n[gear]\nefficiency = 0.7\n[load]\ninertia_kg_m2 = 0.002\n";
    let p = AxisParams::from_toml_str(text, "axis.toml").unwrap();
    let mut expected = preset("xm430-w350");
    expected.gear.efficiency = 0.7;
    expected.load.inertia_kg_m2 = 0.002;
    assert_eq!(p, expected);
}

#[test]
fn both_presets_load_and_validate() {
    // Goal: the shipped presets parse through the user path and validate. Method: by name and
    // through a one-line document; both routes give the same parameters.
    for name in PRESET_NAMES {
        let by_name = AxisParams::preset(name).unwrap();
        by_name.validate().unwrap();
        let doc = AxisParams::from_toml_str(&format!("preset = \"{name}\""), "x.toml").unwrap();
        assert_eq!(by_name, doc);
    }
}

#[test]
fn unknown_preset_lists_the_known_ones() {
    // Goal: a wrong preset name tells the user what exists. Method: a misspelt name.
    let err = AxisParams::preset("xm430").unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("xm430-w350") && shown.contains("sgmp-02b"),
        "{shown}"
    );
    let err = AxisParams::from_toml_str("preset = \"nope\"", "a.toml").unwrap_err();
    assert!(matches!(err, ParamsError::UnknownPreset { .. }), "{err:?}");
}

#[test]
fn missing_key_without_preset_is_named() {
    // Goal: a complete file must be complete, and the error says what is missing. Method: the
    // xm430 preset re-serialised with one key dropped.
    let p = preset("xm430-w350");
    let mut table = toml::Table::try_from(&p).unwrap();
    table["motor"]
        .as_table_mut()
        .unwrap()
        .remove("inductance_h");
    let text = toml::to_string(&table).unwrap();
    let err = AxisParams::from_toml_str(&text, "full.toml").unwrap_err();
    assert_eq!(
        err,
        ParamsError::Missing {
            origin: "full.toml".into(),
            field: "motor.inductance_h".into()
        }
    );
}

#[test]
fn complete_document_round_trips() {
    // Goal: serialised parameters read back identically (the schema is self-consistent).
    // Method: serialise each preset to TOML and parse it without a preset.
    for name in PRESET_NAMES {
        let p = preset(name);
        let text = toml::to_string(&p).unwrap();
        assert_eq!(
            AxisParams::from_toml_str(&text, "rt.toml").unwrap(),
            p,
            "{name}"
        );
    }
}

#[test]
fn contradiction_is_reported_with_origin_and_field() {
    // Goal: values that parse but contradict physics are rejected by name. Method: a step that
    // does not divide 1 ms, and a negative inductance.
    let text = "preset = \"xm430-w350\"\n[integration]\nstep_ns = 300000\n";
    let err = AxisParams::from_toml_str(text, "a.toml").unwrap_err();
    assert!(
        matches!(&err, ParamsError::Invalid { field, .. } if field == "integration.step_ns"),
        "{err}"
    );
    let text = "preset = \"sgmp-02b\"\n[motor]\ninductance_h = -0.01\n";
    let err = AxisParams::from_toml_str(text, "b.toml").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("b.toml: field `motor.inductance_h`"),
        "{err}"
    );
}

#[test]
fn a_scenario_can_embed_the_schema_with_line_numbers() {
    // Goal: a scenario loader can embed axis parameters as `[axis.<name>]` sub-tables and still
    // get line numbers, or hand over a parsed table. Method: a scenario-like struct holding
    // AxisParamsDoc values; one good axis and, in a second document, a typo on line 6.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Scenario {
        #[allow(dead_code)]
        name: String,
        axis: std::collections::BTreeMap<String, AxisParamsDoc>,
    }
    let good =
        "name = \"s\"\n[axis.x]\npreset = \"xm430-w350\"\n[axis.x.load]\ninertia_kg_m2 = 0.001\n";
    let s: Scenario = toml::from_str(good).unwrap();
    let x = s.axis["x"].clone().resolve("s.toml [axis.x]").unwrap();
    assert_eq!(x.load.inertia_kg_m2, 0.001);

    let table: toml::Table = toml::from_str(good).unwrap();
    let axis = table["axis"]["x"].as_table().unwrap();
    assert_eq!(AxisParams::from_toml_table(axis, "s.toml").unwrap(), x);

    let bad =
        "name = \"s\"\n[axis.x]\npreset = \"xm430-w350\"\n\n[axis.x.load]\ninertia_kgm2 = 0.001\n";
    let err = toml::from_str::<Scenario>(bad)
        .err()
        .expect("typo rejected");
    let span = err.span().expect("span");
    let line = bad[..span.start].matches('\n').count() + 1;
    assert_eq!(line, 6, "{err}");
}

#[test]
fn from_toml_file_names_the_path() {
    // Goal: file errors carry the file's path. Method: write a file with a bad key into the
    // test's scratch directory and read it back; also a missing file.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("plant_model_bad_axis.toml");
    std::fs::write(&path, "preset = \"xm430-w350\"\n[drive]\nbus_volts = 12\n").unwrap();
    let err = AxisParams::from_toml_file(&path).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("{}:3:1:", path.display())),
        "{shown}"
    );
    let missing = dir.join("plant_model_no_such_file.toml");
    let err = AxisParams::from_toml_file(&missing).unwrap_err();
    assert!(matches!(err, ParamsError::Io { .. }), "{err:?}");
}
