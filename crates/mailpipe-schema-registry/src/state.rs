//! In-memory state of the DEVELOPMENT-ONLY schema registry, as plain data plus pure rules.
//!
//! A stand-in for local runs and tests; production uses Confluent Schema Registry, Karapace,
//! Apicurio or Redpanda. Nothing here touches the lock or the file: [`crate::store`] owns both,
//! which keeps these rules easy to unit test.

use std::collections::{BTreeMap, HashMap};

use apache_avro::Schema;
use serde::{Deserialize, Serialize};

use crate::compat::{self, CompatibilityLevel, ParsedSchema};
use crate::{RegistryError, SubjectVersion, VersionRef};

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Everything that is persisted. Kept plain so a developer can read the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Global compatibility level, used by subjects without their own.
    #[serde(default)]
    pub compatibility: CompatibilityLevel,
    /// Global schema id -> schema text as first registered. Ids are never removed, so a
    /// consumer can always decode old messages (Confluent behaves the same after soft delete).
    #[serde(default)]
    schemas: BTreeMap<u32, String>,
    #[serde(default)]
    subjects: BTreeMap<String, SubjectState>,
    /// Normalised schema -> id. Derived from `schemas`, so rebuilt on load instead of stored.
    #[serde(skip)]
    ids_by_schema: HashMap<String, u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SubjectState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    compatibility: Option<CompatibilityLevel>,
    #[serde(default)]
    versions: Vec<VersionEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct VersionEntry {
    version: u32,
    id: u32,
    /// Soft-deleted versions keep their number so it is never handed out twice.
    #[serde(default)]
    deleted: bool,
}

impl State {
    /// Parses a data file's contents and checks it hangs together; `Err` is the reason.
    pub fn from_json(bytes: &[u8]) -> Result<State, String> {
        let mut state: State = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        for (id, text) in &state.schemas {
            let parsed = compat::parse_schema(None, text)
                .map_err(|e| format!("schema id {id} does not parse: {e}"))?;
            state.ids_by_schema.insert(parsed.normalized, *id);
        }
        for (subject, subject_state) in &state.subjects {
            for v in &subject_state.versions {
                if !state.schemas.contains_key(&v.id) {
                    return Err(format!("{subject} v{} uses unknown id {}", v.version, v.id));
                }
            }
        }
        Ok(state)
    }

    pub fn level_for(&self, subject: &str) -> CompatibilityLevel {
        let own = self.subjects.get(subject).and_then(|s| s.compatibility);
        own.unwrap_or(self.compatibility)
    }

    pub fn set_subject_level(&mut self, subject: &str, level: CompatibilityLevel) {
        // Confluent allows configuring a subject before its first schema, so create it here.
        let entry = self.subjects.entry(subject.to_string()).or_default();
        entry.compatibility = Some(level);
    }

    /// Subjects with at least one live version, sorted.
    pub fn subject_names(&self) -> Vec<String> {
        let live = |s: &SubjectState| s.versions.iter().any(|v| !v.deleted);
        let names = self.subjects.iter().filter(|(_, s)| live(s));
        names.map(|(name, _)| name.clone()).collect()
    }

    /// Live (not soft-deleted) versions of a subject, oldest first. `SubjectNotFound` when
    /// there are none, which is how Confluent treats a fully deleted subject too.
    fn live_versions(&self, subject: &str) -> Result<Vec<&VersionEntry>> {
        let live: Vec<&VersionEntry> = match self.subjects.get(subject) {
            Some(s) => s.versions.iter().filter(|v| !v.deleted).collect(),
            None => Vec::new(),
        };
        if live.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        Ok(live)
    }

    pub fn version_numbers(&self, subject: &str) -> Result<Vec<u32>> {
        let live = self.live_versions(subject)?;
        Ok(live.iter().map(|v| v.version).collect())
    }

    pub fn version(&self, subject: &str, at: VersionRef) -> Result<SubjectVersion> {
        let live = self.live_versions(subject)?;
        let found = match at {
            VersionRef::Latest => live.last().copied(),
            VersionRef::Number(n) => live.into_iter().find(|v| v.version == n),
        };
        let entry = found.ok_or_else(|| RegistryError::VersionNotFound {
            subject: subject.to_string(),
            version: at.to_string(),
        })?;
        Ok(self.subject_version(subject, entry))
    }

