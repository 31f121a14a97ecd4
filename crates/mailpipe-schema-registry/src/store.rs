//! The shared, persisted registry handle of the DEVELOPMENT-ONLY schema registry.
//!
//! A stand-in for local runs and tests; production uses Confluent Schema Registry, Karapace,
//! Apicurio or Redpanda. The whole state sits in memory behind one mutex and is rewritten to
//! one JSON file after every change, so a restart keeps ids and versions. That is plenty for
//! dozens of schemas and a handful of clients, which is all this is for.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::compat::{self, CompatibilityLevel};
use crate::state::State;
use crate::{RegistryError, SubjectVersion, VersionRef};

/// The registry handle shared by all request handlers; cloning is cheap.
#[derive(Debug, Clone)]
pub struct Registry {
    data_file: Arc<PathBuf>,
    state: Arc<Mutex<State>>,
}

impl Registry {
    /// Loads `data_file`, or starts empty when it does not exist yet. Any other problem is an
    /// error naming the file, because silently starting empty would hand out used ids again.
    pub fn open(data_file: impl Into<PathBuf>) -> Result<Registry, RegistryError> {
        let data_file = data_file.into();
        let load_error = |reason: String| RegistryError::LoadDataFile {
            path: data_file.clone(),
            reason,
        };
        let state = match std::fs::read(&data_file) {
            Ok(bytes) => State::from_json(&bytes).map_err(load_error)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(load_error(e.to_string())),
        };
        Ok(Registry {
            data_file: Arc::new(data_file),
            state: Arc::new(Mutex::new(state)),
        })
    }

    pub fn data_file(&self) -> &Path {
        &self.data_file
    }

    /// Applies `change` to a copy of the state and makes the copy current only once it is on
    /// disk, so memory and file never disagree and a failed change leaves no trace. The lock
    /// is held throughout, which also keeps file writes in order.
    async fn update<T>(
        &self,
        change: impl FnOnce(&mut State) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        let result = change(&mut next)?;
        // Skip the write for no-ops such as re-registering a known schema, which clients do
        // on every start.
        if next != *state {
            write_atomically(&self.data_file, &next).await?;
            *state = next;
        }
        Ok(result)
    }

    /// `POST /subjects/{subject}/versions`: returns the schema's global id.
    pub async fn register(
        &self,
        subject: &str,
        schema_type: Option<&str>,
        text: &str,
    ) -> Result<u32, RegistryError> {
        // Parse before taking the lock; a bad schema should not wait for anyone.
        let parsed = compat::parse_schema(schema_type, text)?;
        self.update(|state| state.register(subject, text, parsed))
            .await
    }

    /// `POST /subjects/{subject}`: where is this schema registered under the subject?
    pub async fn lookup(
        &self,
        subject: &str,
        schema_type: Option<&str>,
        text: &str,
    ) -> Result<SubjectVersion, RegistryError> {
        let parsed = compat::parse_schema(schema_type, text)?;
        self.state.lock().await.lookup(subject, &parsed)
    }

    /// `POST /compatibility/subjects/{subject}/versions/{version}`.
    pub async fn is_compatible(
        &self,
        subject: &str,
        at: VersionRef,
        schema_type: Option<&str>,
        text: &str,
    ) -> Result<bool, RegistryError> {
        let parsed = compat::parse_schema(schema_type, text)?;
        self.state.lock().await.is_compatible(subject, at, &parsed)
    }

