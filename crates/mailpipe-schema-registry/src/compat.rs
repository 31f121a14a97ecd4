//! Schema parsing and compatibility rules for the DEVELOPMENT-ONLY schema registry.
//!
//! This is a stand-in so mailpipe can be run and tested locally without a JVM. Production
//! deployments use Confluent Schema Registry, Karapace, Apicurio or Redpanda's registry, which
//! implement the full rule set (references, normalisation options, JSON Schema, Protobuf).
//! Here only Avro is understood and the rules come straight from `apache_avro`.

use std::fmt;
use std::str::FromStr;

use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;
use serde::{Deserialize, Serialize};

use crate::RegistryError;

/// A schema that passed parsing, plus the normalised text used to decide "same schema?".
#[derive(Debug, Clone)]
pub struct ParsedSchema {
    pub schema: Schema,
    /// The parsed schema serialised back to JSON. Unlike Avro's Parsing Canonical Form this
    /// keeps defaults, so two schemas differing only in a default are two different schemas
    /// (as in Confluent), while whitespace and key order no longer matter.
    pub normalized: String,
}

/// Parses the `schema` text of a request. `schema_type` is the optional `schemaType` field;
/// Confluent treats a missing value as AVRO and so do we.
pub fn parse_schema(schema_type: Option<&str>, text: &str) -> Result<ParsedSchema, RegistryError> {
    match schema_type {
        None | Some("AVRO") => {}
        Some(other) => return Err(RegistryError::UnsupportedSchemaType(other.to_string())),
    }
    let schema =
        Schema::parse_str(text).map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
    let normalized = serde_json::to_string(&schema)
        .map_err(|e| RegistryError::InvalidSchema(format!("cannot normalise schema: {e}")))?;
    Ok(ParsedSchema { schema, normalized })
}

/// Compatibility levels with the names and meaning Confluent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    None,
    /// The new schema can read data written with the latest schema (Confluent's default).
    #[default]
    Backward,
    BackwardTransitive,
    /// Data written with the new schema can be read with the latest schema.
    Forward,
    ForwardTransitive,
    /// Both backward and forward.
    Full,
    FullTransitive,
}

impl CompatibilityLevel {
    pub const ALL: [CompatibilityLevel; 7] = [
        Self::None,
        Self::Backward,
        Self::BackwardTransitive,
        Self::Forward,
        Self::ForwardTransitive,
        Self::Full,
        Self::FullTransitive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Transitive levels check every live version, the others only the latest one.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    fn checks_backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    fn checks_forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompatibilityLevel {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Confluent accepts the level case-insensitively, so `backward` works too.
        Self::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| RegistryError::InvalidCompatibilityLevel(s.to_string()))
    }
}

/// Checks `new` against one `existing` schema under `level`. `Err` carries a human-readable
/// reason that ends up in the 409 message.
pub fn check(level: CompatibilityLevel, existing: &Schema, new: &Schema) -> Result<(), String> {
    if level.checks_backward() {
        // Backward: consumers on the new schema must read data written with the old one.
        can_read(existing, new).map_err(|e| format!("new schema cannot read old data: {e}"))?;
    }
    if level.checks_forward() {
        // Forward: consumers still on the old schema must read data written with the new one.
        can_read(new, existing).map_err(|e| format!("old schema cannot read new data: {e}"))?;
    }
    Ok(())
}

/// Checks `new` against a subject's live versions, given oldest first as (version, schema).
/// Non-transitive levels compare with the latest version only, transitive ones with all.
pub fn check_history(
    level: CompatibilityLevel,
    history: &[(u32, Schema)],
    new: &Schema,
) -> Result<(), String> {
    let to_check = match history.split_last() {
        Some((latest, _)) if !level.is_transitive() => std::slice::from_ref(latest),
        _ => history,
    };
    for (version, existing) in to_check {
        check(level, existing, new).map_err(|e| format!("against version {version}: {e}"))?;
    }
    Ok(())
}

fn can_read(writer: &Schema, reader: &Schema) -> Result<(), String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => Ok(()),
        // "Partial" means resolution fails for some values (a missing enum symbol or union
        // branch). Confluent rejects those, so we do too rather than let a consumer break later.
        Ok(Compatibility::Partial) => {
            Err("only partially compatible (missing enum symbol or union branch)".to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;
    const V2_DEFAULT: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int","default":0}]}"#;
    const V2_NO_DEFAULT: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int"}]}"#;

    fn schema(text: &str) -> Schema {
        parse_schema(None, text).unwrap().schema
    }

    #[test]
    fn whitespace_and_key_order_do_not_change_the_normalised_form() {
        let spaced = r#"{ "name": "R", "type": "record",
            "fields": [ { "type": "string", "name": "a" } ] }"#;
        assert_eq!(
            parse_schema(None, V1).unwrap().normalized,
            parse_schema(Some("AVRO"), spaced).unwrap().normalized
        );
    }

    #[test]
    fn a_changed_default_is_a_different_schema() {
        let other_default = V2_DEFAULT.replace("\"default\":0", "\"default\":7");
        assert_ne!(
            parse_schema(None, V2_DEFAULT).unwrap().normalized,
            parse_schema(None, &other_default).unwrap().normalized
        );
    }

    #[test]
    fn rejects_invalid_and_non_avro_schemas() {
        assert!(matches!(
            parse_schema(None, "{not json"),
            Err(RegistryError::InvalidSchema(_))
        ));
        assert!(matches!(
            parse_schema(Some("PROTOBUF"), "syntax = \"proto3\";"),
            Err(RegistryError::UnsupportedSchemaType(_))
        ));
    }

    #[test]
    fn backward_allows_new_field_with_default_only() {
        let level = CompatibilityLevel::Backward;
        assert!(check(level, &schema(V1), &schema(V2_DEFAULT)).is_ok());
        assert!(check(level, &schema(V1), &schema(V2_NO_DEFAULT)).is_err());
        assert!(check(
            CompatibilityLevel::None,
            &schema(V1),
            &schema(V2_NO_DEFAULT)
        )
        .is_ok());
    }

    #[test]
    fn forward_allows_new_field_without_default() {
        // Old readers simply skip the extra field, so FORWARD accepts what BACKWARD refuses.
        assert!(check(
            CompatibilityLevel::Forward,
            &schema(V1),
            &schema(V2_NO_DEFAULT)
        )
        .is_ok());
        assert!(check(
            CompatibilityLevel::Full,
            &schema(V1),
            &schema(V2_NO_DEFAULT)
        )
        .is_err());
    }

    #[test]
    fn transitive_levels_check_every_version() {
        // v2 drops the default of `b`; only v1 (which lacks `b`) can expose that.
        let v2_plain = V2_DEFAULT.replace(",\"default\":0", "");
        let history = [(1, schema(V1)), (2, schema(V2_DEFAULT))];
        let latest_only = check_history(CompatibilityLevel::Backward, &history, &schema(&v2_plain));
        assert!(latest_only.is_ok());
        let all = check_history(
            CompatibilityLevel::BackwardTransitive,
            &history,
            &schema(&v2_plain),
        );
        assert!(all.unwrap_err().contains("version 1"));
    }

    #[test]
    fn levels_parse_case_insensitively_and_print_like_confluent() {
        for level in CompatibilityLevel::ALL {
            assert_eq!(level.as_str().parse::<CompatibilityLevel>().unwrap(), level);
        }
        assert_eq!(
            "full_transitive".parse::<CompatibilityLevel>().unwrap(),
            CompatibilityLevel::FullTransitive
        );
        assert!("SIDEWAYS".parse::<CompatibilityLevel>().is_err());
    }
}
