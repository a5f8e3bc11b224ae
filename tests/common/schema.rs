//! The contract's JSON schemas as a test oracle.

use std::path::Path;

/// Validates `payload` against one of the contract's JSON schemas, kept in
/// `docs/contract/` as a copy of `shared/contracts/`.
pub fn assert_schema_valid(schema_file: &str, payload: &serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/contract")
        .join(schema_file);
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(payload)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "payload does not match {schema_file}: {errors:?}\n{payload:#}"
    );
}