    fn subject_version(&self, subject: &str, entry: &VersionEntry) -> SubjectVersion {
        SubjectVersion {
            subject: subject.to_string(),
            version: entry.version,
            id: entry.id,
            schema: self.schemas.get(&entry.id).cloned().unwrap_or_default(),
        }
    }

    pub fn schema_text(&self, id: u32) -> Result<&str> {
        let text = self.schemas.get(&id).map(String::as_str);
        text.ok_or_else(|| RegistryError::SchemaNotFound(format!("no schema with id {id}")))
    }

    /// Every live (subject, version) that uses schema `id`.
    pub fn usages_of(&self, id: u32) -> Result<Vec<(String, u32)>> {
        self.schema_text(id)?;
        let mut usages = Vec::new();
        for (subject, subject_state) in &self.subjects {
            let live = subject_state.versions.iter().filter(|v| !v.deleted);
            let using = live.filter(|v| v.id == id);
            usages.extend(using.map(|v| (subject.clone(), v.version)));
        }
        Ok(usages)
    }

    fn parsed(&self, id: u32) -> Result<Schema> {
        Ok(compat::parse_schema(None, self.schema_text(id)?)?.schema)
    }

    /// The live version of `subject` holding exactly this schema, if any.
    pub fn lookup(&self, subject: &str, new: &ParsedSchema) -> Result<SubjectVersion> {
        let live = self.live_versions(subject)?;
        let id = self.ids_by_schema.get(&new.normalized);
        let entry = live.into_iter().find(|v| Some(&v.id) == id);
        let entry = entry.ok_or_else(|| {
            RegistryError::SchemaNotFound(format!("schema is not registered under '{subject}'"))
        })?;
        Ok(self.subject_version(subject, entry))
    }

    /// Whether `new` could be registered next to version `at` under the subject's level.
    pub fn is_compatible(&self, subject: &str, at: VersionRef, new: &ParsedSchema) -> Result<bool> {
        let existing = self.parsed(self.version(subject, at)?.id)?;
        Ok(compat::check(self.level_for(subject), &existing, &new.schema).is_ok())
    }

    /// Registers `text` under `subject` and returns its global id. A schema the subject already
    /// has keeps its id and version; the same schema under another subject reuses its id.
    pub fn register(&mut self, subject: &str, text: &str, new: ParsedSchema) -> Result<u32> {
        if let Ok(existing) = self.lookup(subject, &new) {
            return Ok(existing.id);
        }
        self.check_can_register(subject, &new)?;
        let id = match self.ids_by_schema.get(&new.normalized) {
            Some(id) => *id,
            None => {
                let id = self.schemas.keys().next_back().map_or(1, |last| last + 1);
                self.schemas.insert(id, text.to_string());
                self.ids_by_schema.insert(new.normalized, id);
                id
            }
        };
        let subject_state = self.subjects.entry(subject.to_string()).or_default();
        let versions = &mut subject_state.versions;
        // Numbers continue after soft-deleted versions, as in Confluent.
        let version = versions.last().map_or(1, |v| v.version + 1);
        versions.push(VersionEntry {
            version,
            id,
            deleted: false,
        });
        tracing::info!(subject, version, id, "registered schema");
        Ok(id)
    }

    /// Refuses `new` if it breaks the subject's compatibility level.
    fn check_can_register(&self, subject: &str, new: &ParsedSchema) -> Result<()> {
        let Ok(live) = self.live_versions(subject) else {
            return Ok(()); // The first version of a subject has nothing to be compatible with.
        };
        let mut history = Vec::with_capacity(live.len());
        for v in live {
            history.push((v.version, self.parsed(v.id)?));
        }
        let level = self.level_for(subject);
        compat::check_history(level, &history, &new.schema).map_err(|details| {
            RegistryError::Incompatible {
                subject: subject.to_string(),
                level,
                details,
            }
        })
    }