    pub async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        Ok(self.state.lock().await.schema_text(id)?.to_string())
    }

    /// The live (subject, version) pairs using schema `id`.
    pub async fn usages_of(&self, id: u32) -> Result<Vec<(String, u32)>, RegistryError> {
        self.state.lock().await.usages_of(id)
    }

    pub async fn subjects(&self) -> Vec<String> {
        self.state.lock().await.subject_names()
    }

    pub async fn versions(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        self.state.lock().await.version_numbers(subject)
    }

    pub async fn version(
        &self,
        subject: &str,
        at: VersionRef,
    ) -> Result<SubjectVersion, RegistryError> {
        self.state.lock().await.version(subject, at)
    }

    /// Soft delete: the versions disappear from listings, their ids keep resolving.
    pub async fn delete_subject(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        self.update(|state| state.delete_subject(subject)).await
    }

    pub async fn global_level(&self) -> CompatibilityLevel {
        self.state.lock().await.compatibility
    }

    pub async fn set_global_level(&self, level: CompatibilityLevel) -> Result<(), RegistryError> {
        self.update(|state| {
            state.compatibility = level;
            Ok(())
        })
        .await
    }

    /// The level that applies to `subject`: its own if set, otherwise the global one.
    pub async fn subject_level(&self, subject: &str) -> CompatibilityLevel {
        self.state.lock().await.level_for(subject)
    }

    pub async fn set_subject_level(
        &self,
        subject: &str,
        level: CompatibilityLevel,
    ) -> Result<(), RegistryError> {
        self.update(|state| {
            state.set_subject_level(subject, level);
            Ok(())
        })
        .await
    }
}

/// Writes to a temporary file next to `path` and renames it over `path`. The rename is atomic
/// on one filesystem, so a crash leaves the old or the new file, never half of one.
async fn write_atomically(path: &Path, state: &State) -> Result<(), RegistryError> {
    let storage = |source: std::io::Error| RegistryError::Storage {
        path: path.to_path_buf(),
        source,
    };
    let json = serde_json::to_vec_pretty(state).map_err(|e| storage(e.into()))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = tokio::fs::File::create(&tmp).await.map_err(storage)?;
    file.write_all(&json).await.map_err(storage)?;
    // Reach the disk before the rename, or a crash could leave an empty file in place.
    file.sync_all().await.map_err(storage)?;
    tokio::fs::rename(&tmp, path).await.map_err(storage)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"Mail","fields":[{"name":"to","type":"string"}]}"#;
    const V2: &str = r#"{"type":"record","name":"Mail","fields":[{"name":"to","type":"string"},{"name":"cc","type":"string","default":""}]}"#;

    #[tokio::test]
    async fn state_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        let registry = Registry::open(&path).unwrap();
        assert_eq!(registry.register("mail-value", None, V1).await.unwrap(), 1);
        assert_eq!(registry.register("mail-value", None, V2).await.unwrap(), 2);
        assert_eq!(registry.register("other-value", None, V1).await.unwrap(), 1);
        registry
            .set_subject_level("mail-value", CompatibilityLevel::Full)
            .await
            .unwrap();
        registry
            .set_global_level(CompatibilityLevel::None)
            .await
            .unwrap();
        drop(registry);

        let reopened = Registry::open(&path).unwrap();
        assert_eq!(reopened.versions("mail-value").await.unwrap(), vec![1, 2]);
        assert_eq!(reopened.schema_by_id(2).await.unwrap(), V2);
        assert_eq!(reopened.subjects().await, vec!["mail-value", "other-value"]);
        assert_eq!(
            reopened.subject_level("mail-value").await,
            CompatibilityLevel::Full
        );
        assert_eq!(reopened.global_level().await, CompatibilityLevel::None);
        // Known schemas keep their ids; new ones continue after the highest id.
        assert_eq!(reopened.register("mail-value", None, V2).await.unwrap(), 2);
        let v3 = V2.replace("\"cc\"", "\"bcc\"");
        assert_eq!(
            reopened.register("third-value", None, &v3).await.unwrap(),
            3
        );
        assert!(!dir.path().join("registry.json.tmp").exists());
    }

    #[tokio::test]
    async fn refused_change_is_not_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        let registry = Registry::open(&path).unwrap();
        registry.register("mail-value", None, V1).await.unwrap();
        let before = std::fs::read(&path).unwrap();
        let v_bad = V1.replace("}]}", r#"},{"name":"bcc","type":"string"}]}"#);
        let err = registry
            .register("mail-value", None, &v_bad)
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::Incompatible { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn corrupt_file_is_a_clear_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.json");
        std::fs::write(&path, "{ this is not json").unwrap();
        let err = Registry::open(&path).unwrap_err();
        assert!(matches!(err, RegistryError::LoadDataFile { .. }));
        assert!(err.to_string().contains("broken.json"), "{err}");
    }
}
