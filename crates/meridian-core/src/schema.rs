//! The JSON Schema of Meridian's manifests, generated from the raw types so that editor
//! completion, the committed copy under `deploy/schema/` and the CRDs cannot drift apart.

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::manifest::{API_VERSION, Approval, Region, RolloutPlan};

/// One schema accepting a `RolloutPlan`, a `Region` or an `Approval` document.
pub fn manifest_schema() -> Value {
    let mut generator = SchemaSettings::draft07().into_generator();
    let plan = generator.subschema_for::<RolloutPlan>();
    let region = generator.subschema_for::<Region>();
    let approval = generator.subschema_for::<Approval>();
    let mut definitions = serde_json::Map::new();
    for (name, schema) in generator.take_definitions(true) {
        definitions.insert(name, schema);
    }
    // Pin apiVersion and kind so editors can tell the two kinds apart and complete them.
    for (name, kind) in [("RolloutPlan", "RolloutPlan"), ("Region", "Region"), ("Approval", "Approval")] {
        if let Some(props) = definitions.get_mut(name).and_then(|d| d.get_mut("properties")) {
            props["apiVersion"] = json!({ "const": API_VERSION, "description": "Always meridian.dev/v1alpha1." });
            props["kind"] = json!({ "const": kind });
        }
    }
    // Dispatch on `kind` (if/then) rather than `oneOf`: a validator then reports an error at
    // the field it is in (`spec.waves[0].bake`), not "matches none of three" at the root.
    let when = |kind: &str, then: &schemars::Schema| json!({ "if": { "properties": { "kind": { "const": kind } }, "required": ["kind"] }, "then": then });
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Meridian manifest",
        "description": "A Meridian RolloutPlan, Region or Approval (apiVersion meridian.dev/v1alpha1).",
        "type": "object",
        "required": ["apiVersion", "kind"],
        "properties": {
            "apiVersion": { "const": API_VERSION, "description": "Always meridian.dev/v1alpha1." },
            "kind": {
                "enum": ["RolloutPlan", "Region", "Approval"],
                "description": "What the document is: a RolloutPlan, a Region of a plan, or an Approval.",
            },
        },
        "allOf": [when("RolloutPlan", &plan), when("Region", &region), when("Approval", &approval)],
        "definitions": definitions,
    })
}

/// The schema as committed under `deploy/schema/meridian.schema.json`.
pub fn manifest_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&manifest_schema()).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_schema_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/schema/meridian.schema.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == manifest_schema_text(),
            "deploy/schema/meridian.schema.json is out of date; regenerate it with \
             `cargo run -p meridian-cli -- schema > deploy/schema/meridian.schema.json`"
        );
    }
}