    /// Soft-deletes every live version of `subject` and returns their numbers.
    pub fn delete_subject(&mut self, subject: &str) -> Result<Vec<u32>> {
        let deleted = self.version_numbers(subject)?;
        if let Some(subject_state) = self.subjects.get_mut(subject) {
            for v in &mut subject_state.versions {
                v.deleted = true;
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"Mail","fields":[{"name":"to","type":"string"}]}"#;
    const V2: &str = r#"{"type":"record","name":"Mail","fields":[{"name":"to","type":"string"},{"name":"cc","type":"string","default":""}]}"#;
    const V3_BAD: &str = r#"{"type":"record","name":"Mail","fields":[{"name":"to","type":"string"},{"name":"cc","type":"string","default":""},{"name":"bcc","type":"string"}]}"#;

    fn parsed(text: &str) -> ParsedSchema {
        compat::parse_schema(None, text).unwrap()
    }

    fn register(state: &mut State, subject: &str, text: &str) -> Result<u32> {
        state.register(subject, text, parsed(text))
    }

    #[test]
    fn same_schema_gets_same_id_within_and_across_subjects() {
        let mut state = State::default();
        assert_eq!(register(&mut state, "a-value", V1).unwrap(), 1);
        // Different formatting, same schema: same id and no new version.
        let reformatted = V1.replace(',', " , ");
        assert_eq!(register(&mut state, "a-value", &reformatted).unwrap(), 1);
        assert_eq!(state.version_numbers("a-value").unwrap(), vec![1]);
        // Another subject reuses the global id but starts its own versions at 1.
        assert_eq!(register(&mut state, "b-value", V1).unwrap(), 1);
        assert_eq!(state.version_numbers("b-value").unwrap(), vec![1]);
        assert_eq!(state.usages_of(1).unwrap().len(), 2);
    }

    #[test]
    fn compatible_change_adds_a_version_and_incompatible_is_refused() {
        let mut state = State::default();
        register(&mut state, "mail-value", V1).unwrap();
        assert_eq!(register(&mut state, "mail-value", V2).unwrap(), 2);
        let err = register(&mut state, "mail-value", V3_BAD).unwrap_err();
        assert!(matches!(err, RegistryError::Incompatible { .. }), "{err}");
        assert_eq!(state.version_numbers("mail-value").unwrap(), vec![1, 2]);
        let latest = state.version("mail-value", VersionRef::Latest).unwrap();
        assert_eq!((latest.version, latest.id), (2, 2));
        // With NONE the same change goes through.
        state.set_subject_level("mail-value", CompatibilityLevel::None);
        assert_eq!(register(&mut state, "mail-value", V3_BAD).unwrap(), 3);
    }

    #[test]
    fn lookup_and_compatibility_queries() {
        let mut state = State::default();
        register(&mut state, "mail-value", V1).unwrap();
        assert_eq!(state.lookup("mail-value", &parsed(V1)).unwrap().version, 1);
        let err = state.lookup("mail-value", &parsed(V2)).unwrap_err();
        assert!(matches!(err, RegistryError::SchemaNotFound(_)));
        let err = state.lookup("nope", &parsed(V1)).unwrap_err();
        assert!(matches!(err, RegistryError::SubjectNotFound(_)));
        let compatible = |at, text| state.is_compatible("mail-value", at, &parsed(text));
        assert!(compatible(VersionRef::Latest, V2).unwrap());
        assert!(!compatible(VersionRef::Number(1), V3_BAD).unwrap());
    }

    #[test]
    fn soft_delete_hides_the_subject_but_keeps_ids_and_version_numbers() {
        let mut state = State::default();
        register(&mut state, "mail-value", V1).unwrap();
        register(&mut state, "mail-value", V2).unwrap();
        assert_eq!(state.delete_subject("mail-value").unwrap(), vec![1, 2]);
        assert!(state.subject_names().is_empty());
        assert_eq!(state.schema_text(1).unwrap(), V1);
        register(&mut state, "mail-value", V1).unwrap();
        assert_eq!(state.version_numbers("mail-value").unwrap(), vec![3]);
    }
}
